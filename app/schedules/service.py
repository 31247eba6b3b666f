"""Recurring grants: schedules turned into ordinary grants, one per period, exactly once.

Issuing a schedule's due periods locks its account first (the ledger's lock order, through
`open_books`), then reads the schedule: a second issuer waits for the first and then finds nothing
due. Each grant also carries (schedule, period start) under a unique index. After downtime every
missed period gets its grant, in order; one whose period is already over is issued and, as its credits
have expired with the period, expires at once, so the ledger shows what each period gave."""

import secrets
from calendar import monthrange
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from app import db
from app.errors import InvalidRequest, NotFound
from app.ledger.service import add_credits, expire_grants, open_books
from app.money import check_amount, money
from app.schedules import repository
from app.schedules.schemas import Schedule, ScheduleCreate
from app.times import utc

STEP = {"day": timedelta(days=1), "week": timedelta(days=7)}


def next_start(period: str, start: datetime, anchor: datetime) -> datetime:
    """The start of the period after the one starting at `start`. Months keep the anchor's day (the
    last day of a shorter month), so a schedule from the 31st gives the 28th, then the 31st again."""
    if period in STEP:
        return start + STEP[period]
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month, day=min(anchor.day, monthrange(year, month)[1]))


def view(row) -> Schedule:
    return Schedule(
        id=row["id"],
        account_id=row["account_id"],
        amount=money(row["amount"]),
        period=row["period"],
        rollover=row["rollover"],
        rollover_cap=None if row["rollover_cap"] is None else money(row["rollover_cap"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        grant_ttl_seconds=row["grant_ttl_seconds"],
        description=row["description"],
        next_grant_at=None if row["ended_at"] is not None else row["next_period_at"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
    )


async def create(conn: asyncpg.Connection, account_id: str, data: ScheduleCreate, now: datetime) -> Schedule:
    amount = check_amount(data.amount, "amount")
    if amount <= 0:
        raise InvalidRequest("`amount` must be positive", param="amount")
    if (data.rollover == "capped") != (data.rollover_cap is not None):
        raise InvalidRequest(
            "`rollover_cap` is required with `rollover: capped`, and only with it", param="rollover_cap"
        )
    if data.rollover_cap is not None:
        check_amount(data.rollover_cap, "rollover_cap")
    if data.grant_ttl_seconds is not None and data.rollover != "all":
        raise InvalidRequest(
            "`grant_ttl_seconds` is for `rollover: all`; otherwise each grant lasts its period",
            param="grant_ttl_seconds",
        )
    starts_at = utc(data.starts_at, "starts_at") if data.starts_at is not None else now
    ends_at = utc(data.ends_at, "ends_at") if data.ends_at is not None else None
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidRequest("`ends_at` must be after `starts_at`", param="ends_at")
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM accounts WHERE id = $1)", account_id):
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    row = await repository.insert(
        conn,
        {
            "account_id": account_id,
            "id": f"gs_{secrets.token_hex(8)}",
            "amount": amount,
            "period": data.period,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "rollover": data.rollover,
            "rollover_cap": data.rollover_cap,
            "grant_ttl_seconds": data.grant_ttl_seconds,
            "description": data.description,
            "next_period_at": starts_at,
            "created_at": now,
        },
    )
    # A schedule that has started gives its first grant at once.
    await issue(conn, account_id, row["id"], now)
    return view(await repository.get(conn, account_id, row["id"]))


async def list_for(conn: asyncpg.Connection, account_id: str) -> list[Schedule]:
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM accounts WHERE id = $1)", account_id):
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    return [view(row) for row in await repository.list_for(conn, account_id)]


async def get(conn: asyncpg.Connection, account_id: str, schedule_id: str) -> Schedule:
    row = await repository.get(conn, account_id, schedule_id)
    if row is None:
        raise NotFound(f"Grant schedule '{schedule_id}' not found", code="schedule_not_found")
    return view(row)


async def end(conn: asyncpg.Connection, account_id: str, schedule_id: str, now: datetime) -> None:
    """No grant after now; grants already issued stay as they are."""
    if await repository.end(conn, account_id, schedule_id, now) is None:
        raise NotFound(f"Grant schedule '{schedule_id}' not found", code="schedule_not_found")


async def issue(conn: asyncpg.Connection, account_id: str, schedule_id: str, now: datetime) -> int:
    """Issue every period of the schedule due by `now`, in order; how many grants were made."""
    books = await open_books(conn, [account_id], now)
    schedule = await repository.lock(conn, account_id, schedule_id)
    if schedule is None or schedule["ended_at"] is not None:
        return 0
    start, ends_at, made = schedule["next_period_at"], schedule["ends_at"], 0
    while start <= now and (ends_at is None or start < ends_at):
        end = next_start(schedule["period"], start, schedule["starts_at"])
        if not await repository.issued(conn, account_id, schedule_id, start):
            carried = Decimal(0)
            if schedule["rollover"] != "all":
                # The grants of earlier periods end with them: expired here, before the next one arrives.
                await expire_grants(conn, books, [account_id], start)
            if schedule["rollover"] == "capped":
                previous = await repository.expired_before(conn, account_id, schedule_id, start)
                carried = min(previous, schedule["rollover_cap"])
            if schedule["rollover"] == "all":
                ttl = schedule["grant_ttl_seconds"]
                expires_at = start + timedelta(seconds=ttl) if ttl else None
            else:
                expires_at = end
            description = schedule["description"] or f"recurring grant {schedule_id}"
            if carried:
                description += f" ({money(carried)} carried over)"
            await add_credits(
                conn,
                books,
                account_id,
                schedule["amount"] + carried,
                kind="grant",
                counterparty="system:grants",
                description=description,
                expires_at=expires_at,
                now=now,
                schedule_id=schedule_id,
                period_start=start,
            )
            await books.close(conn, now)
            made += 1
        start = end
    finished = ends_at if ends_at is not None and start >= ends_at else None
    await repository.advance(conn, account_id, schedule_id, start, finished)
    return made


async def issue_due(pool: asyncpg.Pool, now: datetime, limit: int = 100) -> int:
    """Issue the due periods of up to `limit` schedules, each in a transaction of its own account."""
    async with pool.acquire() as conn:
        due = await repository.due(conn, now, limit)
    made = 0
    for row in due:
        made += await db.transaction(pool, lambda conn, row=row: issue(conn, row["account_id"], row["id"], now))
    return made
