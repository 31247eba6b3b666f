"""Grant schedules, and the grants they issued."""

from datetime import datetime
from decimal import Decimal

import asyncpg


async def insert(conn: asyncpg.Connection, values: dict) -> asyncpg.Record:
    columns = ", ".join(values)
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"INSERT INTO grant_schedules ({columns}) VALUES ({placeholders}) RETURNING *",  # noqa: S608 (our keys)
        *values.values(),
    )


async def list_for(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM grant_schedules WHERE account_id = $1 ORDER BY created_at, id", account_id)


async def get(conn: asyncpg.Connection, account_id: str, schedule_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM grant_schedules WHERE account_id = $1 AND id = $2", account_id, schedule_id
    )


async def end(conn: asyncpg.Connection, account_id: str, schedule_id: str, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE grant_schedules SET ended_at = coalesce(ended_at, $3) WHERE account_id = $1 AND id = $2 RETURNING *",
        account_id,
        schedule_id,
        now,
    )


async def due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """(account_id, id) of schedules with a period due, soonest first."""
    return await conn.fetch(
        "SELECT account_id, id FROM grant_schedules WHERE ended_at IS NULL AND next_period_at <= $1 "
        "ORDER BY next_period_at LIMIT $2",
        now,
        limit,
    )


async def lock(conn: asyncpg.Connection, account_id: str, schedule_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM grant_schedules WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, schedule_id
    )


async def advance(
    conn: asyncpg.Connection, account_id: str, schedule_id: str, next_period_at: datetime, ended_at: datetime | None
) -> None:
    await conn.execute(
        "UPDATE grant_schedules SET next_period_at = $3, ended_at = coalesce(ended_at, $4) "
        "WHERE account_id = $1 AND id = $2",
        account_id,
        schedule_id,
        next_period_at,
        ended_at,
    )


async def issued(conn: asyncpg.Connection, account_id: str, schedule_id: str, period_start: datetime) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT FROM grants WHERE account_id = $1 AND schedule_id = $2 AND period_start = $3)",
        account_id,
        schedule_id,
        period_start,
    )


async def expired_before(conn: asyncpg.Connection, account_id: str, schedule_id: str, start: datetime) -> Decimal:
    """What expired of the schedule's latest grant before the period starting at `start`."""
    return await conn.fetchval(
        """
        SELECT coalesce(-sum(e.amount), 0) FROM grants g
        JOIN ledger_entries e ON e.account_id = g.account_id AND e.grant_id = g.id AND e.kind = 'expiration'
        WHERE g.account_id = $1 AND g.schedule_id = $2 AND g.period_start = (
            SELECT max(period_start) FROM grants WHERE account_id = $1 AND schedule_id = $2 AND period_start < $3
        )
        """,
        account_id,
        schedule_id,
        start,
    )
