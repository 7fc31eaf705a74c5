"""The object-deletion queue, declared for Alembic.

A row deleted here (an attachment, and with it everything that cascades) writes the key of its
object to `object_deletions` in the same transaction, through a trigger: the object is deleted
only if the row's deletion commits, and a storage outage only delays it. The worker deletes the
objects and then the rows (keel.storage.deletions).
"""

from __future__ import annotations

import sqlalchemy as sa

from keel.db.schema import metadata

object_deletions = sa.Table(
    "object_deletions",
    metadata,
    sa.Column("object_key", sa.String(300), primary_key=True),
    sa.Column(
        "requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)
