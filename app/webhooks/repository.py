from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.tables import webhook_deliveries, webhook_endpoints, webhook_events
from app.webhooks.schemas import Notification

SUBSCRIBED = "NOT w.disabled AND (n.type = ANY(w.events) OR '*' = ANY(w.events))"


def outbox(accounts: int, types: int, payloads: int, now: int) -> str:
    """Two CTEs for the WITH of the statement that makes a change: they write the notifications given
    as three arrays (parameters $accounts, $types, $payloads; see `notification_arrays`) and one
    delivery per enabled endpoint subscribed. With no notifications they write nothing; with no
    endpoint subscribed, no event is kept either."""
    return f"""
        outbox AS (
            INSERT INTO webhook_events (account_id, type, payload, created_at)
            SELECT n.account_id, n.type, n.payload, ${now}
            FROM unnest(${accounts}::text[], ${types}::text[], ${payloads}::jsonb[]) AS n(account_id, type, payload)
            WHERE EXISTS (SELECT FROM webhook_endpoints w WHERE {SUBSCRIBED})
            RETURNING account_id, id, type
        ), fanout AS (
            INSERT INTO webhook_deliveries
                (account_id, event_id, endpoint_id, next_attempt_at, created_at, retry_since)
            SELECT n.account_id, n.id, w.id, ${now}, ${now}, ${now}
            FROM outbox n JOIN webhook_endpoints w ON {SUBSCRIBED}
        )"""  # noqa: S608 (parameter numbers only)


def notification_arrays(notifications: list[Notification]) -> list[list]:
    return [[n.account_id for n in notifications], [n.type for n in notifications], [n.payload for n in notifications]]


async def notify(conn: asyncpg.Connection, notifications: list[Notification], now: datetime) -> None:
    """Notifications of a change whose own statement has no room for the outbox."""
    if notifications:
        await conn.execute(f"WITH {outbox(1, 2, 3, 4)} SELECT", *notification_arrays(notifications), now)


# Endpoints (admin; SQLAlchemy Core)


async def insert_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> Row:
    return (await conn.execute(insert(webhook_endpoints).values(values).returning(webhook_endpoints))).one()


async def get_endpoint(conn: AsyncConnection, endpoint_id: str) -> Row | None:
    return (await conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))).first()


async def list_endpoints(conn: AsyncConnection, after: tuple[datetime, str] | None, limit: int) -> list[Row]:
    query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id).limit(limit)
    if after is not None:
        query = query.where((webhook_endpoints.c.created_at, webhook_endpoints.c.id) > after)  # type: ignore[operator]
    return list(await conn.execute(query))


async def update_endpoint(conn: AsyncConnection, endpoint_id: str, values: dict[str, Any]) -> Row | None:
    query = (
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(values)
        .returning(webhook_endpoints)
    )
    return (await conn.execute(query)).first()


async def delete_endpoint(conn: AsyncConnection, endpoint_id: str) -> Row | None:
    query = delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).returning(webhook_endpoints)
    return (await conn.execute(query)).first()


def deliveries_query():
    d = webhook_deliveries.c
    return select(webhook_deliveries, webhook_events.c.type.label("event_type")).join(
        webhook_events, (webhook_events.c.account_id == d.account_id) & (webhook_events.c.id == d.event_id)
    )


async def list_deliveries(
    conn: AsyncConnection, endpoint_id: str, status: str | None, after: int | None, limit: int
) -> list[Row]:
    d = webhook_deliveries.c
    query = deliveries_query().where(d.endpoint_id == endpoint_id).order_by(d.id).limit(limit)
    if status is not None:
        query = query.where(d.status == status)
    if after is not None:
        query = query.where(d.id > after)
    return list(await conn.execute(query))


async def requeue_failed(conn: AsyncConnection, endpoint_id: str, delivery_id: int, now: datetime) -> Row | None:
    """The failed delivery, due again now with a day of retries again; None when there is no such failed one."""
    d = webhook_deliveries.c
    query = (
        update(webhook_deliveries)
        .where((d.endpoint_id == endpoint_id) & (d.id == delivery_id) & (d.status == "failed"))
        .values(status="pending", next_attempt_at=now, retry_since=now)
        .returning(d.account_id, d.id)
    )
    return (await conn.execute(query)).first()


async def get_delivery(conn: AsyncConnection, endpoint_id: str, delivery_id: int) -> Row | None:
    d = webhook_deliveries.c
    query = deliveries_query().where((d.endpoint_id == endpoint_id) & (d.id == delivery_id))
    return (await conn.execute(query)).first()


# Deliveries (the worker; asyncpg)


DUE = """
    SELECT account_id, id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at LIMIT $2
"""
CLAIM = """
    WITH due AS (
        SELECT account_id, id FROM webhook_deliveries
        WHERE account_id = $1 AND id = $2 AND status = 'pending' AND next_attempt_at <= $3
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE webhook_deliveries d SET next_attempt_at = $4, attempts = d.attempts + 1
        FROM due WHERE d.account_id = due.account_id AND d.id = due.id
        RETURNING d.account_id, d.id, d.event_id, d.endpoint_id, d.attempts, d.retry_since
    )
    SELECT c.*, e.payload, w.url, w.secret
    FROM claimed c
    JOIN webhook_events e ON e.account_id = c.account_id AND e.id = c.event_id
    JOIN webhook_endpoints w ON w.id = c.endpoint_id
"""


async def claim_due(conn: asyncpg.Connection, now: datetime, lease_until: datetime, limit: int) -> list[asyncpg.Record]:
    """Take up to `limit` due deliveries for this worker until `lease_until`: another worker skips the
    rows locked here and, once this commits, finds them not due. A worker that dies while sending
    leaves them due again when the lease lapses. The due ones are found by one read over every
    account, then claimed one per statement naming its account (a distributed database locks rows
    only within one account's node), all in one pipeline."""
    due = await conn.fetch(DUE, now, limit)
    if not due:
        return []
    return await conn.fetchmany(CLAIM, [(row["account_id"], row["id"], now, lease_until) for row in due])


# Expiry notices (the sweep; asyncpg). What is due is found by one read over every account, then marked
# one row per statement naming its account; the mark's condition makes each row announced once.

GRANTS_EXPIRING = """
    SELECT account_id, id FROM grants
    WHERE expiry_announced_at IS NULL AND remaining > 0 AND expires_at IS NOT NULL AND expires_at > $1
      AND expires_at <= $2
    ORDER BY expires_at LIMIT $3
"""
MARK_GRANT = """
    UPDATE grants SET expiry_announced_at = $3
    WHERE account_id = $1 AND id = $2 AND expiry_announced_at IS NULL AND remaining > 0
    RETURNING account_id, id, remaining, expires_at
"""
HOLDS_EXPIRED = """
    SELECT account_id, id FROM authorizations
    WHERE expiry_announced_at IS NULL AND settled_at IS NULL AND released_at IS NULL AND expires_at <= $1
    ORDER BY expires_at LIMIT $2
"""
MARK_HOLD = """
    UPDATE authorizations SET expiry_announced_at = $3
    WHERE account_id = $1 AND id = $2 AND expiry_announced_at IS NULL AND settled_at IS NULL
      AND released_at IS NULL
    RETURNING account_id, id, model_id, amount, created_at, expires_at
"""


async def mark_expiring_grants(
    conn: asyncpg.Connection, now: datetime, notice_until: datetime, limit: int
) -> list[asyncpg.Record]:
    """Grants with credits left that expire in (now, notice_until], marked as announced; those this call marked."""
    due = await conn.fetch(GRANTS_EXPIRING, now, notice_until, limit)
    if not due:
        return []
    return await conn.fetchmany(MARK_GRANT, [(row["account_id"], row["id"], now) for row in due])


async def mark_expired_holds(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Holds that expired neither settled nor released, marked as announced; those this call marked."""
    due = await conn.fetch(HOLDS_EXPIRED, now, limit)
    if not due:
        return []
    return await conn.fetchmany(MARK_HOLD, [(row["account_id"], row["id"], now) for row in due])


async def give_back(
    conn: asyncpg.Connection, claims: list[asyncpg.Record], lease_until: datetime, now: datetime
) -> int:
    """Claims not yet recorded (still pending under this worker's lease) become due at `now`; how many."""
    rows = await conn.fetchmany(
        """
        UPDATE webhook_deliveries SET next_attempt_at = $5
        WHERE account_id = $1 AND id = $2 AND attempts = $3 AND status = 'pending' AND next_attempt_at = $4
        RETURNING id
        """,
        [(claim["account_id"], claim["id"], claim["attempts"], lease_until, now) for claim in claims],
    )
    return len(rows)


async def record_attempt(
    conn: asyncpg.Connection,
    claim: asyncpg.Record,
    *,
    status: str,
    next_attempt_at: datetime | None,
    at: datetime,
    response_status: int | None,
    response: str | None,
    error: str | None,
) -> None:
    # Only the claim this worker holds: a worker whose lease lapsed (and whose delivery another has
    # claimed since) must not overwrite the newer attempt's outcome.
    await conn.execute(
        """
        UPDATE webhook_deliveries SET status = $4, next_attempt_at = $5, last_attempt_at = $6,
            last_status = $7, last_response = $8, last_error = $9
        WHERE account_id = $1 AND id = $2 AND attempts = $3 AND status = 'pending'
        """,
        claim["account_id"],
        claim["id"],
        claim["attempts"],
        status,
        next_attempt_at,
        at,
        response_status,
        response,
        error,
    )
