from datetime import datetime

import asyncpg
from sqlalchemy import Row, and_, bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.tables import api_keys, audit_log

# Any change that can make a key stop working tells every worker listening on `api_keys_changed` to
# drop its cached keys, in the writer's transaction (sent at its commit). No trigger does it: a
# distributed database keeps none (docs/scale-out.md). A change made in plain SQL runs this too.
CHANGED = "SELECT pg_notify('api_keys_changed', '')"

PUBLIC_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.scopes,
    api_keys.c.account_id,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
    api_keys.c.last_used_at,
)


async def get_for_auth(pool: asyncpg.Pool, key_id: str) -> asyncpg.Record | None:
    # Every request that misses the key cache runs this, so it is plain asyncpg: a cached prepared
    # statement, one round trip, no transaction (SQLAlchemy added BEGIN and ROLLBACK, and its pool
    # overflowed into new connections).
    return await pool.fetchrow(
        "SELECT id, secret_hash, scopes, account_id, expires_at, revoked_at FROM api_keys WHERE id = $1", key_id
    )


async def insert_key(
    conn: AsyncConnection,
    *,
    key_id: str,
    name: str,
    secret_hash: bytes,
    scopes: list[str],
    account_id: str | None,
    expires_at: datetime | None,
) -> Row:
    query = (
        insert(api_keys)
        .values(
            id=key_id,
            name=name,
            secret_hash=secret_hash,
            scopes=scopes,
            account_id=account_id,
            expires_at=expires_at,
        )
        .returning(*PUBLIC_COLUMNS)
    )
    return (await conn.execute(query)).one()


async def list_keys(
    conn: AsyncConnection, *, account_id: str | None, after: tuple[datetime, str] | None, limit: int
) -> list[Row]:
    query = select(*PUBLIC_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id).limit(limit)
    if account_id is not None:
        query = query.where(api_keys.c.account_id == account_id)
    if after is not None:
        query = query.where(tuple_(api_keys.c.created_at, api_keys.c.id) > tuple_(*after))
    return list((await conn.execute(query)).all())


async def revoke(conn: AsyncConnection, key_id: str) -> Row | None:
    # Revoking twice keeps the first revocation time.
    query = (
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
        .returning(*PUBLIC_COLUMNS)
    )
    row = (await conn.execute(query)).first()
    if row is not None:
        await conn.execute(text(CHANGED))
    return row


async def has_active_admin(conn: AsyncConnection) -> bool:
    query = select(api_keys.c.id).where(
        and_(
            api_keys.c.scopes.contains(["admin"]),
            api_keys.c.revoked_at.is_(None),
            (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > func.now()),
        )
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def touch_last_used(conn: AsyncConnection, used: dict[str, datetime]) -> None:
    query = (
        update(api_keys)
        .where(api_keys.c.id == bindparam("key_id"))
        .where(func.coalesce(api_keys.c.last_used_at, bindparam("at")) <= bindparam("at"))
        .values(last_used_at=bindparam("at"))
    )
    await conn.execute(query, [{"key_id": key_id, "at": at} for key_id, at in used.items()])


async def audit(conn: AsyncConnection, *, actor: str, action: str, target: str, details: dict) -> None:
    await conn.execute(insert(audit_log).values(actor=actor, action=action, target=target, details=details))


async def audit_entries(conn: AsyncConnection, *, after: int | None, limit: int) -> list[Row]:
    query = select(audit_log).order_by(audit_log.c.id).limit(limit)
    if after is not None:
        query = query.where(audit_log.c.id > after)
    return list(await conn.execute(query))
