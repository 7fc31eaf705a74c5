"""Every API surface the app serves (keel.api.surface): add a surface of yours here."""

from __future__ import annotations

from keel.api import v1
from keel.api.surface import ApiSurface

SURFACES: tuple[ApiSurface, ...] = (v1.surface,)
