"""`Idempotency-Key` for write endpoints: the same key and payload replay the first answer; the
same key with another payload is `422 idempotency_key_reused`, naming the fields that differ."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec
from litestar.response import Response

from app.errors import AppError, InvalidRequest

MAX_KEY_LENGTH = 200
T = TypeVar("T")


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
class Result(Generic[T]):
    """What a write answers; `replayed` when a retry is given the first answer back."""

    value: T
    replayed: bool = False


def respond(result: Result[T], status: int = 201) -> Response[T]:
    """A replay answers 200 whatever the first answer was, and says it is one."""
    if result.replayed:
        return Response(result.value, status_code=200, headers={"Idempotent-Replayed": "true"})
    return Response(result.value, status_code=status)


async def once(
    conn: asyncpg.Connection,
    account_id: str,
    scope: str,
    key: str | None,
    request: dict[str, Any],
    answer: type[T],
    work: Callable[[], Awaitable[T]],
) -> Result[T]:
    """Do `work` once per key: a retry with the same key and request gets the first answer back, marked
    `replay`. Without a key every call does the work."""
    if key is None:
        return Result(await work())
    first = await claim(conn, account_id, scope, key, request)
    if first is not None:
        return Result(msgspec.convert({**first, "replay": True}, answer), replayed=True)
    value = await work()
    await remember(conn, account_id, scope, key, 201, msgspec.to_builtins(value))
    return Result(value)


async def claim(
    conn: asyncpg.Connection, account_id: str, scope: str, key: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    """None when this key is new (the caller then does the work and calls `remember`), else the first answer.

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
    return row["response"]


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
