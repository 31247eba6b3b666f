"""Spend limits: per account, end user, tag or reporting key, over a day, week, month or for good.

A hold that would pass a limit is refused; usage past one is recorded and flagged (`over_limit`), and
`spend_limit.reached` is announced once per limit and period (`spend_limit_periods`, written with the
event). Holds keep the end user, tags and key they were made for, so that what they hold counts
against the same limits. `accounts.has_spend_limits` spares accounts without limits any extra read
when their usage is recorded.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("has_spend_limits", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("usage_events", sa.Column("over_limit", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("authorizations", sa.Column("end_user", sa.Text()))
    op.add_column("authorizations", sa.Column("tags", sa.ARRAY(sa.Text())))
    op.add_column("authorizations", sa.Column("api_key_id", sa.Text()))
    op.create_table(
        "spend_limits",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("value", sa.Text()),
        sa.Column("amount", sa.Numeric(38, 9), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("scope IN ('account', 'end_user', 'tag', 'api_key')", name=op.f("ck_spend_limits_scope")),
        sa.CheckConstraint("period IN ('day', 'week', 'month', 'none')", name=op.f("ck_spend_limits_period")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_spend_limits_amount")),
        sa.CheckConstraint("(scope = 'account') = (value IS NULL)", name=op.f("ck_spend_limits_value")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_spend_limits_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_spend_limits")),
    )
    op.create_index(
        "uq_spend_limits_target",
        "spend_limits",
        ["account_id", "scope", sa.text("coalesce(value, '')"), "period"],
        unique=True,
    )
    op.create_table(
        "spend_limit_periods",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("limit_id", sa.Text(), nullable=False),
        # Midnight UTC starting the day, week or month; 1970-01-01 for a limit with no period.
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id", "limit_id"],
            ["spend_limits.account_id", "spend_limits.id"],
            name=op.f("fk_spend_limit_periods_account_id_spend_limits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "limit_id", "period_start", name=op.f("pk_spend_limit_periods")),
    )


def downgrade() -> None:
    op.drop_table("spend_limit_periods")
    op.drop_index("uq_spend_limits_target", table_name="spend_limits")
    op.drop_table("spend_limits")
    op.drop_column("authorizations", "api_key_id")
    op.drop_column("authorizations", "tags")
    op.drop_column("authorizations", "end_user")
    op.drop_column("usage_events", "over_limit")
    op.drop_column("accounts", "has_spend_limits")
