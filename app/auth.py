"""API-key authentication, the request's principal, and the scope guard."""

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import AppError, Forbidden, NotFound, Unauthenticated
from app.keys import repository

log = logging.getLogger("app.auth")

SCOPES = ("catalog:read", "usage:write", "ledger:read", "admin")
KEY_PREFIX = "cmk_"
KEY_ID_LENGTH = 12
# Flushing last-use times this often keeps authentication free of writes.
LAST_USED_FLUSH_SECONDS = 30


def new_key() -> tuple[str, str]:
    """A fresh (key id, full secret key); the id is public and also the key's lookup handle."""
    key_id = secrets.token_hex(KEY_ID_LENGTH // 2)
    return key_id, f"{KEY_PREFIX}{key_id}{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> bytes:
    # The secret carries 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    scopes: frozenset[str]
    account_id: str | None

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def is_finance(self) -> bool:
        """Upstream costs and margins are for operator and finance keys only."""
        return self.has("ledger:read")

    def account(self, account_id: str | None) -> str | None:
        """The account this request may act for; another account's id looks like an unknown one."""
        if self.account_id is None:
            return account_id
        if account_id is not None and account_id != self.account_id:
            raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
        return self.account_id


def read_key(connection: ASGIConnection) -> str | None:
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = connection.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


class LastUsed:
    """Last-use times gathered in memory and written in bulk, never once per request."""

    def __init__(self) -> None:
        self.pending: dict[str, datetime] = {}

    def mark(self, key_id: str) -> None:
        self.pending[key_id] = datetime.now(UTC)

    async def flush(self, engine: AsyncEngine) -> None:
        pending, self.pending = self.pending, {}
        if pending:
            async with engine.begin() as conn:
                await repository.touch_last_used(conn, pending)

    async def run(self, engine: AsyncEngine) -> None:
        while True:
            await asyncio.sleep(LAST_USED_FLUSH_SECONDS)
            try:
                await self.flush(engine)
            except Exception:  # the next round retries; losing a timestamp is harmless
                log.warning("could not record API key last use", exc_info=True)


async def authenticate(pool: asyncpg.Pool, key: str | None) -> Principal:
    if not key:
        raise Unauthenticated("Missing API key: send it as `X-API-Key` or `Authorization: Bearer`")
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + KEY_ID_LENGTH + 32:
        raise Unauthenticated("Invalid API key")
    key_id = key[len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]
    # Looked up on every request, so a revocation is seen at once by every worker.
    row = await repository.get_for_auth(pool, key_id)
    if row is None or not hmac.compare_digest(row["secret_hash"], hash_key(key)):
        raise Unauthenticated("Invalid API key")
    if row["revoked_at"] is not None:
        raise Unauthenticated("API key has been revoked")
    if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
        raise Unauthenticated("API key has expired")
    return Principal(key_id=row["id"], scopes=frozenset(row["scopes"]), account_id=row["account_id"])


class RateLimited(AppError):
    status = 429
    code = "rate_limited"


class RateLimiter:
    """A token bucket per API key: `rate` requests a second, bursts of up to one second's worth.

    Buckets live in each worker process, so with N workers a key gets up to N x rate in all."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)

    def check(self, key_id: str) -> None:
        if not self.rate:
            return
        now = time.monotonic()
        tokens, then = self.buckets.get(key_id, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate)
        if tokens < 1:
            self.buckets[key_id] = (tokens, now)
            wait = math.ceil((1 - tokens) / self.rate)
            raise RateLimited(
                f"Rate limit of {self.rate:g} requests a second exceeded", headers={"Retry-After": str(wait)}
            )
        self.buckets[key_id] = (tokens - 1, now)


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        state = connection.app.state
        principal = await authenticate(state.pool, read_key(connection))
        state.rate_limiter.check(principal.key_id)
        state.last_used.mark(principal.key_id)
        return AuthenticationResult(user=principal, auth=principal.key_id)


async def require_scope(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every authenticated route names its scope in `opt`; one without is closed to all.

    A coroutine: Litestar runs a plain-function guard in its thread pool, a thread hop per request."""
    if "user" not in connection.scope:
        return  # a public path (PUBLIC_PATHS, exclude_from_auth): the middleware did not run
    scope = handler.opt.get("scope")
    principal: Principal = connection.user
    if scope is None or not principal.has(scope):
        raise Forbidden(f"This API key lacks the `{scope or 'admin'}` scope")


@contextlib.asynccontextmanager
async def last_used_tracking(engine: AsyncEngine, tracker: LastUsed):
    task = asyncio.create_task(tracker.run(engine))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await tracker.flush(engine)
