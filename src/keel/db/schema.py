"""The schema, declared once as SQLAlchemy metadata: Alembic autogenerates from it.

The request path never goes through SQLAlchemy (see docs/architecture.md); these declarations
exist so that migrations and `alembic check` have one source of truth.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Deterministic constraint and index names: migrations stay reviewable and reversible.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


users = sa.Table(
    "users",
    metadata,
    sa.Column(
        "id",
        postgresql.UUID(as_uuid=True),
        primary_key=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    # Stored lower-cased by the service, so a plain unique constraint is case-insensitive.
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("full_name", sa.String(200), nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    *_timestamps(),
)

# --- Auth and domain (keel.auth, keel.users, keel.items) ---

# Admin listing pages users by (created_at, id).
sa.Index("ix_users_created_at_id", users.c.created_at, users.c.id)

# A session is one refresh-token family: log-out, password change, deactivation and refresh
# token reuse revoke it, and every access token carrying its id (`sid`) stops working.
auth_sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column(
        "id",
        postgresql.UUID(as_uuid=True),
        primary_key=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    sa.Column(
        "user_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column(
        "id",
        postgresql.UUID(as_uuid=True),
        primary_key=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    sa.Column(
        "session_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # SHA-256 of the opaque token: a database leak does not leak usable refresh tokens.
    sa.Column("token_hash", postgresql.BYTEA, nullable=False, unique=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column(
        "id",
        postgresql.UUID(as_uuid=True),
        primary_key=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    # Indexed through the composite indexes below, whose first column it is.
    sa.Column(
        "owner_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    # Bumped by every write: the ETag, and the optimistic-concurrency check of If-Match.
    sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    *_timestamps(),
    sa.CheckConstraint("char_length(title) > 0", name="title_not_empty"),
    # One index per list ordering (keyset on (column, id) within an owner) and the done filter.
    sa.Index("ix_items_owner_id_created_at_id", "owner_id", "created_at", "id"),
    sa.Index("ix_items_owner_id_title_id", "owner_id", "title", "id"),
    sa.Index("ix_items_owner_id_done_created_at_id", "owner_id", "done", "created_at", "id"),
)

# --- Worker and webhooks (keel.webhooks) ---

# A user's webhook endpoints. The secret signs every delivery (HMAC-SHA256); after a rotation
# the previous one keeps signing alongside until `previous_secret_expires_at`.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column(
        "id",
        postgresql.UUID(as_uuid=True),
        primary_key=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    sa.Column(
        "owner_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("events", postgresql.ARRAY(sa.String(64)), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("previous_secret", sa.String(128), nullable=True),
    sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
    *_timestamps(),
    # Listing (keyset on (created_at, id) within an owner) and the outbox fan-out by owner.
    sa.Index("ix_webhook_endpoints_owner_id_created_at_id", "owner_id", "created_at", "id"),
)

# The outbox and the delivery record in one row: written in the transaction of the change it
# announces; the relay enqueues rows that are due and not enqueued (`enqueued_at IS NULL`).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # Also the `Webhook-Id` header: receivers deduplicate on it.
    sa.Column(
        "id",
        postgresql.UUID(as_uuid=True),
        primary_key=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    sa.Column(
        "endpoint_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("payload", postgresql.JSONB, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    # Bumped each time the row is handed to the queue; part of the job id, so a stale job
    # (an older hand-over) recognises itself and does nothing.
    sa.Column("enqueue_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column(
        "next_attempt_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.now(),
    ),
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("job_id", sa.String(128), nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    # The request that caused the delivery: the job's log lines carry it.
    sa.Column("request_id", sa.String(128), nullable=True),
    *_timestamps(),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
    sa.Index("ix_webhook_deliveries_endpoint_id_created_at_id", "endpoint_id", "created_at", "id"),
    # The relay's scan: only pending rows are indexed, so the index stays small.
    sa.Index(
        "ix_webhook_deliveries_pending_next_attempt_at",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
    ),
    # The retention purge of finished rows.
    sa.Index("ix_webhook_deliveries_created_at", "created_at"),
)

# Every HTTP attempt of a delivery: status code, duration, error.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "delivery_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)
