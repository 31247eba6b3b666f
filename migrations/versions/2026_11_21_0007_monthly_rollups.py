"""Monthly usage rollups kept from the daily ones by a trigger; rollup token counts as bigint.

Reports over whole months read the monthly rollups, a thirtieth of the rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
SUMS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost", "upstream_cost_usd", "credits_usd", "reversed",
)  # fmt: skip


def add(row: str, values: list[str]) -> str:
    """An upsert adding `values` (the sums, in SUMS order) to the month of the daily rollup `row`."""
    return f"""
        INSERT INTO usage_rollups_monthly AS m (month, account_id, model_id, {", ".join(SUMS)})
        VALUES (date_trunc('month', {row}.day)::date, {row}.account_id, {row}.model_id, {", ".join(values)})
        ON CONFLICT (month, account_id, model_id) DO UPDATE SET
            {", ".join(f"{c} = m.{c} + excluded.{c}" for c in SUMS)};
    """  # noqa: S608 (built from constants only)


def upgrade() -> None:
    # Summing bigint is several times faster than summing numeric, and a day's tokens of one account
    # and model stay far below 2^63.
    for column in TOKENS:
        op.alter_column("usage_rollups", column, type_=sa.BigInteger(), existing_nullable=False)
    money = sa.Numeric(precision=38, scale=9)
    op.create_table(
        "usage_rollups_monthly",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        *(sa.Column(c, sa.BigInteger(), nullable=False) for c in TOKENS),
        *(sa.Column(c, money, nullable=False) for c in SUMS[6:9]),
        sa.Column("reversed", money, server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_rollups_monthly_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_usage_rollups_monthly_model_id_models")),
        sa.PrimaryKeyConstraint("month", "account_id", "model_id", name=op.f("pk_usage_rollups_monthly")),
        postgresql_with={"fillfactor": 70},
    )
    # Rollup rows are updated in place again and again, never in their keys: room left on each page
    # lets those updates stay on the page (HOT), with no new index entries and less to vacuum.
    op.execute("ALTER TABLE usage_rollups SET (fillfactor = 70)")
    # Reports grouped by model and day read the daily rollups in this order, a page at a time.
    op.create_index(op.f("ix_usage_rollups_model_id_day"), "usage_rollups", ["model_id", "day"])
    # Every write to a daily rollup (recording usage, a reversal, or plain SQL) is added to its month
    # in the same transaction, so the months always equal the sum of their days.
    op.execute(
        f"""
        CREATE FUNCTION usage_rollups_to_months() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND (OLD.day, OLD.account_id, OLD.model_id)
                    IS NOT DISTINCT FROM (NEW.day, NEW.account_id, NEW.model_id) THEN
                {add("NEW", [f"NEW.{c} - OLD.{c}" for c in SUMS])}
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN {add("OLD", [f"-OLD.{c}" for c in SUMS])} END IF;
            IF TG_OP IN ('UPDATE', 'INSERT') THEN {add("NEW", [f"NEW.{c}" for c in SUMS])} END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER usage_rollups_to_months AFTER INSERT OR UPDATE OR DELETE ON usage_rollups "
        "FOR EACH ROW EXECUTE FUNCTION usage_rollups_to_months()"
    )
    op.execute(
        f"""
        INSERT INTO usage_rollups_monthly (month, account_id, model_id, {", ".join(SUMS)})
        SELECT date_trunc('month', day)::date, account_id, model_id, {", ".join(f"sum({c})" for c in SUMS)}
        FROM usage_rollups GROUP BY 1, 2, 3
        """  # noqa: S608 (built from constants only)
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER usage_rollups_to_months ON usage_rollups")
    op.execute("DROP FUNCTION usage_rollups_to_months()")
    op.drop_index(op.f("ix_usage_rollups_model_id_day"), table_name="usage_rollups")
    op.drop_table("usage_rollups_monthly")
    op.execute("ALTER TABLE usage_rollups RESET (fillfactor)")
    for column in TOKENS:
        op.alter_column("usage_rollups", column, type_=sa.Numeric(), existing_nullable=False)
