"""Monthly rollups for attribution: by reporting key, by end user and by tag.

Reports by key, end user or tag over whole months read these instead of the daily rollups, a
thirtieth of the rows, as reports by model or account already did. The monthly rollups gain the
reporting key in their key (as the daily ones did in 0013); the end users' and the tags' rollups get
monthly twins. All three are filled from the daily rollups, which they must equal summed by month
(`billing reconcile` checks it).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SUMS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost", "upstream_cost_usd", "credits_usd", "reversed",
)  # fmt: skip
SUMMED = ", ".join(f"sum({name})" for name in SUMS)
COLUMNS = ", ".join(SUMS)


def sums() -> list[sa.Column]:
    return [
        *(sa.Column(name, sa.BigInteger() if name == "events" else sa.Numeric(), nullable=False) for name in SUMS[:-1]),
        sa.Column("reversed", sa.Numeric(), server_default="0", nullable=False),
    ]


def monthly_twin(daily: str, keys: list[str], index: list[str]) -> None:
    """A table of `daily`'s sums by month instead of day, under the same other keys, filled from it."""
    table = f"{daily}_monthly"
    op.create_table(
        table,
        sa.Column("month", sa.Date(), nullable=False),
        *(sa.Column(key, sa.Text(), nullable=False) for key in keys),
        *sums(),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f(f"fk_{table}_account_id_accounts")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f(f"fk_{table}_model_id_models")),
        sa.PrimaryKeyConstraint("month", *keys, name=op.f(f"pk_{table}")),
        postgresql_with={"fillfactor": 70},
    )
    op.create_index(op.f(f"ix_{table}_{'_'.join(index)}"), table, index)
    op.execute(
        f"""
        INSERT INTO {table} (month, {", ".join(keys)}, {COLUMNS})
        SELECT date_trunc('month', day)::date, {", ".join(keys)}, {SUMMED} FROM {daily}
        GROUP BY date_trunc('month', day)::date, {", ".join(keys)}
        """  # noqa: S608 (constants only)
    )


def refill_monthly(keys: list[str]) -> None:
    """usage_rollups_monthly summed again from the daily rollups, by month and `keys`."""
    op.execute("DELETE FROM usage_rollups_monthly")
    op.execute(
        f"""
        INSERT INTO usage_rollups_monthly (month, {", ".join(keys)}, {COLUMNS})
        SELECT date_trunc('month', day)::date, {", ".join(keys)}, {SUMMED} FROM usage_rollups
        GROUP BY date_trunc('month', day)::date, {", ".join(keys)}
        """  # noqa: S608 (constants only)
    )


def upgrade() -> None:
    op.add_column("usage_rollups_monthly", sa.Column("api_key_id", sa.Text(), nullable=False, server_default=""))
    op.drop_constraint(op.f("pk_usage_rollups_monthly"), "usage_rollups_monthly", type_="primary")
    keys = ["account_id", "model_id", "api_key_id"]
    refill_monthly(keys)
    op.create_primary_key(op.f("pk_usage_rollups_monthly"), "usage_rollups_monthly", ["month", *keys])

    monthly_twin(
        "usage_rollups_end_users",
        ["account_id", "end_user", "model_id", "api_key_id"],
        ["account_id", "end_user", "month"],
    )
    monthly_twin("usage_rollups_tags", ["account_id", "tag", "model_id"], ["account_id", "tag", "month"])


def downgrade() -> None:
    for daily, index in (
        ("usage_rollups_tags", "account_id_tag_month"),
        ("usage_rollups_end_users", "account_id_end_user_month"),
    ):
        op.drop_index(op.f(f"ix_{daily}_monthly_{index}"), table_name=f"{daily}_monthly")
        op.drop_table(f"{daily}_monthly")
    # Rows that differ only by key become one again.
    op.drop_constraint(op.f("pk_usage_rollups_monthly"), "usage_rollups_monthly", type_="primary")
    op.drop_column("usage_rollups_monthly", "api_key_id")
    refill_monthly(["account_id", "model_id"])
    op.create_primary_key(
        op.f("pk_usage_rollups_monthly"), "usage_rollups_monthly", ["month", "account_id", "model_id"]
    )
