from datetime import datetime
from decimal import Decimal

import asyncpg
from sqlalchemy import Row, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import numerics
from app.tables import accounts, authorizations, grants, ledger_entries, usage_events
from app.webhooks import repository as webhooks
from app.webhooks.schemas import Notification


async def account_exists(conn: AsyncConnection, account_id: str) -> bool:
    query = select(accounts.c.id).where(accounts.c.id == account_id)
    return (await conn.execute(query)).first() is not None


async def insert_account(conn: AsyncConnection, *, account_id: str, name: str, overdraft_limit: Decimal) -> Row | None:
    """The new account, or None when the id is taken."""
    query = (
        insert(accounts)
        .values(id=account_id, name=name, overdraft_limit=overdraft_limit)
        .on_conflict_do_nothing(index_elements=[accounts.c.id])
        .returning(accounts, literal(0).label("pending"))
    )
    return (await conn.execute(query)).first()


async def get_account(conn: AsyncConnection, account_id: str, now: datetime) -> Row | None:
    query = select(accounts, pending_of(now)).where(accounts.c.id == account_id)
    return (await conn.execute(query)).first()


async def list_accounts(
    conn: AsyncConnection,
    *,
    only: str | None,
    after: str | None,
    limit: int,
    now: datetime,
    search: str | None = None,
) -> list[Row]:
    query = select(accounts, pending_of(now)).order_by(accounts.c.id).limit(limit)
    if only is not None:
        query = query.where(accounts.c.id == only)
    if after is not None:
        query = query.where(accounts.c.id > after)
    if search:
        # `%` and `_` in the search are literal characters, not wildcards.
        query = query.where(
            accounts.c.id.icontains(search, autoescape=True) | accounts.c.name.icontains(search, autoescape=True)
        )
    return list((await conn.execute(query)).all())


# Ledger writes run on asyncpg connections, inside a transaction the caller holds, after
# `lock_accounts`: every writer locks the accounts it touches first, in id order, so concurrent
# writers queue per account instead of deadlocking.


async def lock_accounts(conn: asyncpg.Connection, account_ids: list[str]) -> list[asyncpg.Record]:
    return await lock_each(
        conn,
        "SELECT id, balance, overdraft_limit, next_expiry_at, low_balance_threshold, low_balance_armed, "
        "has_spend_limits FROM accounts WHERE id = $1 FOR UPDATE",
        [(account_id,) for account_id in sorted(set(account_ids))],
    )


async def lock_each(conn: asyncpg.Connection, query: str, per_account: list[tuple]) -> list[asyncpg.Record]:
    """The rows of a locking `query` run once per account of `per_account`, in its order (account
    order). One statement per account, as a distributed database needs: each runs on its account's
    node, where a statement over several would lock them in no set order. The statements go in one
    pipeline: one round trip, whatever the number of accounts."""
    if len(per_account) == 1:
        return await conn.fetch(query, *per_account[0])
    return await conn.fetchmany(query, per_account) if per_account else []


POST_ENTRIES = f"""
    WITH {webhooks.outbox(14, 15, 16, 13)}, entries AS (
        INSERT INTO ledger_entries
            (account_id, kind, amount, balance_after, counterparty, usage_event_id, grant_id, description,
             created_at)
        SELECT e.*, $13 FROM unnest($1::text[], $2::text[], string_to_array($3, ',')::numeric[],
                                    string_to_array($4, ',')::numeric[], $5::text[], $6::bigint[],
                                    $7::bigint[], $8::text[]) AS e
    ), balances AS (
        UPDATE accounts SET balance = b.balance, low_balance_armed = b.armed
        FROM unnest($9::text[], $10::numeric[], $17::bool[]) AS b(id, balance, armed) WHERE accounts.id = b.id
    ), open_grants AS (
        SELECT g.account_id, g.id, g.remaining, d.amount,
               sum(g.remaining) OVER (PARTITION BY g.account_id ORDER BY g.expires_at NULLS LAST, g.id)
                   - g.remaining AS drawn_before
        FROM grants g JOIN unnest($11::text[], $12::numeric[]) AS d(account_id, amount) USING (account_id)
        WHERE g.remaining > 0 AND (g.expires_at IS NULL OR g.expires_at > $13)
    )
    UPDATE grants SET remaining = grants.remaining - LEAST(o.remaining, o.amount - o.drawn_before)
    FROM open_grants o
    WHERE grants.account_id = o.account_id AND grants.id = o.id AND o.drawn_before < o.amount
"""  # noqa: S608 (parameter numbers only)


async def post_entries(
    conn: asyncpg.Connection,
    entries: list[tuple],
    balances: dict[str, tuple[Decimal, bool]],
    draws: dict[str, Decimal],
    notifications: list[Notification],
    now: datetime,
) -> None:
    """One statement: append the entries, store the new balances (with balance.low's arming), write
    the webhook events the balances crossing a line raise, and draw debits from the grants.

    `entries` rows: (account_id, kind, amount, balance_after, counterparty, usage_event_id, grant_id,
    description). Debits draw from the earliest-expiring grant with credits left first; the window sum
    gives each grant the credits drawn before it."""
    columns = list(zip(*entries, strict=True)) if entries else [[]] * 8
    columns[2], columns[3] = numerics(columns[2]), numerics(columns[3])  # amount, balance_after
    await conn.execute(
        POST_ENTRIES,
        *columns,
        list(balances),
        [balance for balance, _ in balances.values()],
        list(draws),
        list(draws.values()),
        now,
        *webhooks.notification_arrays(notifications),
        [armed for _, armed in balances.values()],
    )


SET_LOW_BALANCE = f"""
    WITH {webhooks.outbox(4, 5, 6, 7)}
    UPDATE accounts SET low_balance_threshold = $2, low_balance_armed = $3 WHERE id = $1
"""  # noqa: S608 (parameter numbers only)


async def set_low_balance(
    conn: asyncpg.Connection,
    account_id: str,
    threshold: Decimal | None,
    armed: bool,
    notifications: list[Notification],
    now: datetime,
) -> None:
    await conn.execute(SET_LOW_BALANCE, account_id, threshold, armed, *webhooks.notification_arrays(notifications), now)


async def due_grants(conn: asyncpg.Connection, account_ids: list[str], now: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, account_id, remaining, expires_at FROM grants "
        "WHERE account_id = ANY($1::text[]) AND remaining > 0 AND expires_at <= $2 "
        "ORDER BY account_id, expires_at, id",
        account_ids,
        now,
    )


async def close_grants(conn: asyncpg.Connection, grants: list[tuple[str, int]], now: datetime) -> None:
    """Empty the grants named by (account_id, id)."""
    await conn.execute(
        "UPDATE grants SET remaining = 0, expired_at = $3 FROM unnest($1::text[], $2::bigint[]) AS k(account_id, id) "
        "WHERE (grants.account_id, grants.id) = (k.account_id, k.id)",
        [account_id for account_id, _ in grants],
        [grant_id for _, grant_id in grants],
        now,
    )


async def refresh_next_expiry(conn: asyncpg.Connection, account_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE accounts SET next_expiry_at = (SELECT min(expires_at) FROM grants g "
        "WHERE g.account_id = accounts.id AND g.remaining > 0) WHERE id = ANY($1::text[])",
        account_ids,
    )


async def insert_grant(
    conn: asyncpg.Connection,
    *,
    account_id: str,
    amount: Decimal,
    remaining: Decimal,
    description: str | None,
    expires_at: datetime | None,
    now: datetime,
    schedule_id: str | None = None,
    period_start: datetime | None = None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        WITH g AS (
            INSERT INTO grants (account_id, amount, remaining, description, expires_at, created_at, schedule_id,
                                period_start)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *
        ), a AS (
            UPDATE accounts SET next_expiry_at = LEAST(next_expiry_at, g.expires_at)
            FROM g WHERE accounts.id = g.account_id AND g.remaining > 0
        )
        SELECT * FROM g
        """,
        account_id,
        amount,
        remaining,
        description,
        expires_at,
        now,
        schedule_id,
        period_start,
    )


async def accounts_due_for_expiry(conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
    rows = await conn.fetch("SELECT id FROM accounts WHERE next_expiry_at <= $1 ORDER BY id LIMIT $2", now, limit)
    return [row["id"] for row in rows]


async def list_grants(conn: AsyncConnection, account_id: str) -> list[Row]:
    return list(await conn.execute(select(grants).where(grants.c.account_id == account_id).order_by(grants.c.id)))


async def list_entries(
    conn: AsyncConnection,
    *,
    account_id: str,
    kinds: list[str] | None,
    start: datetime | None,
    end: datetime | None,
    after: int | None,
    limit: int | None,
) -> list[Row]:
    query = (
        select(ledger_entries, usage_events.c.event_id)
        .outerjoin(
            usage_events,
            (usage_events.c.account_id == ledger_entries.c.account_id)
            & (usage_events.c.id == ledger_entries.c.usage_event_id),
        )
        .where(ledger_entries.c.account_id == account_id)
        .order_by(ledger_entries.c.id)
        .limit(limit)
    )
    if kinds:
        query = query.where(ledger_entries.c.kind.in_(kinds))
    if start is not None:
        query = query.where(ledger_entries.c.created_at >= start)
    if end is not None:
        query = query.where(ledger_entries.c.created_at < end)
    if after is not None:
        query = query.where(ledger_entries.c.id > after)
    return list(await conn.execute(query))


def open_holds(now: datetime):
    """Holds still reserving credits: neither settled nor released, and not yet expired."""
    return (
        authorizations.c.settled_at.is_(None)
        & authorizations.c.released_at.is_(None)
        & (authorizations.c.expires_at > now)
    )


def pending_of(now: datetime):
    """`pending` of the account row in the enclosing query."""
    return (
        select(func.coalesce(func.sum(authorizations.c.amount), 0))
        .where((authorizations.c.account_id == accounts.c.id) & open_holds(now))
        .scalar_subquery()
        .label("pending")
    )


async def pending(conn: asyncpg.Connection, account_id: str, now: datetime) -> Decimal:
    return await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM authorizations WHERE account_id = $1 "
        "AND settled_at IS NULL AND released_at IS NULL AND expires_at > $2",
        account_id,
        now,
    )


async def holds_of(conn: asyncpg.Connection, account_id: str, now: datetime) -> list[asyncpg.Record]:
    """The account's holds neither settled, released nor expired, newest first."""
    return await conn.fetch(
        "SELECT * FROM authorizations WHERE account_id = $1 AND settled_at IS NULL AND released_at IS NULL "
        "AND expires_at > $2 ORDER BY created_at DESC, id",
        account_id,
        now,
    )


async def insert_authorization(conn: asyncpg.Connection, values: dict) -> asyncpg.Record:
    columns = ", ".join(values)
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"INSERT INTO authorizations ({columns}) VALUES ({placeholders}) RETURNING *",  # noqa: S608 (our keys)
        *values.values(),
    )


async def lock_authorizations(conn: asyncpg.Connection, holds: list[tuple[str, str]]) -> list[asyncpg.Record]:
    """Lock holds named by (account_id, id), one account per statement in account order."""
    by_account: dict[str, list[str]] = {}
    for account_id, hold_id in sorted(set(holds)):
        by_account.setdefault(account_id, []).append(hold_id)
    return await lock_each(
        conn,
        "SELECT * FROM authorizations WHERE account_id = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE",
        list(by_account.items()),
    )


async def authorization_account(conn: asyncpg.Connection, authorization_id: str) -> str | None:
    """The account of a hold known only by its id (an admin's request): read from every shard."""
    return await conn.fetchval("SELECT account_id FROM authorizations WHERE id = $1", authorization_id)


async def release_authorization(
    conn: asyncpg.Connection, account_id: str, authorization_id: str, now: datetime
) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE authorizations SET released_at = coalesce(released_at, $3) WHERE account_id = $1 AND id = $2 "
        "RETURNING *",
        account_id,
        authorization_id,
        now,
    )


async def settle_authorizations(
    conn: asyncpg.Connection, settled: list[tuple[str, int, Decimal]], now: datetime
) -> None:
    """(account id, authorization id, usage event id, amount charged) for each hold a usage event settles."""
    accounts_, ids, events, amounts = zip(*settled, strict=True)
    await conn.execute(
        "UPDATE authorizations SET settled_at = $5, usage_event_id = s.event, settled_amount = s.amount "
        "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[]) AS s(account_id, id, event, amount) "
        "WHERE (authorizations.account_id, authorizations.id) = (s.account_id, s.id)",
        accounts_,
        ids,
        events,
        amounts,
        now,
    )


async def get_authorization(conn: AsyncConnection, account_id: str | None, authorization_id: str) -> Row | None:
    """A hold by id, within `account_id` (None, for an admin: read from every shard)."""
    query = (
        select(authorizations, usage_events.c.event_id)
        .outerjoin(
            usage_events,
            (usage_events.c.account_id == authorizations.c.account_id)
            & (usage_events.c.id == authorizations.c.usage_event_id),
        )
        .where(authorizations.c.id == authorization_id)
    )
    if account_id is not None:
        query = query.where(authorizations.c.account_id == account_id)
    return (await conn.execute(query)).first()


async def usage_event_for_reversal(conn: asyncpg.Connection, account_id: str, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT u.id, u.cost, r.amount AS reversal_amount, r.description AS reversal_reason,
               r.balance_after AS reversal_balance_after, r.created_at AS reversed_at
        FROM usage_events u
        LEFT JOIN ledger_entries r ON r.account_id = u.account_id AND r.usage_event_id = u.id AND r.kind = 'reversal'
        WHERE u.account_id = $1 AND u.event_id = $2
        """,
        account_id,
        event_id,
    )


async def add_reversal_to_rollup(conn: asyncpg.Connection, account_id: str, usage_event_id: int) -> None:
    """Count a reversal on the day and the month its event occurred, under its end user and each of
    its tags, in one statement."""
    await conn.execute(
        """
        WITH e AS (
            SELECT cost, (occurred_at AT TIME ZONE 'UTC')::date AS day,
                   date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, model_id,
                   coalesce(api_key_id, '') AS key, end_user, tags
            FROM usage_events WHERE account_id = $1 AND id = $2
        ), days AS (
            UPDATE usage_rollups r SET reversed = r.reversed + e.cost FROM e
            WHERE r.account_id = $1 AND r.day = e.day AND r.model_id = e.model_id AND r.api_key_id = e.key
        ), users AS (
            UPDATE usage_rollups_end_users u SET reversed = u.reversed + e.cost FROM e
            WHERE u.account_id = $1 AND u.day = e.day AND u.end_user = e.end_user AND u.model_id = e.model_id
              AND u.api_key_id = e.key
        ), user_months AS (
            UPDATE usage_rollups_end_users_monthly u SET reversed = u.reversed + e.cost FROM e
            WHERE u.account_id = $1 AND u.month = e.month AND u.end_user = e.end_user AND u.model_id = e.model_id
              AND u.api_key_id = e.key
        ), tagged AS (
            UPDATE usage_rollups_tags t SET reversed = t.reversed + e.cost FROM e
            WHERE t.account_id = $1 AND t.day = e.day AND t.model_id = e.model_id AND t.tag = ANY(e.tags)
        ), tag_months AS (
            UPDATE usage_rollups_tags_monthly t SET reversed = t.reversed + e.cost FROM e
            WHERE t.account_id = $1 AND t.month = e.month AND t.model_id = e.model_id AND t.tag = ANY(e.tags)
        )
        UPDATE usage_rollups_monthly m SET reversed = m.reversed + e.cost FROM e
        WHERE m.account_id = $1 AND m.month = e.month AND m.model_id = e.model_id AND m.api_key_id = e.key
        """,
        account_id,
        usage_event_id,
    )
