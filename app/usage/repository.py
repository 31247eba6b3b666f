from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy import Row, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import numerics
from app.tables import ledger_entries, usage_events

if TYPE_CHECKING:
    from app.usage.service import Prepared

EVENT_COLUMNS = (
    "account_id", "event_id", "model_id", "price_id", "margin", "credits_per_usd", "input_tokens", "output_tokens",
    "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost", "upstream_cost_usd", "credits_usd",
    "occurred_at", "authorization_id", "metadata",
)  # fmt: skip
# The sums a usage rollup keeps, over events `e`; reports over raw events use the same expressions,
# so the two agree to the last digit.
ROLLUP_SUMS = """
    count(*) AS events, sum(e.input_tokens) AS input_tokens, sum(e.output_tokens) AS output_tokens,
    sum(e.cached_input_tokens) AS cached_input_tokens, sum(e.cache_write_tokens) AS cache_write_tokens,
    sum(e.reasoning_tokens) AS reasoning_tokens, sum(e.cost) AS cost, sum(e.upstream_cost_usd) AS upstream_cost_usd,
    sum(e.credits_usd) AS credits_usd
"""
ROLLUP_COLUMNS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost",
    "upstream_cost_usd", "credits_usd",
)  # fmt: skip
# Columns of EVENT_COLUMNS sent as one text each (`db.numerics`).
NUMERIC_COLUMNS = frozenset({"margin", "credits_per_usd", "cost", "upstream_cost_usd", "credits_usd"})
# One statement records the events and adds them to their daily rollups. Parameters $1..$17 are the
# columns of EVENT_COLUMNS in order, one array each (a joined text for NUMERIC_COLUMNS); $18 the
# overdrawn flags; $19 the time recorded.
INSERT = f"""
    WITH e AS (
        INSERT INTO usage_events (
            account_id, event_id, model_id, price_id, margin, credits_per_usd, input_tokens, output_tokens,
            cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd,
            occurred_at, authorization_id, metadata, overdrawn, recorded_at)
        SELECT *, $19 FROM unnest(
            $1::text[], $2::text[], $3::text[], $4::bigint[], string_to_array($5, ',')::numeric[],
            string_to_array($6, ',')::numeric[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
            $11::bigint[], string_to_array($12, ',')::numeric[], string_to_array($13, ',')::numeric[],
            string_to_array($14, ',')::numeric[], $15::timestamptz[], $16::text[], $17::jsonb[], $18::boolean[])
        RETURNING id, account_id, event_id, model_id, occurred_at, input_tokens, output_tokens, cached_input_tokens,
            cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd
    ), rollups AS (
        INSERT INTO usage_rollups AS r
        SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.model_id, {ROLLUP_SUMS}, 0
        FROM e GROUP BY 1, 2, 3
        ON CONFLICT (day, account_id, model_id) DO UPDATE SET
            {", ".join(f"{c} = r.{c} + excluded.{c}" for c in ROLLUP_COLUMNS)}
    )
    SELECT id, account_id, event_id FROM e
"""  # noqa: S608 (built from constants only)


async def existing(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[asyncpg.Record]:
    """Already recorded events among (account_id, event_id) keys, with their balance_after."""
    if not keys:
        return []
    accounts, event_ids = zip(*keys, strict=True)
    return await conn.fetch(
        """
        SELECT u.*, l.balance_after
        FROM unnest($1::text[], $2::text[]) AS k(account_id, event_id)
        JOIN usage_events u USING (account_id, event_id)
        JOIN ledger_entries l ON l.usage_event_id = u.id AND l.kind = 'usage'
        """,
        accounts,
        event_ids,
    )


async def insert(
    conn: asyncpg.Connection, events: list[tuple["Prepared", bool]], now: datetime
) -> dict[tuple[str, str], int]:
    """Insert new events in one statement; returns their ids by (account_id, event_id)."""
    if not events:
        return {}
    columns = [
        numerics(getattr(event, name) for event, _ in events)
        if name in NUMERIC_COLUMNS
        else [getattr(event, name) for event, _ in events]
        for name in EVENT_COLUMNS
    ]
    rows = await conn.fetch(INSERT, *columns, [overdrawn for _, overdrawn in events], now)
    return {(row["account_id"], row["event_id"]): row["id"] for row in rows}


async def list_events(
    conn: AsyncConnection,
    *,
    account_id: str | None,
    model_id: str | None,
    provider: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Row]:
    query = (
        select(usage_events, ledger_entries.c.balance_after)
        .join(
            ledger_entries,
            (ledger_entries.c.usage_event_id == usage_events.c.id) & (ledger_entries.c.kind == "usage"),
        )
        .order_by(usage_events.c.occurred_at, usage_events.c.id)
        .limit(limit)
    )
    if account_id is not None:
        query = query.where(usage_events.c.account_id == account_id)
    if model_id is not None:
        query = query.where(usage_events.c.model_id == model_id)
    if provider is not None:
        query = query.where(usage_events.c.model_id.startswith(provider + "/", autoescape=True))
    if start is not None:
        query = query.where(usage_events.c.occurred_at >= start)
    if end is not None:
        query = query.where(usage_events.c.occurred_at < end)
    if after is not None:
        query = query.where(tuple_(usage_events.c.occurred_at, usage_events.c.id) > tuple_(*after))
    return list(await conn.execute(query))
