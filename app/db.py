"""Engine lifecycle, the shared metadata, migrations and the embedded-PostgreSQL fallback."""

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import asyncpg
from alembic.config import Config
from alembic.script import ScriptDirectory
from litestar.di import NamedDependency
from sqlalchemy import MetaData, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import PROJECT_DIR, Settings

T = TypeVar("T")

# Stable constraint names, so migrations can drop and alter them on every database.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


# Failures that a retry of the whole transaction resolves.
RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
ATTEMPTS = 4


class SchemaOutdated(RuntimeError):
    """The database is not at the migration head this code was written for."""


# Waiting longer than this for a connection means the database is overwhelmed: answer 503 instead.
POOL_TIMEOUT = 5


def server_settings(statement_timeout_ms: int | None, pooled: bool = False) -> dict[str, str]:
    settings = {"application_name": "billing"}
    # PgBouncer refuses a startup packet that sets statement_timeout ("unsupported startup parameter"):
    # behind it the timeout is the server's (ALTER ROLE ... SET statement_timeout, docs/scale-out.md).
    if statement_timeout_ms and not pooled:
        # A runaway query is cancelled (and answered 503) instead of holding a connection forever.
        settings["statement_timeout"] = str(statement_timeout_ms)
    return settings


def create_engine(
    url: str, pool_size: int = 10, statement_timeout_ms: int | None = None, pooled: bool = False
) -> AsyncEngine:
    connect_args: dict[str, object] = {"server_settings": server_settings(statement_timeout_ms, pooled)}
    if pooled:
        # Behind transaction pooling, consecutive transactions of one connection run on different server
        # sessions, and a server session carries the prepared statements of every client it served: no
        # statement cache, and only asyncpg's unnamed statement, parsed again right before each execution.
        # (Unique names, as SQLAlchemy's documentation suggests, leave statements behind: asyncpg closes one
        # when it prepares the next, often in a later transaction, on another server session.)
        connect_args |= {
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": unnamed_statement,
            "statement_cache_size": 0,
        }
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=POOL_TIMEOUT,
        connect_args=connect_args,
    )


def unnamed_statement() -> str:
    return ""


async def statement_timeout(engine: AsyncEngine) -> str:
    """The server's statement_timeout for this engine's sessions ("0": none). Behind PgBouncer the service
    cannot set it when connecting (see `server_settings`), so it is the role's or the database's."""
    async with engine.connect() as conn:
        return (await conn.execute(text("SHOW statement_timeout"))).scalar()


async def create_pool(
    url: str, size: int, statement_timeout_ms: int | None = None, pooled: bool = False
) -> asyncpg.Pool:
    """The asyncpg pool of the ledger's write path (SQL written by hand, prepared and cached; behind a
    transaction-pooling PgBouncer, `pooled`, only unnamed statements, parsed again each time)."""

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

    return await asyncpg.create_pool(
        plain_dsn(url),
        # Connections are opened on demand, so a pool made while the database restarts still works.
        min_size=0,
        max_size=size,
        init=init,
        reset=keep_session,
        server_settings=server_settings(statement_timeout_ms, pooled),
        **({"statement_cache_size": 0} if pooled else {}),
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """Releasing a connection skips asyncpg's default reset, a round trip per transaction (`SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`): nothing sets session state on
    these connections (only transaction-scoped advisory locks), and asyncpg still rolls back an open
    transaction and drops listeners on release."""


async def transaction(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` in a transaction, again from the start after a deadlock or serialization failure."""
    for attempt in range(ATTEMPTS):
        try:
            async with pool.acquire(timeout=POOL_TIMEOUT) as conn, conn.transaction():
                return await work(conn)
        except RETRYABLE:
            if attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")


def numerics(values: Iterable[Decimal]) -> str:
    """Decimals as one comma-separated text, sent for `string_to_array($n, ',')::numeric[]` instead of a
    numeric[]. Exact: a Decimal's str is its exact value, and numeric's input reads it back digit for
    digit. Much cheaper for asyncpg than encoding a numeric[] element by element, and as cheap for
    PostgreSQL to read (BENCHMARKS.md, "Measurements behind code choices")."""
    return ",".join(map(str, values))


def plain_dsn(url: str) -> str:
    """The libpq/asyncpg form of an SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    # Passed as an attribute, not an ini option: configparser would choke on '%' in URLs.
    config.attributes["url"] = url
    return config


def migration_head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to serve a database the code does not match."""
    head = migration_head()
    try:
        async with engine.connect() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError as exc:
        if "alembic_version" not in str(exc):
            raise
        current = None
    if current != head:
        state = "is not migrated" if current is None else f"is at revision {current}"
        raise SchemaOutdated(
            f"The database {state}; this code needs revision {head}. "
            "Run `make migrate` (or `billing migrate`) to upgrade it."
        )


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The database itself (BILLING_DIRECT_DATABASE_URL, else DATABASE_URL) for migrations and the CLI,
    which hold sessions a transaction-pooling PgBouncer would not keep; or an embedded PostgreSQL kept in
    the data folder."""
    if settings.direct_url:
        yield settings.direct_url
        return
    from app.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(settings.data_dir) / "postgres")
    try:
        yield server.start()
    finally:
        server.stop()


# How handlers ask for the engine: `db: Db`; reports, lists and exports that may lag the primary: `read_db: ReadDb`
# (BILLING_READ_DATABASE_URL's engine, else the same as `db`).
Db = NamedDependency[AsyncEngine]
ReadDb = NamedDependency[AsyncEngine]
