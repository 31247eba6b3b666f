from dataclasses import replace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from litestar.testing import AsyncTestClient
from sqlalchemy import text

import app.tables  # noqa: F401  (registers every table on the metadata)
from app import db
from app.asgi import create_app
from tests.helpers import migrate


async def table_names(engine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        return set(rows.scalars())


async def test_upgrade_downgrade_upgrade(empty_database):
    url = await empty_database()
    engine = db.create_engine(url, pool_size=1)
    try:
        await migrate(url)
        assert {"accounts", "api_keys", "providers", "models", "prices", "margins"} <= await table_names(engine)
        await migrate(url, "base", downgrade=True)
        assert await table_names(engine) <= {"alembic_version"}
        await migrate(url)
        await db.check_schema(engine)
    finally:
        await engine.dispose()


async def test_tables_match_migrations(engine):
    """The Core tables the code queries are exactly what the migrations build."""

    def diff(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn, opts={"compare_type": True}), db.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_unmigrated_database_is_refused(empty_database, settings):
    url = await empty_database()
    engine = db.create_engine(url, pool_size=1)
    try:
        try:
            await db.check_schema(engine)
        except db.SchemaOutdated as exc:
            assert "not migrated" in str(exc) and "make migrate" in str(exc)
        else:
            raise AssertionError("an unmigrated database was accepted")
        await migrate(url, "0001")
        with pytest.raises(db.SchemaOutdated, match=r"is at revision 0001.*make migrate"):
            await db.check_schema(engine)
        await migrate(url)
        await db.check_schema(engine)
    finally:
        await engine.dispose()


async def test_app_will_not_start_on_an_outdated_database(empty_database, settings):
    url = await empty_database()
    # The lifespan's failure reaches us wrapped in the test client's task group.
    with pytest.RaisesGroup(db.SchemaOutdated, flatten_subgroups=True):
        async with AsyncTestClient(create_app(replace(settings, database_url=url))):
            pass
