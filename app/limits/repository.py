"""Spend limits, what was spent and held against them, and the periods in which they were reached."""

from datetime import date, datetime
from decimal import Decimal

import asyncpg

# What usage that occurred on days [lo, hi) was charged, less reversals, for a scope of one account;
# `$2` is the scope's value (unused for the account). A NULL bound is open.
SPENT = {
    "account": "SELECT coalesce(sum(cost - reversed), 0) FROM usage_rollups WHERE account_id = $1 AND $2::text IS NULL",
    "api_key": "SELECT coalesce(sum(cost - reversed), 0) FROM usage_rollups WHERE account_id = $1 AND api_key_id = $2",
    "end_user": (
        "SELECT coalesce(sum(cost - reversed), 0) FROM usage_rollups_end_users WHERE account_id = $1 AND end_user = $2"
    ),
    "tag": "SELECT coalesce(sum(cost - reversed), 0) FROM usage_rollups_tags WHERE account_id = $1 AND tag = $2",
}
DAYS = " AND ($3::date IS NULL OR day >= $3) AND ($4::date IS NULL OR day < $4)"
# What open holds of a scope keep.
HELD = {
    "account": "$2::text IS NULL",
    "api_key": "api_key_id = $2",
    "end_user": "end_user = $2",
    "tag": "$2 = ANY(tags)",
}


async def insert_limit(conn: asyncpg.Connection, values: dict) -> asyncpg.Record | None:
    """The new limit, or None when the account already has one for this target and period."""
    row = await conn.fetchrow(
        """
        INSERT INTO spend_limits (account_id, id, scope, value, amount, period, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id, scope, coalesce(value, ''), period) DO NOTHING
        RETURNING *
        """,
        *values.values(),
    )
    if row is not None:
        await conn.execute("UPDATE accounts SET has_spend_limits = true WHERE id = $1", values["account_id"])
    return row


async def list_limits(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM spend_limits WHERE account_id = $1 ORDER BY created_at, id", account_id)


async def delete_limit(conn: asyncpg.Connection, account_id: str, limit_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM spend_limits WHERE account_id = $1 AND id = $2 RETURNING id", account_id, limit_id
    )
    if deleted is not None:
        await conn.execute(
            "UPDATE accounts SET has_spend_limits = EXISTS (SELECT FROM spend_limits WHERE account_id = $1) "
            "WHERE id = $1",
            account_id,
        )
    return deleted is not None


async def spent(
    conn: asyncpg.Connection, account_id: str, scope: str, value: str | None, lo: date | None, hi: date | None
) -> Decimal:
    return await conn.fetchval(SPENT[scope] + DAYS, account_id, value, lo, hi)


async def held(conn: asyncpg.Connection, account_id: str, scope: str, value: str | None, now: datetime) -> Decimal:
    query = f"""
        SELECT coalesce(sum(amount), 0) FROM authorizations
        WHERE account_id = $1 AND settled_at IS NULL AND released_at IS NULL AND expires_at > $3 AND {HELD[scope]}
    """  # noqa: S608 (fixed fragments)
    return await conn.fetchval(query, account_id, value, now)


async def mark_reached(
    conn: asyncpg.Connection, reached: list[tuple[str, str, datetime]], now: datetime
) -> set[tuple[str, str, datetime]]:
    """Record (account_id, limit_id, period_start) as reached; the ones reached for the first time."""
    rows = await conn.fetch(
        """
        INSERT INTO spend_limit_periods (account_id, limit_id, period_start, reached_at)
        SELECT *, $4 FROM unnest($1::text[], $2::text[], $3::timestamptz[])
        ON CONFLICT DO NOTHING
        RETURNING account_id, limit_id, period_start
        """,
        [r[0] for r in reached],
        [r[1] for r in reached],
        [r[2] for r in reached],
        now,
    )
    return {(row["account_id"], row["limit_id"], row["period_start"]) for row in rows}


async def was_reached(conn: asyncpg.Connection, account_id: str, limit_id: str, period_start: datetime) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT FROM spend_limit_periods WHERE account_id = $1 AND limit_id = $2 AND period_start = $3)",
        account_id,
        limit_id,
        period_start,
    )


async def flag_over_limit(conn: asyncpg.Connection, account_id: str, event_ids: list[int]) -> None:
    await conn.execute(
        "UPDATE usage_events SET over_limit = true WHERE account_id = $1 AND id = ANY($2::bigint[])",
        account_id,
        event_ids,
    )
