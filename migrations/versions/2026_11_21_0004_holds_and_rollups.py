"""Authorizations (credit holds) and daily usage rollups for reports.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 04:20:57.435464+00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.Numeric(), nullable=False),
        sa.Column("output_tokens", sa.Numeric(), nullable=False),
        sa.Column("cached_input_tokens", sa.Numeric(), nullable=False),
        sa.Column("cache_write_tokens", sa.Numeric(), nullable=False),
        sa.Column("reasoning_tokens", sa.Numeric(), nullable=False),
        sa.Column("cost", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("upstream_cost_usd", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("credits_usd", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("reversed", sa.Numeric(precision=38, scale=9), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_usage_rollups_account_id_accounts")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_usage_rollups_model_id_models")),
        sa.PrimaryKeyConstraint("day", "account_id", "model_id", name=op.f("pk_usage_rollups")),
    )
    op.create_index(op.f("ix_usage_rollups_account_id_day"), "usage_rollups", ["account_id", "day"], unique=False)
    op.create_table(
        "authorizations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=9), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("max_output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("price_id", sa.BigInteger(), nullable=False),
        sa.Column("margin", sa.Numeric(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("usage_event_id", sa.BigInteger(), nullable=True),
        sa.Column("settled_amount", sa.Numeric(precision=38, scale=9), nullable=True),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_authorizations_amount")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_authorizations_account_id_accounts")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_authorizations_model_id_models")),
        sa.ForeignKeyConstraint(["price_id"], ["prices.id"], name=op.f("fk_authorizations_price_id_prices")),
        sa.ForeignKeyConstraint(
            ["usage_event_id"], ["usage_events.id"], name=op.f("fk_authorizations_usage_event_id_usage_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorizations")),
    )
    op.create_index(
        "ix_authorizations_open",
        "authorizations",
        ["account_id"],
        unique=False,
        postgresql_where=sa.text("settled_at IS NULL AND released_at IS NULL"),
    )
    op.create_index(
        "uq_ledger_entries_reversal",
        "ledger_entries",
        ["usage_event_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'reversal'"),
    )

    # Events recorded before this revision get their rollups now.
    op.execute(
        """
        INSERT INTO usage_rollups
        SELECT (occurred_at AT TIME ZONE 'UTC')::date, account_id, model_id, count(*), sum(input_tokens),
               sum(output_tokens), sum(cached_input_tokens), sum(cache_write_tokens), sum(reasoning_tokens),
               sum(cost), sum(upstream_cost_usd), sum(credits_usd), 0
        FROM usage_events GROUP BY 1, 2, 3
        """
    )


def downgrade() -> None:
    op.drop_index(
        "uq_ledger_entries_reversal", table_name="ledger_entries", postgresql_where=sa.text("kind = 'reversal'")
    )
    op.drop_index(
        "ix_authorizations_open",
        table_name="authorizations",
        postgresql_where=sa.text("settled_at IS NULL AND released_at IS NULL"),
    )
    op.drop_table("authorizations")
    op.drop_index(op.f("ix_usage_rollups_account_id_day"), table_name="usage_rollups")
    op.drop_table("usage_rollups")
