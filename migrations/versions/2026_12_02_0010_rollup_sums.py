"""Rollup sums that cannot overflow: token and money sums as unbounded NUMERIC.

A day's tokens of one account and model were a bigint and its credits a NUMERIC(38, 9): one event
reporting 2^63 - 1 tokens filled the day, and every later event of that account and model (and any
batch holding one) failed. Each event is now bounded (app/pricing.py MAX_TOKENS, the ledger's amounts),
and the sums of any number of events are unbounded NUMERIC, so no count of events can overflow them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("usage_rollups", "usage_rollups_monthly")
TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
MONEY = ("cost", "upstream_cost_usd", "credits_usd", "reversed")


def alter(table: str, types: dict[str, str]) -> None:
    # One statement per table: the table is rewritten once, not once per column.
    op.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} TYPE {t}" for c, t in types.items()))


def upgrade() -> None:
    for table in TABLES:
        alter(table, dict.fromkeys(TOKENS + MONEY, "numeric"))


def downgrade() -> None:
    # Fails, rather than truncates, when a sum no longer fits the old types.
    for table in TABLES:
        alter(table, dict.fromkeys(TOKENS, "bigint") | dict.fromkeys(MONEY, "numeric(38, 9)"))
