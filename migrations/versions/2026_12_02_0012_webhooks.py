"""Webhooks: endpoints (global), and a transactional outbox of events and their deliveries (per account).

Events are written by the statement that makes the change they announce (a balance crossing a line, a
usage event stored unrated), so none is lost or sent for a change that rolled back. Each event gets one
delivery per subscribed endpoint, which the delivery workers send and retry.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # balance.low fires when the balance falls to the threshold while armed, and re-arms once above it.
    op.add_column("accounts", sa.Column("low_balance_threshold", sa.Numeric(38, 9)))
    op.add_column("accounts", sa.Column("low_balance_armed", sa.Boolean(), nullable=False, server_default=sa.true()))

    # Global, like the catalog: no key into per-account tables, so it can be a reference table.
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("description", sa.Text()),
        # Deliveries are signed with it, so it is kept as is (unlike API keys, which are only compared).
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
        sa.CheckConstraint("cardinality(events) > 0", name=op.f("ck_webhook_endpoints_events")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("account_id", sa.Text(), nullable=False),
        # The webhook-id header: the same for every attempt and every endpoint.
        sa.Column(
            "id",
            sa.Text(),
            nullable=False,
            server_default=sa.text("'msg_' || replace(gen_random_uuid()::text, '-', '')"),
        ),
        sa.Column("type", sa.Text(), nullable=False),
        # The body sent: {"type", "timestamp", "data"}.
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_webhook_events_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_webhook_events")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("endpoint_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        # Pending: when it is due (or, while a worker sends it, when its claim lapses).
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_response", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # Failed attempts are retried for a day from this (the creation, or a retry asked for by hand).
        sa.Column("retry_since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id", "event_id"],
            ["webhook_events.account_id", "webhook_events.id"],
            name=op.f("fk_webhook_deliveries_account_id_webhook_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "account_id", "event_id", "endpoint_id", name=op.f("uq_webhook_deliveries_account_id_event_id_endpoint_id")
        ),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_webhook_deliveries_status")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_webhook_deliveries_endpoint_id_id"), "webhook_deliveries", ["endpoint_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
    op.drop_column("accounts", "low_balance_armed")
    op.drop_column("accounts", "low_balance_threshold")
