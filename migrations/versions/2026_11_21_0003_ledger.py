"""Ledger: grants, usage events, double-entry ledger entries, idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 04:13:15.736024+00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("remaining", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0 AND remaining >= 0 AND remaining <= amount", name=op.f("ck_grants_amounts")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_grants_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
    )
    op.create_index(
        "ix_grants_open",
        "grants",
        ["account_id", "expires_at"],
        unique=False,
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_table(
        "usage_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("price_id", sa.BigInteger(), nullable=False),
        sa.Column("margin", sa.Numeric(), nullable=False),
        sa.Column("credits_per_usd", sa.Numeric(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("upstream_cost_usd", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("credits_usd", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("authorization_id", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("overdrawn", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_usage_events_account_id_accounts")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_usage_events_model_id_models")),
        sa.ForeignKeyConstraint(["price_id"], ["prices.id"], name=op.f("fk_usage_events_price_id_prices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
        sa.UniqueConstraint("account_id", "event_id", name=op.f("uq_usage_events_account_id_event_id")),
    )
    op.create_index(
        op.f("ix_usage_events_account_id_occurred_at"), "usage_events", ["account_id", "occurred_at"], unique=False
    )
    op.create_index(op.f("ix_usage_events_occurred_at"), "usage_events", ["occurred_at"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("balance_after", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("counterparty", sa.Text(), nullable=False),
        sa.Column("usage_event_id", sa.BigInteger(), nullable=True),
        sa.Column("grant_id", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "counterparty IN ('system:grants', 'system:revenue', 'system:expired', 'system:adjustments')",
            name=op.f("ck_ledger_entries_counterparty"),
        ),
        sa.CheckConstraint(
            "kind IN ('grant', 'usage', 'adjustment', 'expiration', 'reversal')", name=op.f("ck_ledger_entries_kind")
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_ledger_entries_account_id_accounts")),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name=op.f("fk_ledger_entries_grant_id_grants")),
        sa.ForeignKeyConstraint(
            ["usage_event_id"], ["usage_events.id"], name=op.f("fk_ledger_entries_usage_event_id_usage_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(op.f("ix_ledger_entries_account_id_id"), "ledger_entries", ["account_id", "id"], unique=False)
    op.create_index(op.f("ix_ledger_entries_grant_id"), "ledger_entries", ["grant_id"], unique=False)
    op.create_index(
        op.f("ix_ledger_entries_usage_event_id"),
        "ledger_entries",
        ["usage_event_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'usage'"),
    )
    op.add_column("accounts", sa.Column("next_expiry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "next_expiry_at")
    op.drop_index(
        op.f("ix_ledger_entries_usage_event_id"),
        table_name="ledger_entries",
        postgresql_where=sa.text("kind = 'usage'"),
    )
    op.drop_index(op.f("ix_ledger_entries_grant_id"), table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_account_id_id"), table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index(op.f("ix_usage_events_occurred_at"), table_name="usage_events")
    op.drop_index(op.f("ix_usage_events_account_id_occurred_at"), table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_index("ix_grants_open", table_name="grants", postgresql_where=sa.text("remaining > 0"))
    op.drop_table("grants")
    op.drop_table("idempotency_keys")
