"""Importing catalog files: idempotent, and a changed price is a new version, never an edit."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.catalog.importer import import_catalog, plan_prices
from app.errors import InvalidRequest

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


def catalog_file(provider: str, price: dict, *, extra_prices: list | None = None) -> dict:
    return {
        "providers": [{"id": provider, "name": "Test"}],
        "models": [
            {
                "id": f"{provider}/m",
                "provider": provider,
                "name": "m",
                "display_name": "M",
                "type": "language",
                "context_window": 1000,
                "capabilities": {"tools": True},
                "aliases": [f"{provider}-m"],
                "prices": [{"effective_from": "2025-01-01", "source": "file v1", **price}, *(extra_prices or [])],
            }
        ],
    }


async def stored_prices(engine, model_id: str) -> list:
    async with engine.connect() as conn:
        query = text("SELECT id, effective_from, input, output, source FROM prices WHERE model_id = :m ORDER BY id")
        return list(await conn.execute(query, {"m": model_id}))


async def run_import(engine, data, at):
    async with engine.begin() as conn:
        return await import_catalog(conn, data, at=at, label="test")


async def test_changed_price_becomes_a_new_version(scratch, conn_engine):
    provider, model_id = scratch, f"{scratch}/m"
    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    first = await run_import(conn_engine, catalog_file(provider, {"input": "1", "output": "2"}), t1)
    assert (first.models_changed, first.prices_added, first.aliases_added) == (1, 1, 1)
    original = await stored_prices(conn_engine, model_id)

    again = await run_import(conn_engine, catalog_file(provider, {"input": "1.0", "output": "2.00"}), t1)
    assert (again.models_changed, again.prices_added, again.aliases_added) == (0, 0, 0)

    t2 = t1 + timedelta(days=30)
    changed = await run_import(conn_engine, catalog_file(provider, {"input": "1.5", "output": "2"}), t2)
    assert changed.prices_added == 1
    rows = await stored_prices(conn_engine, model_id)
    assert rows[0] == original[0]  # the old version is untouched
    assert (rows[1].effective_from, str(rows[1].input)) == (t2, "1.5")


async def test_dated_future_versions_are_added_once(scratch, conn_engine):
    provider, model_id = scratch, f"{scratch}/m"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    later = {"effective_from": "2027-01-01", "source": "file v2", "input": "3", "output": "4"}
    data = catalog_file(provider, {"input": "1", "output": "2"}, extra_prices=[later])
    assert (await run_import(conn_engine, data, at)).prices_added == 2
    assert (await run_import(conn_engine, data, at)).prices_added == 0
    assert [str(r.input) for r in await stored_prices(conn_engine, model_id)] == ["1", "3"]


def test_plan_rejects_bad_rates():
    with pytest.raises(ValueError, match="non-negative"):
        plan_prices("p/m", [{"effective_from": "2025-01-01", "source": "x", "input": "-1"}], [], datetime.now(UTC))


async def test_reimport_keeps_newer_prices_and_known_metadata(scratch, conn_engine):
    """`make run` imports the bundled file at every start: it must not undo a later sync or price change."""
    provider, model_id = scratch, f"{scratch}/m"
    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    await run_import(conn_engine, catalog_file(provider, {"input": "1", "output": "2"}), t1)
    async with conn_engine.begin() as conn:
        # What a sync does: a newer price version, and metadata the file does not have.
        await conn.execute(
            text(
                "INSERT INTO prices (model_id, effective_from, input, output, source) VALUES (:m, :at, 0.5, 1, 'sync')"
            ),
            {"m": model_id, "at": t1 + timedelta(days=10)},
        )
        await conn.execute(text("UPDATE models SET max_output_tokens = 4096 WHERE id = :m"), {"m": model_id})
    again = await run_import(
        conn_engine, catalog_file(provider, {"input": "1", "output": "2"}), t1 + timedelta(days=20)
    )
    assert (again.prices_added, again.models_changed) == (0, 0)
    assert [str(r.input) for r in await stored_prices(conn_engine, model_id)] == ["1", "0.5"]
    async with conn_engine.connect() as conn:
        kept = (
            await conn.execute(text("SELECT max_output_tokens FROM models WHERE id = :m"), {"m": model_id})
        ).scalar()
    assert kept == 4096


async def test_match_clauses_are_imported_and_checked(scratch, conn_engine):
    provider = scratch
    data = catalog_file(provider, {"input": "1", "output": "2"})
    data["models"][0]["match"] = {"or": [{"equals": "m"}, {"starts_with": f"{provider}-m-20"}]}
    await run_import(conn_engine, data, datetime(2026, 1, 1, tzinfo=UTC))
    async with conn_engine.connect() as conn:
        stored = (await conn.execute(text("SELECT match FROM models WHERE id = :m"), {"m": f"{provider}/m"})).scalar()
    assert stored == data["models"][0]["match"]
    # A malformed clause would stop every worker compiling the catalog: the import refuses it, writing nothing.
    bad = catalog_file(provider, {"input": "1", "output": "2"})
    bad["models"][0]["id"], bad["models"][0]["name"] = f"{provider}/n", "n"
    bad["models"][0]["aliases"] = []
    bad["models"][0]["match"] = {"starts_with": 5}
    with pytest.raises(InvalidRequest, match=f"{provider}/n"):
        await run_import(conn_engine, bad, datetime(2026, 1, 2, tzinfo=UTC))
    async with conn_engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM models WHERE id = :m"), {"m": f"{provider}/n"})).scalar()
    assert count == 0


async def refresh(client) -> None:
    """The app's catalog reloaded now, on the app's own event loop (the test client's portal)."""
    await asyncio.to_thread(client.blocking_portal.call, client.app.state.catalog.refresh)


async def test_reimport_keeps_operator_aliases(client, admin, scratch, conn_engine):
    """An alias an operator set (even over a name the file gives another model) outlives every import."""
    provider = scratch
    data = catalog_file(provider, {"input": "1", "output": "2"})
    data["models"].append(data["models"][0] | {"id": f"{provider}/other", "name": "other", "aliases": []})
    await run_import(conn_engine, data, datetime(2026, 1, 1, tzinfo=UTC))
    await refresh(client)  # what the change's notification does, a moment later
    taken = await client.post(
        "/catalog/aliases", json={"alias": f"{provider}-m", "model": f"{provider}/other"}, headers=admin
    )
    assert taken.status_code == 201, taken.text
    added = await client.post(
        "/catalog/aliases", json={"alias": "deploy-7", "model": f"{provider}/m", "provider": provider}, headers=admin
    )
    assert added.status_code == 201
    await run_import(conn_engine, data, datetime(2026, 1, 2, tzinfo=UTC))
    await refresh(client)
    resolved = (await client.get("/models/resolve", params={"model": f"{provider}-m"}, headers=admin)).json()
    assert (resolved["model"], resolved["rule"]) == (f"{provider}/other", "alias")
    scoped = await client.get("/models/resolve", params={"model": "deploy-7", "provider": provider}, headers=admin)
    assert scoped.json()["model"] == f"{provider}/m"
    operator = (await client.get("/catalog/aliases", params={"source": "operator"}, headers=admin)).json()["aliases"]
    assert {(a["alias"], a["model"], a["provider"]) for a in operator} == {
        (f"{provider}-m", f"{provider}/other", None),
        ("deploy-7", f"{provider}/m", provider),
    }


async def test_facts_are_stored_with_their_sources_and_a_reimport_keeps_what_it_does_not_say(scratch, conn_engine):
    data = catalog_file(scratch, {"input": "1", "output": "2"})
    data["models"][0] |= {
        "input_modalities": ["text", "image"],
        "output_modalities": ["text"],
        "facts": {"context_window": "file v1", "tools": "file v1", "input_modalities": "file v1"},
    }
    await run_import(conn_engine, data, datetime(2026, 1, 1, tzinfo=UTC))
    newer = catalog_file(scratch, {"input": "1", "output": "2"})
    newer["models"][0] |= {"context_window": 2000, "capabilities": {}, "facts": {"context_window": "file v2"}}
    await run_import(conn_engine, newer, datetime(2026, 1, 2, tzinfo=UTC))
    async with conn_engine.connect() as conn:
        query = text(
            "SELECT context_window, supports_tools, input_modalities, output_modalities, facts"
            " FROM models WHERE id = :m"
        )
        row = (await conn.execute(query, {"m": f"{scratch}/m"})).one()
    assert (row.context_window, row.supports_tools) == (2000, True)
    assert (row.input_modalities, row.output_modalities) == (["text", "image"], ["text"])
    assert row.facts == {"context_window": "file v2", "tools": "file v1", "input_modalities": "file v1"}
