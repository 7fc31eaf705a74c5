"""The items table, declared for Alembic (requests read it through keel.kit.table)."""

from __future__ import annotations

import sqlalchemy as sa

from keel.db.schema import metadata, owner_id, timestamps, uuid_primary_key

items = sa.Table(
    "items",
    metadata,
    uuid_primary_key(),
    owner_id(),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    # Bumped by every write: the ETag, and the optimistic-concurrency check of If-Match.
    sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    *timestamps(),
    sa.CheckConstraint("char_length(title) > 0", name="title_not_empty"),
    # One index per list ordering (keyset on (column, id) within an owner) and the done filter.
    sa.Index("ix_items_owner_id_created_at_id", "owner_id", "created_at", "id"),
    sa.Index("ix_items_owner_id_title_id", "owner_id", "title", "id"),
    sa.Index("ix_items_owner_id_done_created_at_id", "owner_id", "done", "created_at", "id"),
)
