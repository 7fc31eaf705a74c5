"""The event log of the real-time streams (keel.realtime).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "realtime_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_realtime_events_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_realtime_events")),
        sa.UniqueConstraint("position", name=op.f("uq_realtime_events_position")),
    )
    op.create_index(
        "ix_realtime_events_owner_id_sequence",
        "realtime_events",
        ["owner_id", "sequence"],
        unique=False,
    )
    op.create_index(
        "ix_realtime_events_unsequenced",
        "realtime_events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("position IS NULL"),
    )
    op.create_index(
        "ix_realtime_events_occurred_at", "realtime_events", ["occurred_at"], unique=False
    )
    op.create_table(
        "realtime_cursors",
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_realtime_cursors_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_realtime_cursors")),
    )
    op.create_table(
        "realtime_relay",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("published", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_realtime_relay_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_realtime_relay")),
    )
    op.execute("INSERT INTO realtime_relay (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("realtime_relay")
    op.drop_table("realtime_cursors")
    op.drop_index("ix_realtime_events_occurred_at", table_name="realtime_events")
    op.drop_index("ix_realtime_events_unsequenced", table_name="realtime_events")
    op.drop_index("ix_realtime_events_owner_id_sequence", table_name="realtime_events")
    op.drop_table("realtime_events")
