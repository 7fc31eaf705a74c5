"""`make new NAME=acme-orders`: a new service made from this template, renamed, with the
features chosen (docs/new-project.md).

Standard library only, so it runs from a fresh clone before any venv exists.
"""

import sys
from pathlib import Path

# The template's dev tooling (keel_dev.reflow, standard library only) without a venv.
_SRC = str(Path(__file__).resolve().parents[2] / "src")
if _SRC not in sys.path:
    sys.path.append(_SRC)
