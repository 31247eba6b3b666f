"""Spend limits: periods, what applies to a hold or an event, the refusal of holds that would pass a
limit, and the flag and notice of usage that passed one.

A period is a UTC calendar day, an ISO week from Monday, a calendar month, or `none` (for good). What
is spent in a period is the charge (less reversals) of the usage that occurred in it, read from the
rollups by UTC day, so periods that start at midnight UTC are summed exactly. Limits are checked with
the account row locked (the ledger's lock order), so two holds cannot both take the last credits of a
limit; usage is never refused because of one."""

import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg

from app.errors import AppError, Conflict, InvalidRequest, NotFound
from app.limits import repository
from app.limits.schemas import LimitCreate, SpendLimit
from app.money import add, check_amount, money, subtract
from app.webhooks import repository as webhooks_repository
from app.webhooks import service as webhooks

# The period_start a limit with no period is kept under (a timestamp key cannot be NULL).
FOR_GOOD = datetime(1970, 1, 1, tzinfo=UTC)


class SpendLimitExceeded(AppError):
    status = 402
    code = "spend_limit_exceeded"


def period_bounds(period: str, at: datetime) -> tuple[datetime | None, datetime | None]:
    """The period of `period` that contains `at`: [start, end), both None for `none`."""
    if period == "none":
        return None, None
    day = at.astimezone(UTC).date()
    if period == "day":
        start = day
        end = day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return midnight(start), midnight(end)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def applies(limit, end_user: str | None, tags: Iterable[str] | None, api_key_id: str | None) -> bool:
    scope, value = limit["scope"], limit["value"]
    if scope == "account":
        return True
    if scope == "end_user":
        return value == end_user
    if scope == "api_key":
        return value == api_key_id
    return value in (tags or ())


def describe(limit) -> str:
    target = "the account" if limit["scope"] == "account" else f"{limit['scope']} '{limit['value']}'"
    period = "in total" if limit["period"] == "none" else f"per {limit['period']}"
    return f"{money(limit['amount'])} credits {period} for {target}"


async def spent_in(conn: asyncpg.Connection, limit, start: datetime | None, end: datetime | None) -> Decimal:
    lo, hi = (start.date() if start else None), (end.date() if end else None)
    return await repository.spent(conn, limit["account_id"], limit["scope"], limit["value"], lo, hi)


# The API


async def create(conn: asyncpg.Connection, account_id: str, data: LimitCreate, now: datetime) -> SpendLimit:
    check_amount(data.amount, "amount")
    if data.amount <= 0:
        raise InvalidRequest("`amount` must be more than 0", param="amount")
    if (data.scope == "account") != (data.value is None):
        message = (
            "`value` is not taken for a limit of the account"
            if data.scope == "account"
            else f"`value` (the {data.scope.replace('_', ' ')}) is required for scope `{data.scope}`"
        )
        raise InvalidRequest(message, param="value")
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM accounts WHERE id = $1)", account_id):
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    values = {
        "account_id": account_id,
        "id": f"lim_{secrets.token_hex(8)}",
        "scope": data.scope,
        "value": data.value,
        "amount": data.amount,
        "period": data.period,
        "created_at": now,
    }
    row = await repository.insert_limit(conn, values)
    if row is None:
        raise Conflict(f"The account already has a {data.period} limit for this {data.scope}", code="limit_exists")
    return await view(conn, row, now)


async def list_for(conn: asyncpg.Connection, account_id: str, now: datetime) -> list[SpendLimit]:
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM accounts WHERE id = $1)", account_id):
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    return [await view(conn, row, now) for row in await repository.list_limits(conn, account_id)]


async def delete(conn: asyncpg.Connection, account_id: str, limit_id: str) -> None:
    if not await repository.delete_limit(conn, account_id, limit_id):
        raise NotFound(f"Spend limit '{limit_id}' not found", code="limit_not_found")


async def view(conn: asyncpg.Connection, limit, now: datetime) -> SpendLimit:
    start, end = period_bounds(limit["period"], now)
    spent = await spent_in(conn, limit, start, end)
    pending = await repository.held(conn, limit["account_id"], limit["scope"], limit["value"], now)
    left = subtract(subtract(limit["amount"], spent), pending)
    reached = await repository.was_reached(conn, limit["account_id"], limit["id"], start or FOR_GOOD)
    return SpendLimit(
        id=limit["id"],
        account_id=limit["account_id"],
        scope=limit["scope"],
        value=limit["value"],
        amount=money(limit["amount"]),
        period=limit["period"],
        created_at=limit["created_at"],
        period_start=start,
        period_end=end,
        spent=money(spent),
        pending=money(pending),
        remaining=money(max(left, Decimal(0))),
        reached=reached or spent >= limit["amount"],
    )


# Holds and usage


async def check_hold(
    conn: asyncpg.Connection,
    account_id: str,
    amount: Decimal,
    end_user: str | None,
    tags: list[str] | None,
    api_key_id: str | None,
    now: datetime,
) -> None:
    """Refuse a hold of `amount` that, with what was spent in the period and what open holds keep, would
    pass a limit that applies to it. The caller holds the account's lock."""
    for limit in await repository.list_limits(conn, account_id):
        if not applies(limit, end_user, tags, api_key_id):
            continue
        start, end = period_bounds(limit["period"], now)
        spent = await spent_in(conn, limit, start, end)
        pending = await repository.held(conn, account_id, limit["scope"], limit["value"], now)
        left = subtract(subtract(limit["amount"], spent), pending)
        if amount > left:
            raise SpendLimitExceeded(
                f"The call may cost {money(amount)} credits; the limit of {describe(limit)} has "
                f"{money(max(left, Decimal(0)))} left",
                param="account_id",
            )


class Usage:
    """The limits of the accounts in one recording of usage, and the running spend of each limit's
    periods as the events are taken in order."""

    def __init__(self, limits: dict[str, list]) -> None:
        self.limits = limits
        self.running: dict[tuple[str, datetime], Decimal] = {}
        self.reached: dict[tuple[str, str, datetime], tuple] = {}

    @classmethod
    async def load(cls, conn: asyncpg.Connection, account_ids: Iterable[str]) -> "Usage":
        return cls({account_id: await repository.list_limits(conn, account_id) for account_id in account_ids})

    async def take(self, conn: asyncpg.Connection, event) -> bool:
        """Count a charged event against the limits that apply to it; whether it went past one."""
        over = False
        for limit in self.limits.get(event.account_id, ()):
            if not applies(limit, event.end_user, event.tags, event.api_key_id):
                continue
            start, end = period_bounds(limit["period"], event.occurred_at)
            key = (limit["id"], start or FOR_GOOD)
            if key not in self.running:
                self.running[key] = await spent_in(conn, limit, start, end)
            after = add(self.running[key], event.cost)
            self.running[key] = after
            if after >= limit["amount"]:
                self.reached[(event.account_id, limit["id"], start or FOR_GOOD)] = (limit, after)
            over = over or after > limit["amount"]
        return over

    async def announce(self, conn: asyncpg.Connection, now: datetime) -> None:
        """Mark the periods reached; the first time one is, `spend_limit.reached` is written with it."""
        if not self.reached:
            return
        first = await repository.mark_reached(conn, list(self.reached), now)
        notifications = []
        for key in sorted(first, key=lambda k: (k[0], k[1])):
            limit, spent = self.reached[key]
            start, end = period_bounds(limit["period"], key[2]) if limit["period"] != "none" else (None, None)
            data = {
                "account_id": limit["account_id"],
                "limit_id": limit["id"],
                "scope": limit["scope"],
                "value": limit["value"],
                "period": limit["period"],
                "period_start": webhooks.timestamp(start) if start else None,
                "period_end": webhooks.timestamp(end) if end else None,
                "amount": money(limit["amount"]),
                "spent": money(spent),
            }
            notifications.append(webhooks.notification(limit["account_id"], "spend_limit.reached", data, now))
        await webhooks_repository.notify(conn, notifications, now)
