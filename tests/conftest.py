"""Tests run on real PostgreSQL: a database per run, built by the migrations, emptied after each test.

TEST_DATABASE_URL names a server to use (its database is only used to create ours);
without it an embedded server is started in .data/test-postgres.
"""

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.asgi import create_app
from app.catalog.importer import import_catalog, read_catalog
from app.clock import FixedClock
from app.config import PROJECT_DIR, Settings, database_url
from app.db import plain_dsn
from app.keys import service as key_service
from app.keys.schemas import KeyCreate
from tests.helpers import KEEP_TABLES, migrate

# Filled once per run by the migrations and the default catalog import, so not emptied between
# tests; tests that write to the catalog use a scratch provider of their own (see `scratch`).


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield database_url(os.environ["TEST_DATABASE_URL"])
        return
    from app.embedded import EmbeddedPostgres

    with EmbeddedPostgres(PROJECT_DIR / ".data" / "test-postgres") as url:
        yield url


async def create_database(server: str, name: str) -> str:
    conn = await asyncpg.connect(plain_dsn(server))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(plain_dsn(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def empty_database(server_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Creates fresh, unmigrated databases on demand; all are dropped at the end of the run."""
    names: list[str] = []

    async def make() -> str:
        names.append(f"billing_test_{uuid.uuid4().hex[:12]}")
        return await create_database(server_url, names[-1])

    yield make
    for name in names:
        await drop_database(server_url, name)


@pytest.fixture(scope="session")
async def database(empty_database) -> str:
    url = await empty_database()
    await migrate(url)
    engine = db.create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await import_catalog(conn, read_catalog(), at=datetime.now(UTC), label="default")
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
def settings(database: str) -> Settings:
    return replace(Settings.from_env({}), database_url=database)


@pytest.fixture(scope="session")
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database, pool_size=5)
    yield engine
    await engine.dispose()


async def empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        tables = (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        names = ", ".join(f'"{name}"' for name in tables if name not in KEEP_TABLES)
        if names:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def conn_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The engine, with every table emptied after the test."""
    yield engine
    await empty_tables(engine)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared_app: the module's tests share one app (`app_client`); `client` and `clock` are its"
    )


def shares_app(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("shared_app") is not None


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FixedClock:
    """The app's business time: starts now and moves only when a test advances it. In a `shared_app` module,
    the module's clock, set back to now for every test."""
    if not shares_app(request):
        return FixedClock(datetime.now(UTC))
    request.getfixturevalue("conn_engine")  # the shared app's tables are emptied after every test
    shared: FixedClock = request.getfixturevalue("shared_clock")
    shared.at = datetime.now(UTC)
    return shared


@pytest.fixture
def client(request: pytest.FixtureRequest, clock: FixedClock) -> AsyncTestClient:
    """The app over HTTP: a fresh one for the test, or the module's (`pytestmark = pytest.mark.shared_app`);
    the tables are emptied after the test either way."""
    request.getfixturevalue("conn_engine")
    return request.getfixturevalue("app_client" if shares_app(request) else "own_client")


@pytest.fixture
async def own_client(settings: Settings, clock: FixedClock) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(create_app(settings, clock)) as client:
        yield client


@pytest.fixture
def make_key(conn_engine: AsyncEngine) -> Callable[..., Awaitable[str]]:
    """Issue a key straight through the service; returns the secret."""

    async def make(*scopes: str, account_id: str | None = None, name: str = "test", expires_at=None) -> str:
        async with conn_engine.begin() as conn:
            created = await key_service.create(
                conn,
                KeyCreate(name=name, scopes=list(scopes), account_id=account_id, expires_at=expires_at),
                actor="test",
                now=datetime.now(UTC),
            )
        return created.key

    return make


@pytest.fixture
async def admin(make_key) -> dict[str, str]:
    """Headers of an admin key."""
    return {"X-API-Key": await make_key("admin")}


@pytest.fixture
async def scratch(client, admin, conn_engine) -> AsyncIterator[str]:
    """A provider of this test's own, removed with everything under it afterwards."""
    provider = f"t{uuid.uuid4().hex[:10]}"
    response = await client.post("/catalog/providers", json={"id": provider, "name": "Test"}, headers=admin)
    assert response.status_code == 201, response.text
    yield provider
    await empty_tables(conn_engine)  # usage, holds and rollups refer to the scratch models
    async with conn_engine.begin() as conn:
        params = {"provider": provider, "pattern": provider + "/%"}
        await conn.execute(text("DELETE FROM margins WHERE target = :provider OR target LIKE :pattern"), params)
        await conn.execute(text("DELETE FROM prices WHERE model_id LIKE :pattern"), params)
        await conn.execute(text("DELETE FROM model_aliases WHERE model_id LIKE :pattern"), params)
        await conn.execute(text("DELETE FROM models WHERE provider = :provider"), params)
        await conn.execute(text("DELETE FROM providers WHERE id = :provider"), params)


# The app and clock of a `shared_app` module, behind its `client` and `clock`.
@pytest.fixture(scope="module")
def shared_clock() -> FixedClock:
    return FixedClock(datetime.now(UTC))


@pytest.fixture(scope="module")
async def app_client(settings, shared_clock) -> AsyncIterator[AsyncTestClient]:
    """One app for the whole module, since starting one takes 0.3 s; the tables are still emptied after
    every test. Its sweeper is idle (once an hour): grants expire only when a test says so."""
    app = create_app(replace(settings, expiry_sweep_seconds=3600), shared_clock)
    async with AsyncTestClient(app) as client:
        yield client
