"""Recurring grants: schedules the service turns into ordinary grants, one per period.

Each grant made by a schedule names it and the start of its period; a unique index on (account,
schedule, period start) makes each period's grant exist once, whatever the number of workers issuing
and however late they catch up.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grant_schedules",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(38, 9), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True)),
        sa.Column("rollover", sa.Text(), nullable=False),
        sa.Column("rollover_cap", sa.Numeric(38, 9)),
        sa.Column("grant_ttl_seconds", sa.BigInteger()),
        sa.Column("description", sa.Text()),
        # The start of the next period to issue a grant for.
        sa.Column("next_period_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("amount > 0", name=op.f("ck_grant_schedules_amount")),
        sa.CheckConstraint("period IN ('day', 'week', 'month')", name=op.f("ck_grant_schedules_period")),
        sa.CheckConstraint("rollover IN ('none', 'all', 'capped')", name=op.f("ck_grant_schedules_rollover")),
        sa.CheckConstraint(
            "(rollover = 'capped') = (rollover_cap IS NOT NULL) AND coalesce(rollover_cap, 0) >= 0",
            name=op.f("ck_grant_schedules_cap"),
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_grant_schedules_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_grant_schedules")),
    )
    # The issuer reads what is due, soonest first; ended schedules leave the index.
    op.create_index(
        "ix_grant_schedules_due", "grant_schedules", ["next_period_at"], postgresql_where=sa.text("ended_at IS NULL")
    )
    op.add_column("grants", sa.Column("schedule_id", sa.Text()))
    op.add_column("grants", sa.Column("period_start", sa.DateTime(timezone=True)))
    op.create_index(
        "uq_grants_schedule_period",
        "grants",
        ["account_id", "schedule_id", "period_start"],
        unique=True,
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_grants_schedule_period", table_name="grants")
    op.drop_column("grants", "period_start")
    op.drop_column("grants", "schedule_id")
    op.drop_index("ix_grant_schedules_due", table_name="grant_schedules")
    op.drop_table("grant_schedules")
