from dataclasses import replace
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from litestar.testing import AsyncTestClient
from sqlalchemy import text

import app.tables  # noqa: F401  (registers every table on the metadata)
from app import db
from app.asgi import create_app
from app.reconcile import CHECKS
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


# One row of each per-account table at revision 0010, linked as the service links them.
ROWS_0010 = [
    "INSERT INTO providers (id, name) VALUES ('p', 'P')",
    "INSERT INTO models (id, provider, name, display_name, type) VALUES ('p/m', 'p', 'm', 'M', 'language')",
    "INSERT INTO prices (id, model_id, effective_from, input, output, source) "
    "VALUES (7, 'p/m', '2026-01-01', 1, 2, 't')",
    "INSERT INTO accounts (id, name, balance) VALUES ('acme:eu', 'Acme', 4.5)",
    "INSERT INTO api_keys (id, name, secret_hash, scopes, account_id) "
    "VALUES ('k1', 'k', decode(repeat('ab', 32), 'hex'), ARRAY['usage:write'], 'acme:eu')",
    "INSERT INTO grants (id, account_id, amount, remaining, created_at) VALUES (3, 'acme:eu', 5, 4.5, now())",
    "INSERT INTO usage_events (id, account_id, event_id, model_id, price_id, margin, credits_per_usd, input_tokens, "
    "output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd, "
    "occurred_at, recorded_at, overdrawn) VALUES (11, 'acme:eu', 'e1', 'p/m', 7, 1.2, 1, 10, 5, 0, 0, 0, 0.5, 0.4, "
    "0.5, '2026-03-04T10:00:00Z', now(), false)",
    "INSERT INTO ledger_entries (id, account_id, kind, amount, balance_after, counterparty, grant_id, created_at) "
    "VALUES (1, 'acme:eu', 'grant', 5, 5, 'system:grants', 3, now())",
    "INSERT INTO ledger_entries (id, account_id, kind, amount, balance_after, counterparty, usage_event_id, "
    "created_at) VALUES (2, 'acme:eu', 'usage', -0.5, 4.5, 'system:revenue', 11, now())",
    "INSERT INTO authorizations (id, account_id, model_id, amount, input_tokens, max_output_tokens, price_id, margin, "
    "created_at, expires_at, settled_at, usage_event_id, settled_amount) "
    "VALUES ('auth_1', 'acme:eu', 'p/m', 1, 10, 10, 7, 1.2, now(), now(), now(), 11, 0.5)",
    "INSERT INTO idempotency_keys (scope, key, request, status, response) "
    "VALUES ('grant:acme:eu', 'once', '{}', 201, '{\"id\": 3}')",
    # The trigger of 0007 adds the month.
    "INSERT INTO usage_rollups VALUES ('2026-03-04', 'acme:eu', 'p/m', 1, 10, 5, 0, 0, 0, 0.5, 0.4, 0.5, 0)",
]
SNAPSHOT = {
    # idempotency_keys gains its account_id column in 0011: the rest of each row must not change.
    table: f"SELECT to_jsonb(t) - 'account_id' AS row FROM {table} t ORDER BY to_jsonb(t)::text"  # noqa: S608 (constants)
    if table == "idempotency_keys"
    else f"SELECT to_jsonb(t) AS row FROM {table} t ORDER BY to_jsonb(t)::text"  # noqa: S608 (constants)
    for table in ("accounts", "api_keys", "grants", "usage_events", "ledger_entries", "authorizations",
                  "idempotency_keys", "usage_rollups", "usage_rollups_monthly")
}  # fmt: skip


async def snapshot(engine) -> dict[str, list]:
    async with engine.connect() as conn:
        return {table: list((await conn.execute(text(query))).scalars()) for table, query in SNAPSHOT.items()}


async def test_rows_survive_distributable_keys_up_and_down(empty_database):
    """0011 re-keys the per-account tables by account: every row survives it and its downgrade."""
    url = await empty_database()
    engine = db.create_engine(url, pool_size=1)
    try:
        await migrate(url, "0010")
        async with engine.begin() as conn:
            for statement in ROWS_0010:
                await conn.execute(text(statement))
        before = await snapshot(engine)
        assert len(before["usage_rollups_monthly"]) == 1
        await migrate(url, "0011")
        assert await snapshot(engine) == before
        async with engine.connect() as conn:
            owner = await conn.execute(text("SELECT account_id FROM idempotency_keys WHERE key = 'once'"))
            assert owner.scalar_one() == "acme:eu"  # from the scope, account ids with ':' included
            # The composite foreign keys hold the rows together: an entry cannot name another
            # account's event.
            await conn.execute(text("INSERT INTO accounts (id, name) VALUES ('other', 'O')"))
            with pytest.raises(Exception, match="fk_ledger_entries_account_id_usage_events"):
                await conn.execute(
                    text(
                        "INSERT INTO ledger_entries (account_id, kind, amount, balance_after, counterparty, "
                        "usage_event_id, created_at) VALUES ('other', 'reversal', 0.5, 0.5, 'system:revenue', 11, "
                        "now())"
                    )
                )
        await migrate(url, "0010", downgrade=True)
        assert await snapshot(engine) == before
        async with engine.begin() as conn:  # the trigger is back
            await conn.execute(text("UPDATE usage_rollups SET events = events + 1"))
            assert (await conn.execute(text("SELECT events FROM usage_rollups_monthly"))).scalar_one() == 2
        await migrate(url)
        await db.check_schema(engine)
    finally:
        await engine.dispose()


# Daily rollups at revision 0016 over two days of one month: two reporting keys, an end user, two
# tags. Columns: the keys, then events, the five token counts, cost, upstream USD, credits USD, reversed.
ROWS_0016 = [
    *ROWS_0010[:2],
    "INSERT INTO accounts (id, name) VALUES ('acme', 'Acme')",
    "INSERT INTO usage_rollups (day, account_id, model_id, api_key_id, events, input_tokens, output_tokens, "
    "cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd, reversed) "
    "VALUES ('2026-03-04', 'acme', 'p/m', 'k1', 1, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0.25), "
    "('2026-03-05', 'acme', 'p/m', 'k1', 2, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0.25), "
    "('2026-03-05', 'acme', 'p/m', 'k2', 4, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0.25)",
    "INSERT INTO usage_rollups_end_users (day, account_id, end_user, model_id, api_key_id, events, input_tokens, "
    "output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd, "
    "reversed) VALUES ('2026-03-04', 'acme', 'alice', 'p/m', 'k1', 1, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0), "
    "('2026-03-05', 'acme', 'alice', 'p/m', 'k1', 2, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0)",
    "INSERT INTO usage_rollups_tags (day, account_id, tag, model_id, events, input_tokens, output_tokens, "
    "cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd, reversed) "
    "VALUES ('2026-03-04', 'acme', 'beta', 'p/m', 1, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0), "
    "('2026-03-05', 'acme', 'beta', 'p/m', 1, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0), "
    "('2026-03-05', 'acme', 'eu', 'p/m', 1, 10, 5, 0, 0, 0, 0.5, 0.4, 0.005, 0)",
    "INSERT INTO usage_rollups_monthly VALUES ('2026-03-01', 'acme', 'p/m', 7, 30, 15, 0, 0, 0, 1.5, 1.2, 0.015, 0.75)",
]


async def test_monthly_twins_are_filled_from_the_days_and_merged_back(empty_database):
    """0017 keys the monthly rollups by reporting key too and adds the end users' and tags' monthly
    rollups, all summed from the daily ones; its downgrade merges the keys again."""
    url = await empty_database()
    engine = db.create_engine(url, pool_size=1)

    async def rows(query: str) -> list[tuple]:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(query))]

    monthly = "SELECT month::text, account_id, model_id, events, cost, reversed FROM usage_rollups_monthly"
    try:
        await migrate(url, "0016")
        async with engine.begin() as conn:
            for statement in ROWS_0016:
                await conn.execute(text(statement))
        before = await rows(monthly)
        await migrate(url, "0017")
        by_key = await rows(f"{monthly.replace('model_id,', 'model_id, api_key_id,')} ORDER BY api_key_id")
        assert [(row[3], row[4], row[5], row[6]) for row in by_key] == [
            ("k1", 3, Decimal("1.0"), Decimal("0.50")),
            ("k2", 4, Decimal("0.5"), Decimal("0.25")),
        ]
        users = "SELECT month::text, end_user, api_key_id, events, cost FROM usage_rollups_end_users_monthly"
        assert await rows(users) == [("2026-03-01", "alice", "k1", 3, Decimal("1.0"))]
        tags = "SELECT tag, events, cost FROM usage_rollups_tags_monthly ORDER BY tag"
        assert await rows(tags) == [("beta", 2, Decimal("1.0")), ("eu", 1, Decimal("0.5"))]
        for name in ("monthly usage rollups", "monthly end user rollups", "monthly tag rollups"):
            assert await rows(CHECKS[f"{name} equal the sums of their days"]) == [], name
        await migrate(url, "0016", downgrade=True)
        assert await rows(monthly) == before
        await migrate(url)
    finally:
        await engine.dispose()
