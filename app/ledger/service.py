import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from app import db, idempotency
from app.catalog.model import Catalog
from app.catalog.resolve import bedrock_region
from app.errors import AppError, Conflict, InvalidRequest, NotFound
from app.idempotency import Result
from app.keys.schemas import Principal
from app.ledger import repository
from app.ledger.schemas import (
    Account,
    AccountCreate,
    AccountUpdate,
    Adjustment,
    AdjustmentCreate,
    Authorization,
    AuthorizationCreate,
    Balance,
    Grant,
    GrantCreate,
    GrantCreated,
    LedgerEntry,
    Reversal,
    ReversalCreate,
)
from app.limits import service as spend_limits
from app.money import add, check_amount, money, subtract
from app.times import utc
from app.usage import reported
from app.webhooks import service as webhooks
from app.webhooks.schemas import Notification


def to_account(row: Row) -> Account:
    pending = Decimal(row.pending)
    return Account(
        id=row.id,
        name=row.name,
        status=row.status,
        overdraft_limit=money(row.overdraft_limit),
        balance=money(row.balance),
        pending=money(pending),
        available=money(subtract(row.balance, pending)),
        created_at=row.created_at,
        low_balance_threshold=None if row.low_balance_threshold is None else money(row.low_balance_threshold),
    )


async def create_account(conn: AsyncConnection, data: AccountCreate) -> Account:
    account_id = data.id or f"acct_{secrets.token_hex(8)}"
    overdraft_limit = check_amount(data.overdraft_limit, "overdraft_limit")
    row = await repository.insert_account(conn, account_id=account_id, name=data.name, overdraft_limit=overdraft_limit)
    if row is None:
        raise Conflict(f"Account '{account_id}' already exists", code="account_exists", param="id")
    return to_account(row)


async def get_account(conn: AsyncConnection, account_id: str, now: datetime) -> Account:
    row = await repository.get_account(conn, account_id, now)
    if row is None:
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    return to_account(row)


async def update_account(conn: asyncpg.Connection, account_id: str, data: AccountUpdate, now: datetime) -> None:
    """Setting the low-balance threshold arms balance.low again: it fires at once (in this transaction)
    when the balance is already at or below the new line, else when the balance falls to it."""
    books = await open_books(conn, [account_id], now)
    if account_id not in books.balance:
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    if data.low_balance_threshold is msgspec.UNSET:
        return
    threshold = data.low_balance_threshold
    if threshold is not None:
        threshold = check_amount(threshold, "low_balance_threshold", allow_negative=True)
    balance = books.balance[account_id]
    found, armed = webhooks.balance_crossings(
        account_id,
        balance,
        balance,
        overdraft_limit=books.overdraft_limit[account_id],
        threshold=threshold,
        armed=True,
        now=now,
    )
    await repository.set_low_balance(conn, account_id, threshold, armed, found, now)


class Books:
    """The accounts one ledger transaction has locked, and the entries it posts to them.

    Balances are carried forward in memory entry by entry, so each entry gets its `balance_after`
    and the whole transaction is written by one statement in `close`."""

    def __init__(self, rows: list) -> None:
        self.balance: dict[str, Decimal] = {row["id"]: row["balance"] for row in rows}
        self.overdraft_limit: dict[str, Decimal] = {row["id"]: row["overdraft_limit"] for row in rows}
        self.next_expiry: dict[str, datetime | None] = {row["id"]: row["next_expiry_at"] for row in rows}
        # The accounts with spend limits: the only ones whose limits are read (app/limits).
        self.limited = {row["id"] for row in rows if row["has_spend_limits"]}
        self.low_balance: dict[str, tuple[Decimal | None, bool]] = {
            row["id"]: (row["low_balance_threshold"], row["low_balance_armed"]) for row in rows
        }
        # Balances as last written: the webhook events are those of the move from these to the new ones.
        self.written = dict(self.balance)
        self.entries: list[tuple] = []
        self.draws: dict[str, Decimal] = {}
        # Webhook events of these entries, written with them.
        self.notifications: list[Notification] = []

    def post(
        self,
        account_id: str,
        kind: str,
        amount: Decimal,
        counterparty: str,
        *,
        usage_event_id: int | None = None,
        grant_id: int | None = None,
        description: str | None = None,
    ) -> Decimal:
        """Post one entry (positive `amount` credits the account); returns the balance after it."""
        balance = self.balance[account_id] = add(self.balance[account_id], amount)
        if amount < 0 and kind != "expiration":  # an expiration empties its own grant instead
            self.draws[account_id] = subtract(self.draws.get(account_id, Decimal(0)), amount)
        self.entries.append((account_id, kind, amount, balance, counterparty, usage_event_id, grant_id, description))
        return balance

    async def close(self, conn: asyncpg.Connection, now: datetime) -> None:
        if self.entries:
            touched = {entry[0] for entry in self.entries}
            balances, notifications = {}, self.notifications
            for account_id in sorted(touched):
                threshold, armed = self.low_balance[account_id]
                found, armed = webhooks.balance_crossings(
                    account_id,
                    self.written[account_id],
                    self.balance[account_id],
                    overdraft_limit=self.overdraft_limit[account_id],
                    threshold=threshold,
                    armed=armed,
                    now=now,
                )
                notifications += found
                balances[account_id] = (self.balance[account_id], armed)
                self.low_balance[account_id] = (threshold, armed)
                self.written[account_id] = self.balance[account_id]
            await repository.post_entries(conn, self.entries, balances, self.draws, notifications, now)
            self.entries, self.draws, self.notifications = [], {}, []


async def open_books(conn: asyncpg.Connection, account_ids: list[str], now: datetime) -> Books:
    """Lock the accounts (in id order) and expire what is due on them first, so nothing later in the
    transaction can spend credits that have already expired."""
    books = Books(await repository.lock_accounts(conn, account_ids))
    due = [account_id for account_id, at in books.next_expiry.items() if at is not None and at <= now]
    if due:
        await expire_grants(conn, books, due, now)
    return books


async def expire_grants(conn: asyncpg.Connection, books: Books, account_ids: list[str], now: datetime) -> int:
    grants = await repository.due_grants(conn, account_ids, now)
    for grant in grants:
        books.post(
            grant["account_id"],
            "expiration",
            -grant["remaining"],
            "system:expired",
            grant_id=grant["id"],
            description=f"unused credits of grant {grant['id']} expired at {grant['expires_at'].isoformat()}",
        )
        books.notifications.append(webhooks.grant_expired(grant, now))
    await repository.close_grants(conn, [(grant["account_id"], grant["id"]) for grant in grants], now)
    await books.close(conn, now)
    await repository.refresh_next_expiry(conn, account_ids)
    return len(grants)


def grant_view(row) -> Grant:
    return Grant(
        id=row["id"],
        account_id=row["account_id"],
        amount=money(row["amount"]),
        remaining=money(row["remaining"]),
        description=row["description"],
        expires_at=row["expires_at"],
        expired_at=row["expired_at"],
        created_at=row["created_at"],
        schedule_id=row["schedule_id"],
        period_start=row["period_start"],
    )


async def add_credits(
    conn: asyncpg.Connection,
    books: Books,
    account_id: str,
    amount: Decimal,
    *,
    kind: str,
    counterparty: str,
    description: str | None,
    expires_at: datetime | None,
    now: datetime,
    usage_event_id: int | None = None,
    schedule_id: str | None = None,
    period_start: datetime | None = None,
) -> tuple[asyncpg.Record, Decimal]:
    """Credits arrive as a grant row (a lot that later debits draw from) plus its ledger entry.

    Credits that only pay back an overdraft are spent at once, so the lot keeps just what is left
    above zero: the open lots always add up to max(balance, 0)."""
    # Debits posted earlier in these books draw from grants when the books close; a new lot must not
    # be drawn by them.
    assert not books.draws, "close the books before adding credits"
    after = add(books.balance[account_id], amount)
    row = await repository.insert_grant(
        conn,
        account_id=account_id,
        amount=amount,
        remaining=min(amount, max(after, Decimal(0))),
        description=description,
        expires_at=expires_at,
        now=now,
        schedule_id=schedule_id,
        period_start=period_start,
    )
    books.post(
        account_id,
        kind,
        amount,
        counterparty,
        grant_id=row["id"],
        usage_event_id=usage_event_id,
        description=description,
    )
    return row, after


async def create_grant(
    conn: asyncpg.Connection, account_id: str, data: GrantCreate, now: datetime, idempotency_key: str | None
) -> Result[GrantCreated]:
    """Add credits to an account; with an idempotency key, a retry is given the first answer."""
    amount = check_amount(data.amount, "amount")
    if amount <= 0:
        raise InvalidRequest("`amount` must be positive", param="amount")
    expires_at = None if data.expires_at is None else utc(data.expires_at, "expires_at")
    request = {
        "amount": money(amount),
        "description": data.description,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }

    async def grant() -> GrantCreated:
        # Checked after the replay: a retry of a made grant answers as the first time, even once its
        # expiry has passed.
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("`expires_at` must be in the future", param="expires_at")
        books = await open_books(conn, [account_id], now)
        if account_id not in books.balance:
            raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
        row, after = await add_credits(
            conn,
            books,
            account_id,
            amount,
            kind="grant",
            counterparty="system:grants",
            description=data.description,
            expires_at=expires_at,
            now=now,
        )
        await books.close(conn, now)
        return GrantCreated(**msgspec.structs.asdict(grant_view(row)), balance_after=money(after))

    return await idempotency.once(
        conn, account_id, f"grant:{account_id}", idempotency_key, request, GrantCreated, grant
    )


EXPIRY_LOCK = 7_301_001  # pg advisory lock key: one worker at a time sweeps expired grants


async def expire_due_grants(pool: asyncpg.Pool, now: datetime, limit: int = 500) -> int:
    """Expire the grants of idle accounts; busy accounts have theirs expired by their own writes."""

    async def sweep(conn: asyncpg.Connection) -> int:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", EXPIRY_LOCK):
            return 0
        account_ids = await repository.accounts_due_for_expiry(conn, now, limit)
        if account_ids:
            await open_books(conn, account_ids, now)
        return len(account_ids)

    return await db.transaction(pool, sweep)


def entry_view(row) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        account_id=row.account_id,
        kind=row.kind,
        amount=money(row.amount),
        balance_after=money(row.balance_after),
        counterparty=row.counterparty,
        event_id=row.event_id,
        grant_id=row.grant_id,
        description=row.description,
        created_at=row.created_at,
    )


def balance_view(row) -> Balance:
    account = to_account(row)
    return Balance(
        account_id=account.id,
        balance=account.balance,
        pending=account.pending,
        available=account.available,
        overdraft_limit=account.overdraft_limit,
    )


class InsufficientCredits(AppError):
    status = 402
    code = "insufficient_credits"


def authorization_view(row, now: datetime, available: Decimal | None = None, event_id: str | None = None):
    if row["settled_at"] is not None:
        status = "settled"
    elif row["released_at"] is not None:
        status = "released"
    else:
        status = "expired" if row["expires_at"] <= now else "pending"
    return Authorization(
        id=row["id"],
        account_id=row["account_id"],
        model=row["model_id"],
        amount=money(row["amount"]),
        status=status,
        input_tokens=row["input_tokens"],
        max_output_tokens=row["max_output_tokens"],
        price_version=row["price_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        released_at=row["released_at"],
        settled_at=row["settled_at"],
        settled_amount=money(row["settled_amount"]) if row["settled_amount"] is not None else None,
        event_id=event_id,
        available=money(available) if available is not None else None,
        service_tier=row["service_tier"],
        region=row["region"],
    )


async def authorize(
    conn: asyncpg.Connection,
    account_id: str,
    data: AuthorizationCreate,
    catalog: Catalog,
    now: datetime,
    idempotency_key: str | None,
    api_key_id: str | None = None,
) -> Result[Authorization]:
    """Hold the call's worst-case cost, or refuse with 402; with an idempotency key, a retry is given
    the first answer."""
    scope, request = f"authorization:{account_id}", msgspec.to_builtins(data)

    async def hold() -> Authorization:
        return await hold_credits(conn, account_id, data, catalog, now, api_key_id)

    return await idempotency.once(conn, account_id, scope, idempotency_key, request, Authorization, hold)


async def hold_credits(
    conn: asyncpg.Connection,
    account_id: str,
    data: AuthorizationCreate,
    catalog: Catalog,
    now: datetime,
    api_key_id: str | None = None,
) -> Authorization:
    """The account row is locked while the available balance is checked and the hold written, so
    concurrent holds cannot overspend."""
    model = catalog.require_available(data.model, data.provider)
    if data.usage is None and data.max_output_tokens is None:
        raise InvalidRequest(
            "`max_output_tokens` (or the provider's `usage` object) is required", param="max_output_tokens"
        )
    usage, _ = reported.usage_from(data, output_tokens=data.max_output_tokens, output_field="max_output_tokens")
    max_output_tokens = usage.output_tokens
    if model.embedding:
        usage = replace(usage, output_tokens=0, reasoning_tokens=0)
    region = data.region or bedrock_region(data.model)
    quote, price, margin = catalog.quote(model, usage, now, data.service_tier, region)
    books = await open_books(conn, [account_id], now)
    if account_id not in books.balance:
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found", param="account_id")
    available = subtract(books.balance[account_id], await repository.pending(conn, account_id, now))
    if quote.credits > available:
        raise InsufficientCredits(
            f"The call may cost {money(quote.credits)} credits; {money(available)} are available",
            param="account_id",
        )
    tags = reported.check_tags(data.tags)
    if account_id in books.limited:
        await spend_limits.check_hold(conn, account_id, quote.credits, data.end_user, tags, api_key_id, now)
    row = await repository.insert_authorization(
        conn,
        {
            "id": f"auth_{secrets.token_hex(12)}",
            "account_id": account_id,
            "model_id": model.id,
            "amount": quote.credits,
            "input_tokens": usage.input_tokens,
            "max_output_tokens": max_output_tokens,
            "price_id": price.id,
            "margin": margin,
            "service_tier": data.service_tier,
            "region": region,
            "end_user": data.end_user,
            "tags": tags,
            "api_key_id": api_key_id,
            "created_at": now,
            "expires_at": now + timedelta(seconds=data.ttl_seconds),
        },
    )
    return authorization_view(row, now, subtract(available, quote.credits))


async def release(conn: asyncpg.Connection, principal: Principal, authorization_id: str, now: datetime):
    account_id = principal.account_id or await repository.authorization_account(conn, authorization_id)
    rows = await repository.lock_authorizations(conn, [(account_id, authorization_id)]) if account_id else []
    if not rows:
        raise NotFound(f"Authorization '{authorization_id}' not found", code="authorization_not_found")
    if rows[0]["settled_at"] is not None:
        raise Conflict(f"Authorization '{authorization_id}' was already settled", code="authorization_settled")
    # Releasing twice, or after expiry, changes nothing and answers the same.
    row = (
        rows[0]
        if rows[0]["expires_at"] <= now
        else await repository.release_authorization(conn, account_id, authorization_id, now)
    )
    return authorization_view(row, now)


async def adjust(
    conn: asyncpg.Connection, account_id: str, data: AdjustmentCreate, now: datetime, idempotency_key: str | None
) -> Result[Adjustment]:
    amount = check_amount(data.amount, "amount", allow_negative=True)
    if amount == 0:
        raise InvalidRequest("`amount` must not be zero", param="amount")
    request = {"amount": money(amount), "reason": data.reason}

    async def post() -> Adjustment:
        books = await open_books(conn, [account_id], now)
        if account_id not in books.balance:
            raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
        if amount > 0:
            _, after = await add_credits(
                conn,
                books,
                account_id,
                amount,
                kind="adjustment",
                counterparty="system:adjustments",
                description=data.reason,
                expires_at=None,
                now=now,
            )
        else:
            after = books.post(account_id, "adjustment", amount, "system:adjustments", description=data.reason)
        await books.close(conn, now)
        return Adjustment(account_id, money(amount), data.reason, money(after), now)

    return await idempotency.once(
        conn, account_id, f"adjustment:{account_id}", idempotency_key, request, Adjustment, post
    )


async def reverse(conn: asyncpg.Connection, account_id: str, data: ReversalCreate, now: datetime) -> Result[Reversal]:
    """Credit back a usage event's charge as a new `reversal` entry; reversing it again replays."""
    books = await open_books(conn, [account_id], now)
    if account_id not in books.balance:
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    event = await repository.usage_event_for_reversal(conn, account_id, data.event_id)
    if event is None:
        raise NotFound(f"Usage event '{data.event_id}' not found", code="usage_event_not_found", param="event_id")
    if event["reversal_amount"] is not None:
        body = Reversal(
            account_id,
            data.event_id,
            money(event["reversal_amount"]),
            event["reversal_reason"],
            money(event["reversal_balance_after"]),
            event["reversed_at"],
            replay=True,
        )
        return Result(body, replayed=True)
    if event["cost"] == 0:
        raise Conflict(
            f"Usage event '{data.event_id}' cost nothing; there is nothing to reverse", code="nothing_to_reverse"
        )
    _, after = await add_credits(
        conn,
        books,
        account_id,
        event["cost"],
        kind="reversal",
        counterparty="system:revenue",
        description=data.reason,
        expires_at=None,
        now=now,
        usage_event_id=event["id"],
    )
    await books.close(conn, now)
    await repository.add_reversal_to_rollup(conn, account_id, event["id"])
    return Result(Reversal(account_id, data.event_id, money(event["cost"]), data.reason, money(after), now))
