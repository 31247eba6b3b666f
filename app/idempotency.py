"""`Idempotency-Key` for write endpoints: the same key and payload replay the first answer; the
same key with another payload is `422 idempotency_key_reused`, naming the fields that differ."""

from dataclasses import dataclass
from typing import Any

import asyncpg

from app.errors import AppError, InvalidRequest

MAX_KEY_LENGTH = 200


class IdempotencyKeyReused(AppError):
    status = 422
    code = "idempotency_key_reused"


def differing_fields(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    return sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))


def reused(key: str, fields: list[str]) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"Idempotency key '{key}' was already used with a different payload (differs in: {', '.join(fields)})",
        param=fields[0] if fields else None,
    )


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: dict[str, Any]


async def claim(
    conn: asyncpg.Connection, account_id: str, scope: str, key: str, request: dict[str, Any]
) -> Replay | None:
    """None when this key is new (the caller then does the work and calls `remember`), else the replay.

    Runs inside the caller's transaction: a concurrent request with the same key waits on the
    primary key until this one commits, then replays it."""
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidRequest(f"`Idempotency-Key` must be 1 to {MAX_KEY_LENGTH} characters", param="Idempotency-Key")
    inserted = await conn.fetchval(
        "INSERT INTO idempotency_keys (account_id, scope, key, request, status, response) "
        "VALUES ($1, $2, $3, $4, 0, 'null') ON CONFLICT DO NOTHING RETURNING true",
        account_id,
        scope,
        key,
        request,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT request, status, response FROM idempotency_keys WHERE account_id = $1 AND scope = $2 AND key = $3",
        account_id,
        scope,
        key,
    )
    fields = differing_fields(row["request"], request)
    if fields:
        raise reused(key, fields)
    # A replay answers 200 whatever the first answer was, and says it is one.
    return Replay(200, {**row["response"], "replay": True})


async def remember(
    conn: asyncpg.Connection, account_id: str, scope: str, key: str, status: int, response: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status = $4, response = $5 WHERE account_id = $1 AND scope = $2 AND key = $3",
        account_id,
        scope,
        key,
        status,
        response,
    )
