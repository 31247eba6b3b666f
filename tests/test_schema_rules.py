"""The schema keeps the rules that let Citus distribute it by account (docs/scale-out.md, "Schema
rules"), read from PostgreSQL's catalogs after the migrations; and the lint that says so catches a
schema that breaks them."""

import asyncio
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from app import db
from app.cli import main
from app.config import PROJECT_DIR
from app.distribution import (
    ACCOUNTS,
    DISTRIBUTED,
    LOCAL,
    REFERENCE,
    TABLES,
    citus_plan,
    lint,
    volatile_upserts,
)
from tests.helpers import migrate


async def test_the_migrated_schema_keeps_every_rule(engine):
    async with engine.connect() as conn:
        assert await lint(conn) == []


async def test_every_table_is_classified(engine):
    """A new table must be classified: distributed by account, reference, or local."""
    async with engine.connect() as conn:
        tables = {row.name: row.has_account for row in await conn.execute(text(TABLES), {"schema": "public"})}
    assert set(tables) == DISTRIBUTED | REFERENCE | LOCAL
    assert {t for t, has_account in tables.items() if has_account} - {"api_keys"} == DISTRIBUTED - {ACCOUNTS}


def test_the_operator_guide_lists_every_table_in_its_class():
    """docs/scale-out.md tells the operator what `billing citus setup` makes of each table."""
    guide = (PROJECT_DIR / "docs" / "scale-out.md").read_text()
    steps = guide[guide.index("1. makes every reference table") : guide.index("A table comes after")]
    reference, distributed = (set(re.findall(r"`([a-z_]+)`", part)) for part in steps.split("2. distributes"))
    assert REFERENCE - reference == set(), "reference tables missing from docs/scale-out.md"
    assert DISTRIBUTED - distributed == set(), "per-account tables missing from docs/scale-out.md"


async def test_a_new_table_that_is_not_classified_fails(engine):
    async with engine.connect() as conn:  # never committed: rolled back when it closes
        await conn.execute(
            text("CREATE TABLE spend_forecasts (account_id text, id bigint, PRIMARY KEY (account_id, id))")
        )
        await conn.execute(text("CREATE TABLE sources (id text PRIMARY KEY)"))
        problems = await lint(conn)
    assert problems == [
        "sources: not classified in app/distribution.py (DISTRIBUTED by account, REFERENCE or LOCAL)",
        "spend_forecasts: not classified in app/distribution.py (DISTRIBUTED by account, REFERENCE or LOCAL)",
    ]


async def test_the_lint_reports_a_schema_that_breaks_the_rules(engine):
    """A scratch schema with one of each mistake, made and dropped in a transaction."""
    async with engine.connect() as conn:  # never committed: rolled back when it closes
        for statement in (
            "CREATE SCHEMA lint_scratch",
            "SET LOCAL search_path TO lint_scratch",
            # Per-account (it has account_id), keyed by id alone, with a unique index that lacks it.
            "CREATE TABLE holds (account_id text NOT NULL, id bigint PRIMARY KEY, code text)",
            "CREATE UNIQUE INDEX holds_code ON holds (code)",
            "CREATE UNIQUE INDEX holds_account_code ON holds (account_id, code)",
            # A foreign key between per-account tables that does not name the account.
            "CREATE TABLE charges (account_id text NOT NULL, id bigint, hold_id bigint REFERENCES holds (id), "
            "PRIMARY KEY (account_id, id))",
            "CREATE TABLE refunds (account_id text NOT NULL, id bigint, charge_id bigint, "
            "PRIMARY KEY (account_id, id), FOREIGN KEY (account_id, charge_id) REFERENCES charges (account_id, id))",
            "CREATE TABLE loose (account_id text NOT NULL, note text)",
            # A reference table (no account_id) pointing into a per-account one, with a trigger.
            "CREATE TABLE tariffs (id text PRIMARY KEY, owner text, charge bigint, "
            "FOREIGN KEY (owner, charge) REFERENCES charges (account_id, id))",
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
            "CREATE TRIGGER tariffs_touched AFTER UPDATE ON tariffs FOR EACH STATEMENT EXECUTE FUNCTION touch()",
        ):
            await conn.execute(text(statement))
        problems = [p for p in await lint(conn, "lint_scratch") if "not classified" not in p]
    assert sorted(problems) == [
        "charges: foreign key charges_hold_id_fkey to holds does not link account_id to account_id",
        "holds: unique index holds_code (code) lacks account_id",
        "holds: unique index holds_pkey (id) lacks account_id",
        "loose: a per-account table without a primary key",
        "tariffs: foreign key tariffs_owner_charge_fkey from a reference table into per-account charges",
        "tariffs: trigger tariffs_touched (no table has triggers)",
    ]


async def test_the_schema_before_distribution_fails_the_lint(empty_database):
    """Revision 0010, before the schema was made distributable, breaks the rules where
    docs/DESIGN.md said it did."""
    url = await empty_database()
    engine = db.create_engine(url, pool_size=1)
    try:
        await migrate(url, "0010")
        async with engine.connect() as conn:
            problems = "\n".join(await lint(conn))
    finally:
        await engine.dispose()
    for expected in (
        "usage_events: unique index pk_usage_events (id) lacks account_id",
        "grants: unique index pk_grants (id) lacks account_id",
        "authorizations: unique index pk_authorizations (id) lacks account_id",
        "ledger_entries: unique index uq_ledger_entries_reversal (usage_event_id) lacks account_id",
        "ledger_entries: foreign key fk_ledger_entries_usage_event_id_usage_events to usage_events does not link",
        "api_keys: foreign key fk_api_keys_account_id_accounts from a reference table into per-account accounts",
        "usage_rollups: trigger usage_rollups_to_months",
        "prices: trigger prices_changed",
        "api_keys: trigger api_keys_changed",
        "idempotency_keys: distributed by account_id but has no account_id column",
        "idempotency_keys: unique index pk_idempotency_keys (scope, key) lacks account_id",
    ):
        assert expected in problems


def test_no_upsert_calls_a_volatile_function():
    assert volatile_upserts(sorted((PROJECT_DIR / "app").rglob("*.py"))) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('"INSERT INTO t VALUES ($1) ON CONFLICT (id) DO UPDATE SET at = now()"', "now"),
        (
            '"""\n  INSERT INTO t AS r SELECT 1\n  ON CONFLICT (id)\n  DO UPDATE SET k = gen_random_uuid()\n"""',
            "gen_random_uuid",
        ),
        ("q.on_conflict_do_update(index_elements=[t.c.id], set_={'at': func.clock_timestamp()})", "clock_timestamp"),
        ("q.on_conflict_do_update(set_={'n': func.random() * (2 + 1)})", "random"),
        ('"ON CONFLICT (id) DO UPDATE SET at = CURRENT_TIMESTAMP"', "CURRENT_TIMESTAMP"),
    ],
)
def test_the_volatile_scan_finds_them(tmp_path: Path, source: str, found: str):
    path = tmp_path / "repository.py"
    path.write_text(source)
    assert [line.rsplit(": ", 1)[1] for line in volatile_upserts([path])] == [found]


@pytest.mark.parametrize(
    "source",
    [
        '"INSERT INTO t VALUES ($1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at"',
        "q.on_conflict_do_update(set_={'at': datetime.now(UTC)})",
        '"UPDATE t SET at = now()"',
        '"ON CONFLICT (id) DO UPDATE SET n = excluded.n;", "SELECT now()"',
    ],
)
def test_the_volatile_scan_leaves_parameters_and_other_statements_alone(tmp_path: Path, source: str):
    path = tmp_path / "repository.py"
    path.write_text(source)
    assert volatile_upserts([path]) == []


async def test_citus_plan_puts_reference_tables_then_accounts_then_its_colocated_tables(engine):
    async with engine.connect() as conn:
        plan = await citus_plan(conn)
    tables = [table for table, _ in plan]
    assert set(tables) == DISTRIBUTED | REFERENCE
    first_distributed = tables.index(ACCOUNTS)
    assert set(tables[:first_distributed]) == REFERENCE
    assert plan[first_distributed][1] == "SELECT create_distributed_table('public.accounts', 'id')"
    for table, statement in plan[first_distributed + 1 :]:
        assert statement == (
            f"SELECT create_distributed_table('public.{table}', 'account_id', colocate_with => 'public.accounts')"
        )
    # A table comes after the tables its foreign keys refer to.
    order = {table: n for n, table in enumerate(tables)}
    assert order["providers"] < order["models"] < order["prices"]
    assert order["usage_events"] < order["ledger_entries"] and order["grants"] < order["ledger_entries"]
    assert order["usage_events"] < order["authorizations"]


async def test_citus_setup_without_citus_fails_in_one_line(database, engine):
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, main, ["citus", "setup"], env={"DATABASE_URL": database})
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The citus extension is not installed"), result.stderr
    assert "CREATE EXTENSION citus" in lines[0]
    async with engine.connect() as conn:  # nothing was changed
        assert await lint(conn) == []
        assert (await conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"))).scalar() == 0
