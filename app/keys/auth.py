"""API-key authentication: the key cache and its change signals, the middleware, the rate limit and the
scope guard. The request's principal is a record, in app/keys/schemas.py."""

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import mmap
import os
import secrets
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.clock import Clock
from app.db import plain_dsn
from app.errors import AppError, Forbidden, Unauthenticated
from app.keys import repository
from app.keys.format import KEY_ID_LENGTH, KEY_PREFIX, hash_key
from app.keys.schemas import Principal

log = logging.getLogger("app.auth")

# Flushing last-use times this often keeps authentication free of writes.
LAST_USED_FLUSH_SECONDS = 30
# A validated key is trusted this long without asking the database again, unless a change to any
# key is signalled first (KeyChanges, LISTEN/NOTIFY): the bound on staleness if both signals fail.
KEY_CACHE_SECONDS = 60
KEY_CACHE_SIZE = 10_000
# The listening connection is checked this often; while it is down nothing is cached.
LISTEN_CHECK_SECONDS = 10


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

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: dict[str, datetime] = {}

    def mark(self, key_id: str) -> None:
        self.pending[key_id] = self.clock.now()

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


class KeyChanges:
    """Eight bytes shared by every process of this host that uses the same database (server workers,
    the CLI), rewritten with random bytes after each committed change to a key. Workers compare them
    on every request (a memory read) and drop their cached keys when they move, so a revocation made
    on this host holds from the next request on, whichever worker answers it. Changes made elsewhere
    (another host, plain SQL) reach the workers through LISTEN/NOTIFY instead, within milliseconds.

    The bytes live in a file in a folder of the user's own; when it cannot be made, the signal stays
    within this process and only the notification path is left."""

    shared: dict[str, "KeyChanges"] = {}

    def __init__(self, path: Path | None) -> None:
        self.view: mmap.mmap | bytearray = bytearray(8)
        if path is not None:
            try:
                self.view = map_file(path)
            except OSError as exc:
                log.warning("API-key changes stay within this process (%s: %s)", path, exc)

    @classmethod
    def for_database(cls, url: str) -> "KeyChanges":
        parts = make_url(url)
        where = f"{parts.host}|{parts.port}|{parts.database}|{parts.query.get('host')}"
        name = "keys-" + hashlib.blake2b(where.encode(), digest_size=8).hexdigest()
        if name not in cls.shared:
            cls.shared[name] = cls(Path(tempfile.gettempdir()) / f"billing-{os.getuid()}" / name)
        return cls.shared[name]

    def read(self) -> bytes:
        return bytes(self.view[:8])

    def announce(self) -> None:
        """Call after the change commits: a worker that looked the key up before the commit and
        caches the old row would otherwise keep it."""
        self.view[:8] = secrets.token_bytes(8)


def map_file(path: Path) -> mmap.mmap:
    # A folder only this user can write, so nobody else can plant or hold the file.
    path.parent.mkdir(mode=0o700, exist_ok=True)
    folder = path.parent.lstat()
    if folder.st_uid != os.getuid() or folder.st_mode & 0o077 or not path.parent.is_dir():
        raise PermissionError("the folder is not private to this user")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 8)
        return mmap.mmap(fd, 8)
    finally:
        os.close(fd)


class KeyCache:
    """Keys validated recently, so that most requests authenticate without a database round trip.

    Only keys that exist are cached (a new key works at once), and only while this worker listens
    for key changes. The secret is still compared, and expiry checked, on every request. Any change
    to any key drops the whole cache: changes are rare, lookups cheap."""

    def __init__(self, changes: KeyChanges, seconds: float = KEY_CACHE_SECONDS) -> None:
        self.changes = changes
        self.seconds = seconds
        self.seen = changes.read()
        self.rows: dict[str, tuple[asyncpg.Record, float]] = {}
        self.listening = False
        # Bumped by every drop, so a lookup that was under way at the time is not cached.
        self.generation = 0

    def forget(self) -> None:
        self.rows.clear()
        self.generation += 1

    def check(self) -> None:
        current = self.changes.read()
        if current != self.seen:
            self.seen = current
            self.forget()

    async def get(self, pool: asyncpg.Pool, key_id: str) -> asyncpg.Record | None:
        self.check()
        now = time.monotonic()
        cached = self.rows.get(key_id)
        if cached is not None and now - cached[1] < self.seconds:
            return cached[0]
        generation = self.generation
        row = await repository.get_for_auth(pool, key_id)
        self.check()
        if row is not None and self.listening and generation == self.generation:
            if len(self.rows) >= KEY_CACHE_SIZE:
                self.rows.clear()
            self.rows[key_id] = (row, now)
        return row

    async def watch(self, url: str) -> None:
        """LISTEN for key changes made anywhere (see CHANGED in app/keys/repository.py); reconnect when cut off."""
        while True:
            try:
                await self.listen(url)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("API-key change listener interrupted; reconnecting", exc_info=True)
            finally:
                self.listening = False
                self.forget()
            await asyncio.sleep(1)

    async def listen(self, url: str) -> None:
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener("api_keys_changed", lambda *_: self.forget())
            self.forget()  # changes made while nobody listened
            self.listening = True
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), LISTEN_CHECK_SECONDS)
                if not lost.is_set():  # a connection cut off without a word is found out here
                    await asyncio.wait_for(conn.execute("SELECT 1"), LISTEN_CHECK_SECONDS)
            log.warning("API-key change listener lost its connection; reconnecting")
        finally:
            with contextlib.suppress(Exception):
                await conn.close()


async def authenticate(cache: KeyCache, pool: asyncpg.Pool, key: str | None, now: datetime) -> Principal:
    if not key:
        raise Unauthenticated("Missing API key: send it as `X-API-Key` or `Authorization: Bearer`")
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + KEY_ID_LENGTH + 32:
        raise Unauthenticated("Invalid API key")
    key_id = key[len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]
    row = await cache.get(pool, key_id)
    if row is None or not hmac.compare_digest(row["secret_hash"], hash_key(key)):
        raise Unauthenticated("Invalid API key")
    if row["revoked_at"] is not None:
        raise Unauthenticated("API key has been revoked")
    if row["expires_at"] is not None and row["expires_at"] <= now:
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
        principal = await authenticate(state.key_cache, state.pool, read_key(connection), state.clock.now())
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
