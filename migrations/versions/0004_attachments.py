"""Attachments of items and the object-deletion queue.

A trigger on `attachments` queues each deleted row's object in `object_deletions`, in the
deleting transaction, whatever deleted it (the API, the cascade from an item or a user, a
purge); the worker deletes the objects. `downgrade` removes all of it (objects already in the
bucket stay there).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELEASE_FUNCTION = """
CREATE FUNCTION attachments_release_object() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO object_deletions (object_key) VALUES (OLD.object_key)
    ON CONFLICT (object_key) DO NOTHING;
    RETURN OLD;
END
$$
"""
RELEASE_TRIGGER = """
CREATE TRIGGER attachments_release_object AFTER DELETE ON attachments
FOR EACH ROW EXECUTE FUNCTION attachments_release_object()
"""


def upgrade() -> None:
    op.create_table(
        "object_deletions",
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("object_key", name=op.f("pk_object_deletions")),
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("item_id", sa.UUID(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="ready", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'ready')", name=op.f("ck_attachments_state_known")
        ),
        sa.CheckConstraint("size >= 0", name=op.f("ck_attachments_size_not_negative")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_attachments_item_id_items"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_attachments_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
        sa.UniqueConstraint("object_key", name=op.f("uq_attachments_object_key")),
    )
    op.create_index(
        "ix_attachments_item_id_created_at_id",
        "attachments",
        ["item_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_attachments_owner_id_state", "attachments", ["owner_id", "state"], unique=False
    )
    op.create_index(
        "ix_attachments_created_at_pending",
        "attachments",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.execute(RELEASE_FUNCTION)
    op.execute(RELEASE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER attachments_release_object ON attachments")
    op.execute("DROP FUNCTION attachments_release_object()")
    op.drop_index("ix_attachments_created_at_pending", table_name="attachments")
    op.drop_index("ix_attachments_owner_id_state", table_name="attachments")
    op.drop_index("ix_attachments_item_id_created_at_id", table_name="attachments")
    op.drop_table("attachments")
    op.drop_table("object_deletions")
