from datetime import datetime

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import InvalidRequest, NotFound
from app.keys import repository
from app.keys.format import KEY_PREFIX, hash_key, new_key
from app.keys.schemas import CreatedKey, Key, KeyCreate
from app.ledger import repository as ledger_repository
from app.times import utc


def to_key(row: Row) -> Key:
    return Key(prefix=KEY_PREFIX + row.id, **row._asdict())


async def create(conn: AsyncConnection, data: KeyCreate, actor: str, now: datetime) -> CreatedKey:
    scopes = sorted(set(data.scopes))
    if data.account_id is not None:
        if "admin" in scopes:
            raise InvalidRequest("An `admin` key cannot be bound to an account", param="scopes")
        if not await ledger_repository.account_exists(conn, data.account_id):
            raise NotFound(f"Account '{data.account_id}' not found", code="account_not_found", param="account_id")
    expires_at = None if data.expires_at is None else utc(data.expires_at, "expires_at")
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("`expires_at` must be in the future", param="expires_at")
    key_id, secret = new_key()
    row = await repository.insert_key(
        conn,
        key_id=key_id,
        name=data.name,
        secret_hash=hash_key(secret),
        scopes=scopes,
        account_id=data.account_id,
        expires_at=expires_at,
    )
    details = {"name": data.name, "scopes": scopes, "account_id": data.account_id}
    await repository.audit(conn, actor=actor, action="api_key.created", target=f"api_key:{row.id}", details=details)
    return CreatedKey(prefix=KEY_PREFIX + row.id, key=secret, **row._asdict())


async def revoke(conn: AsyncConnection, key_id: str, actor: str) -> Key:
    row = await repository.revoke(conn, key_id)
    if row is None:
        raise NotFound(f"API key '{key_id}' not found", code="api_key_not_found")
    await repository.audit(
        conn, actor=actor, action="api_key.revoked", target=f"api_key:{key_id}", details={"name": row.name}
    )
    return to_key(row)
