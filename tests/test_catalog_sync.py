"""Catalog sync against real local HTTP servers: a diff that adds models, adds price versions,
deprecates vanished models, and never rewrites history; the admin endpoint, the CLI, the periodic job.

Each test syncs into providers of its own (the catalog tables are not emptied between tests)."""

import asyncio
import importlib.metadata
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from app.asgi import sync_catalog_periodically
from app.catalog.sources import Upstreams
from app.catalog.store import CatalogStore
from app.catalog.sync import SYNC_LOCK, sync_catalog, sync_if_free
from app.cli import main
from app.config import Settings
from tests import test_catalog_sources
from tests.helpers import KEEP_TABLES, assert_error
from tests.test_catalog_sources import (
    LITELLM_FILE,
    OLLAMA_TAGS,
    OPENROUTER_EMBEDDINGS,
    OPENROUTER_MODELS,
    Reply,
    litellm_mapping,
    openrouter_model,
    serve_ollama,
    serve_openrouter,
    upstreams,
)

# The real HTTP servers of the source tests.
upstream = test_catalog_sources.upstream
closed_port = test_catalog_sources.closed_port


@pytest.fixture
async def fresh(engine) -> AsyncIterator[Callable[[], str]]:
    """Makes provider ids of this test's own; all are removed afterwards, with everything under them."""
    made: list[str] = []

    def make() -> str:
        made.append(f"t{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    async with engine.begin() as conn:
        if (await conn.execute(text("SELECT EXISTS (SELECT FROM usage_events)"))).scalar():
            # Usage recorded at these providers' prices goes first (conn_engine empties it anyway).
            query = text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            names = ", ".join(f'"{name}"' for name in (await conn.execute(query)).scalars() if name not in KEEP_TABLES)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        for provider in made:
            params = {"provider": provider, "pattern": provider + "/%"}
            await conn.execute(text("DELETE FROM prices WHERE model_id LIKE :pattern"), params)
            await conn.execute(text("DELETE FROM model_aliases WHERE model_id LIKE :pattern"), params)
            await conn.execute(text("DELETE FROM models WHERE provider = :provider"), params)
            await conn.execute(text("DELETE FROM providers WHERE id = :provider"), params)


async def sync(engine, up, *names, at=None, **options):
    async with engine.connect() as conn:
        return await sync_catalog(conn, up, names, at=at or datetime.now(UTC), **options)


async def models_of(engine, provider: str) -> dict[str, dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM models WHERE provider = :p"), {"p": provider})
        return {row.id: dict(row._mapping) for row in rows}


async def prices_of(engine, model_id: str) -> list[dict]:
    async with engine.connect() as conn:
        query = text("SELECT * FROM prices WHERE model_id = :m ORDER BY effective_from")
        return [dict(row._mapping) for row in await conn.execute(query, {"m": model_id})]


async def catalog_version(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT version FROM catalog_version"))).scalar_one()


def changes(result, kind: str) -> dict[str, object]:
    return {c.id: c for r in result.results for c in r.changes if c.change == kind}


# The diff


async def test_first_sync_adds_models_with_exact_prices_and_a_repeat_changes_nothing(engine, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    at = datetime.now(UTC)
    result = await sync(engine, up, "openrouter", at=at)
    (source,) = result.results
    assert (result.ok, source.name, source.source, source.provider, source.errors) == (
        True,
        "openrouter",
        "api",
        provider,
        [],
    )
    # openrouter/auto is listed but unpriced: its -1 price is variable, so it gets no price row.
    assert (source.models_added, source.prices_added, source.models_deprecated, source.unchanged) == (6, 5, 0, 0)

    models = await models_of(engine, provider)
    assert len(models) == 6
    gpt4o = models[f"{provider}/openai/gpt-4o"]
    assert (gpt4o["display_name"], gpt4o["context_window"], gpt4o["supports_tools"]) == (
        "Test: openai/gpt-4o",
        128000,
        True,
    )
    assert (gpt4o["input_modalities"], gpt4o["facts"]["tools"], gpt4o["created"].isoformat()) == (
        ["text", "image"],
        "openrouter api",
        "2024-05-13",
    )
    (price,) = await prices_of(engine, f"{provider}/openai/gpt-4o")
    assert (price["input"], price["output"], price["cached_input"]) == (Decimal("2.5"), Decimal("10"), Decimal("1.25"))
    assert (price["effective_from"], price["source"]) == (at, "openrouter api")
    assert await prices_of(engine, f"{provider}/openrouter/auto") == []
    embedding = models[f"{provider}/openai/text-embedding-3-small"]
    assert (embedding["type"], embedding["max_input_tokens"]) == ("embedding", 8192)

    # Nothing changed upstream: nothing is written, so the catalog version does not move either.
    version = await catalog_version(engine)
    again = (await sync(engine, up, "openrouter", at=at + timedelta(hours=1))).results[0]
    assert (again.models_added, again.models_updated, again.prices_added, again.unchanged) == (0, 0, 0, 6)
    assert await catalog_version(engine) == version


async def test_a_changed_price_is_a_new_version_at_sync_time_and_history_stays(engine, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    t1 = datetime.now(UTC)
    await sync(engine, up, "openrouter", at=t1)
    model_id = f"{provider}/openai/gpt-4o"
    (original,) = await prices_of(engine, model_id)

    models = {"data": [openrouter_model("openai/gpt-4o", prompt="0.000002"), *OPENROUTER_MODELS["data"][1:]]}
    models["data"][1] = models["data"][1] | {"context_length": 1000000}
    serve_openrouter(upstream, models=models)
    t2 = t1 + timedelta(days=1)
    result = await sync(engine, up, "openrouter", at=t2)
    (source,) = result.results
    assert (source.models_added, source.models_updated, source.prices_added, source.unchanged) == (0, 1, 1, 4)
    change = changes(result, "price_changed")[model_id]
    assert (change.old_price.input, change.new_price.input) == ("2.5", "2")
    assert (change.old_price.effective_from, change.new_price.effective_from) == (t1, t2)
    assert changes(result, "updated")[f"{provider}/anthropic/claude-sonnet-4"].fields == ["context_window"]

    first, second = await prices_of(engine, model_id)
    assert first == original  # the old version, every column of it, is untouched
    assert (second["effective_from"], second["input"], second["output"]) == (t2, Decimal(2), Decimal(10))


async def test_a_vanished_model_is_deprecated_not_deleted(engine, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    t1 = datetime.now(UTC)
    await sync(engine, up, "openrouter", at=t1)
    gone = f"{provider}/perplexity/sonar"
    price = await prices_of(engine, gone)

    serve_openrouter(upstream, models={"data": OPENROUTER_MODELS["data"][:-1]})
    t2 = t1 + timedelta(days=3)
    result = await sync(engine, up, "openrouter", at=t2)
    assert result.results[0].models_deprecated == 1
    assert changes(result, "deprecated")[gone].deprecation_date == t2.date()
    models = await models_of(engine, provider)
    assert models[gone]["deprecation_date"] == t2.date()
    assert await prices_of(engine, gone) == price
    assert [m for m in models.values() if m["deprecation_date"] is not None] == [models[gone]]

    # Already deprecated: a later sync leaves its date alone.
    later = await sync(engine, up, "openrouter", at=t2 + timedelta(days=1))
    assert later.results[0].models_deprecated == 0
    assert (await models_of(engine, provider))[gone]["deprecation_date"] == t2.date()


@pytest.mark.parametrize("answer", ["partial", "empty", "no embeddings"])
async def test_no_deprecation_from_a_listing_that_may_be_incomplete(engine, upstream, fresh, answer):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    await sync(engine, up, "openrouter")
    if answer == "partial":  # an entry without an id could be any of the missing models
        serve_openrouter(upstream, models={"data": [OPENROUTER_MODELS["data"][0], {"name": "?"}]})
    elif answer == "empty":
        serve_openrouter(upstream, models={"data": []}, embeddings={"data": []})
    else:
        serve_openrouter(upstream, models={"data": OPENROUTER_MODELS["data"][:1]}, embeddings=Reply(status=404))
    result = await sync(engine, up, "openrouter")
    assert result.results[0].models_deprecated == 0
    assert all(m["deprecation_date"] is None for m in (await models_of(engine, provider)).values())
    if answer == "empty":
        assert result.results[0].detail == "the listing was empty: no model was deprecated"


async def test_a_price_that_becomes_variable_ends_the_fixed_price(engine, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    t1 = datetime.now(UTC)
    await sync(engine, up, "openrouter", at=t1)
    serve_openrouter(upstream, models={"data": [openrouter_model("openai/gpt-4o", "-1", "-1")]})
    t2 = t1 + timedelta(hours=1)
    for at in (t2, t2 + timedelta(hours=1)):  # the second time it is no change
        await sync(engine, up, "openrouter", at=at)
    fixed, variable = await prices_of(engine, f"{provider}/openai/gpt-4o")
    assert fixed["input"] == Decimal("2.5")
    assert (variable["effective_from"], variable["input"], variable["output"]) == (t2, None, None)
    async with engine.connect() as conn:
        negative = "SELECT count(*) FROM prices WHERE model_id LIKE :p AND (input < 0 OR output < 0 OR per_request < 0)"
        assert (await conn.execute(text(negative), {"p": provider + "/%"})).scalar() == 0


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b'{"data": [{"id": "openai/gpt-4o", "pricing": {"prompt": "0.0000025"'), "malformed JSON"),
        (Reply(body=b'{"models": []}'), "expected an object with a `data` list"),
        (Reply(body=b" " * 300_000), "exceeds the 262144-byte limit"),
    ],
    ids=["malformed JSON", "wrong shape", "too large"],
)
async def test_unusable_upstream_data_is_an_error_and_changes_nothing(engine, upstream, fresh, reply, message):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    await sync(engine, up, "openrouter")
    before = await models_of(engine, provider), await prices_of(engine, f"{provider}/openai/gpt-4o")
    version = await catalog_version(engine)

    upstream.on("/api/v1/models", reply)
    result = await sync(engine, up, "openrouter")
    (source,) = result.results
    assert not result.ok
    assert (source.source, source.models_added, source.prices_added, source.models_deprecated) == ("api", 0, 0, 0)
    assert len(source.errors) == 1 and message in source.errors[0] and "/api/v1/models" in source.errors[0]
    assert await catalog_version(engine) == version
    assert (await models_of(engine, provider), await prices_of(engine, f"{provider}/openai/gpt-4o")) == before


async def test_unreachable_openrouter_adds_the_curated_models_and_changes_no_price(
    engine, upstream, closed_port, fresh
):
    provider = fresh()
    # Earlier, the API said gpt-4o costs 3 (not the bundled 2.5) and listed only that model.
    serve_openrouter(upstream, models={"data": [openrouter_model("openai/gpt-4o", prompt="0.000003")]})
    await sync(engine, upstreams(upstream.url, openrouter_provider=provider), "openrouter")

    result = await sync(engine, upstreams(closed_port, openrouter_provider=provider), "openrouter")
    (source,) = result.results
    assert (result.ok, source.source, source.errors) == (True, "curated_fallback", [])
    assert "unreachable" in source.detail
    curated = len(await models_of(engine, provider))
    assert source.models_added == curated - 2 >= 20  # all but the two synced before
    assert (source.unchanged, source.models_deprecated) == (1, 0)
    (price,) = await prices_of(engine, f"{provider}/openai/gpt-4o")
    assert price["input"] == Decimal(3)  # a fallback never takes a price back to the bundled one
    mini = await prices_of(engine, f"{provider}/openai/gpt-4o-mini")
    assert mini[-1]["input"] == Decimal("0.15") and mini[0]["source"].startswith("genai-prices")


async def test_ollama_sync_and_an_unreachable_server(engine, upstream, closed_port, fresh):
    provider = fresh()
    serve_ollama(upstream)
    up = upstreams(upstream.url, ollama_provider=provider)
    t1 = datetime.now(UTC)
    result = await sync(engine, up, "ollama", at=t1)
    (source,) = result.results
    assert (source.source, source.models_added, source.prices_added, source.errors) == ("ollama", 2, 2, [])
    models = await models_of(engine, provider)
    assert models[f"{provider}/nomic-embed-text:latest"]["dimensions"] == 768
    (free,) = await prices_of(engine, f"{provider}/llama3.2:latest")
    assert (free["input"], free["output"]) == (0, 0)  # an explicit 0 price, not unpriced

    version = await catalog_version(engine)
    down = await sync(engine, upstreams(closed_port, ollama_provider=provider), "ollama")
    assert (down.ok, down.results[0].source, down.results[0].errors) == (True, "ollama_unreachable", [])
    assert "unreachable" in down.results[0].detail
    assert await catalog_version(engine) == version

    serve_ollama(upstream, tags={"models": OLLAMA_TAGS["models"][:1]})  # the embedding model was removed
    t2 = t1 + timedelta(days=1)
    removed = await sync(engine, up, "ollama", at=t2)
    assert list(changes(removed, "deprecated")) == [f"{provider}/nomic-embed-text:latest"]


async def test_litellm_file_sync(engine, upstream, fresh, tmp_path):
    provider, local = fresh(), fresh()
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(LITELLM_FILE)
    up = upstreams(upstream.url, litellm_providers=litellm_mapping(provider, local))
    result = await sync(engine, up, "litellm", litellm=str(path))
    (source,) = result.results
    assert (source.source, source.provider, source.models_added, source.prices_added) == ("file", None, 5, 4)
    assert not result.ok and "gpt-broken" in source.errors[0]  # reported, the others imported
    (gemini,) = await prices_of(engine, f"{provider}/gemini-1.5-pro")
    assert gemini["tiers"] == [
        {"above_input_tokens": 128000, "input": "2.5", "output": "10", "cached_input": None, "cache_write": None}
        | {"cache_write_1h": None}
    ]
    models = await models_of(engine, provider)
    assert str(models[f"{provider}/gemini-1.5-pro"]["deprecation_date"]) == "2025-09-24"


async def test_a_dry_run_reports_the_diff_and_writes_nothing(engine, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    t1 = datetime.now(UTC)
    preview = await sync(engine, up, "openrouter", at=t1, dry_run=True)
    assert preview.dry_run and preview.results[0].models_added == 6
    assert changes(preview, "added")[f"{provider}/openai/gpt-4o"].new_price.input == "2.5"
    assert await models_of(engine, provider) == {}

    await sync(engine, up, "openrouter", at=t1)
    version = await catalog_version(engine)
    models = {"data": [openrouter_model("openai/gpt-4o", prompt="0.000003"), *OPENROUTER_MODELS["data"][1:4]]}
    serve_openrouter(upstream, models=models)
    preview = await sync(engine, up, "openrouter", at=t1 + timedelta(days=1), dry_run=True)
    (source,) = preview.results
    assert (source.dry_run, source.prices_added, source.models_deprecated) == (True, 1, 1)
    change = changes(preview, "price_changed")[f"{provider}/openai/gpt-4o"]
    assert (change.old_price.input, change.new_price.input) == ("2.5", "3")
    assert list(changes(preview, "deprecated")) == [f"{provider}/perplexity/sonar"]
    assert await catalog_version(engine) == version
    assert len(await prices_of(engine, f"{provider}/openai/gpt-4o")) == 1


# genai-prices: the installed package's bundled data

GENAI_PRICES = f"genai-prices {importlib.metadata.version('genai-prices')}"


async def test_genai_prices_sync_of_the_data_the_bundled_catalog_holds_changes_nothing(engine):
    """The bundled catalog was built from the installed genai-prices, through the same code."""
    result = await sync(engine, Upstreams(), "genai-prices", dry_run=True)
    (source,) = result.results
    assert (result.ok, source.name, source.source, source.detail) == (True, "genai-prices", "package", GENAI_PRICES)
    assert (source.models_added, source.models_updated, source.prices_added, source.changes) == (0, 0, 0, [])
    assert source.unchanged > 1000


async def test_genai_prices_sync_is_a_diff(engine, fresh):
    provider = fresh()
    up = Upstreams(genai_prices_providers={"deepseek": provider})  # DeepSeek's models, into a provider of our own
    t1 = datetime.now(UTC)
    preview = await sync(engine, up, "genai-prices", at=t1, dry_run=True)
    added = changes(preview, "added")
    assert f"{provider}/deepseek-chat" in added and await models_of(engine, provider) == {}

    result = await sync(engine, up, "genai-prices", at=t1)
    (source,) = result.results
    assert (result.ok, source.models_added, source.models_deprecated) == (True, len(added), 0)
    chat = (await models_of(engine, provider))[f"{provider}/deepseek-chat"]
    assert (chat["context_window"], chat["facts"]) == (64000, {"context_window": GENAI_PRICES})
    (price,) = await prices_of(engine, f"{provider}/deepseek-chat")
    assert (price["input"], price["output"], price["source"]) == (Decimal("0.27"), Decimal("1.1"), GENAI_PRICES)
    # genai-prices' dated price changes are history, each at its date.
    flash = await prices_of(engine, f"{provider}/deepseek-v4-flash")
    dated = [(str(p["effective_from"].date()), str(p["input"])) for p in flash]
    assert dated[-2:] == [("2026-08-17", "0.22"), ("2026-09-10", "0.15")]

    again = (await sync(engine, up, "genai-prices", at=t1 + timedelta(hours=1))).results[0]
    assert (again.models_added, again.models_updated, again.prices_added) == (0, 0, 0)

    # A price genai-prices does not say (an operator's, say) is undone by a new version at the sync time;
    # a long-context tier another dataset gave the same price is kept: genai-prices not knowing it is no change.
    model_id = f"{provider}/deepseek-chat"
    async with engine.begin() as conn:
        insert = text(
            "INSERT INTO prices (model_id, effective_from, input, output, cached_input, tiers, source) "
            "VALUES (:m, :at, :input, 1.1, 0.07, CAST(:tiers AS jsonb), 'other')"
        )
        tier = json.dumps([{"above_input_tokens": 128000, "input": "0.5"} | dict.fromkeys(("output",))])
        await conn.execute(insert, {"m": model_id, "at": t1 + timedelta(days=1), "input": 9, "tiers": "[]"})
    t2 = t1 + timedelta(days=2)
    changed = await sync(engine, up, "genai-prices", at=t2)
    change = changes(changed, "price_changed")[model_id]
    assert (change.old_price.input, change.new_price.input, change.new_price.effective_from) == ("9", "0.27", t2)
    # (With the same off-peak window as genai-prices': a variant it knows and the stored price lacks is a change.)
    window = (await prices_of(engine, model_id))[-1]["variants"]
    assert [v["time_from"] for v in window] == ["16:30"]
    async with engine.begin() as conn:
        await conn.execute(insert, {"m": model_id, "at": t2 + timedelta(days=1), "input": "0.27", "tiers": tier})
        await conn.execute(
            text("UPDATE prices SET variants = CAST(:v AS jsonb) WHERE model_id = :m AND effective_from = :at"),
            {"v": json.dumps(window), "m": model_id, "at": t2 + timedelta(days=1)},
        )
    kept = (await sync(engine, up, "genai-prices", at=t2 + timedelta(days=2))).results[0]
    assert (kept.prices_added, kept.changes) == (0, [])
    assert [p["source"] for p in await prices_of(engine, model_id)] == [GENAI_PRICES, "other", GENAI_PRICES, "other"]


# The must-show: a price change leaves recorded usage alone, and the books still reconcile


async def billing(database: str, *args: str, **env: str):
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env={"DATABASE_URL": database, **env})


async def test_sync_changing_a_price_keeps_earlier_events_and_their_versions(
    client, admin, clock, conn_engine, database, upstream, fresh
):
    provider = fresh()
    model = f"{provider}/openai/gpt-4o"
    serve_openrouter(upstream)
    # Through the admin endpoint, which refreshes the worker's catalog before it answers.
    client.app.state.upstreams = upstreams(upstream.url, openrouter_provider=provider)
    first = await client.post("/catalog/sync", json={"sources": ["openrouter"]}, headers=admin)
    assert first.status_code == 200, first.text
    t1 = datetime.fromisoformat(first.json()["synced_at"])

    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    grant = await client.post("/accounts/acme/grants", json={"amount": "10000"}, headers=admin)
    assert grant.status_code == 201, grant.text

    def event(event_id: str, **fields) -> dict:
        body = {"event_id": event_id, "account_id": "acme", "model": model, "input_tokens": 10**6}
        return body | {"output_tokens": 10**6} | fields

    # 1M in + 1M out at 2.5 + 10 USD per 1M = 12.5 USD; x 1.4 x 100 = 1750 credits.
    clock.at = t1
    before = [(await client.post("/usage", json=event(f"e{i}"), headers=admin)) for i in (1, 2)]
    assert [r.status_code for r in before] == [201, 201], before[0].text
    v1 = before[0].json()["price_version"]
    assert [(r.json()["price_version"], r.json()["cost"]) for r in before] == [(v1, "1750.000000000")] * 2
    (v1_row,) = await prices_of(conn_engine, model)

    # Upstream cuts the input price to 2 USD per 1M.
    models = {"data": [openrouter_model("openai/gpt-4o", prompt="0.000002"), *OPENROUTER_MODELS["data"][1:]]}
    serve_openrouter(upstream, models=models, embeddings=OPENROUTER_EMBEDDINGS)
    clock.advance(minutes=1)  # the sync's new price version starts at the app's (test) clock
    second = await client.post("/catalog/sync", json={"sources": ["openrouter"]}, headers=admin)
    assert second.json()["results"][0]["prices_added"] == 1, second.text
    t2 = datetime.fromisoformat(second.json()["synced_at"])
    assert t2 > t1

    clock.at = t2
    after = await client.post("/usage", json=event("e3"), headers=admin)
    assert after.status_code == 201, after.text
    v2 = after.json()["price_version"]
    assert v2 != v1 and after.json()["cost"] == "1680.000000000"  # 12 USD x 140
    # Reported late: priced by the version in effect when it happened.
    occurred = (t2 - timedelta(microseconds=1)).isoformat()
    late = await client.post("/usage", json=event("e4", occurred_at=occurred), headers=admin)
    assert (late.json()["price_version"], late.json()["cost"]) == (v1, "1750.000000000"), late.text

    listed = await client.get("/usage", params={"limit": 100}, headers=admin)
    stored = {e["event_id"]: (e["price_version"], e["cost"]) for e in listed.json()["data"]}
    assert stored == {
        "e1": (v1, "1750.000000000"),
        "e2": (v1, "1750.000000000"),
        "e3": (v2, "1680.000000000"),
        "e4": (v1, "1750.000000000"),
    }
    v1_now, v2_row = await prices_of(conn_engine, model)
    assert v1_now == v1_row  # the version the events point at is untouched
    assert (v2_row["id"], v2_row["effective_from"], v2_row["input"]) == (v2, t2, Decimal(2))

    reconciled = await billing(database, "reconcile")
    assert reconciled.exit_code == 0, (reconciled.stdout, reconciled.stderr)
    assert "4 usage events recomputed" in reconciled.stdout and "all invariants hold" in reconciled.stdout


# The admin endpoint


async def test_sync_endpoint(client, admin, make_key, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    serve_ollama(upstream)
    client.app.state.upstreams = upstreams(upstream.url, openrouter_provider=provider, ollama_provider=fresh())

    preview = await client.post("/catalog/sync", json={"sources": ["openrouter"], "dry_run": True}, headers=admin)
    assert preview.status_code == 200, preview.text
    assert preview.json()["results"][0]["changes"][0]["change"] == "added"
    assert (await client.get(f"/models/{provider}/openai/gpt-4o", headers=admin)).status_code == 404

    response = await client.post("/catalog/sync", json={}, headers=admin)  # BILLING_SYNC_SOURCES
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["dry_run"]) == (True, False)
    assert [(r["name"], r["source"], r["models_added"]) for r in body["results"]] == [
        ("openrouter", "api", 6),
        ("ollama", "ollama", 2),
    ]
    # The worker's catalog is refreshed before the answer: the new model is served, in credits.
    model = (await client.get(f"/models/{provider}/openai/gpt-4o", headers=admin)).json()
    assert (model["pricing"]["input"], model["upstream"]["input"]) == ("350", "2.5")

    packaged = await client.post("/catalog/sync", json={"sources": ["genai-prices"], "dry_run": True}, headers=admin)
    assert packaged.status_code == 200, packaged.text
    assert [(r["name"], r["source"], r["models_added"]) for r in packaged.json()["results"]] == [
        ("genai-prices", "package", 0)
    ]

    reader = {"X-API-Key": await make_key("catalog:read", "ledger:read")}
    assert_error(await client.post("/catalog/sync", json={}, headers=reader), 403, "insufficient_scope")
    error = assert_error(
        await client.post("/catalog/sync", json={"sources": ["litellm"]}, headers=admin), 400, "validation_error"
    )
    assert "litellm_url" in error["message"]
    for body in ({"sources": ["litellm"], "litellm_url": "/etc/passwd"}, {"sources": ["pricelist"]}, {"sources": []}):
        assert_error(await client.post("/catalog/sync", json=body, headers=admin), 400, "validation_error")


# The CLI


async def test_cli_sync(database, engine, upstream, closed_port, tmp_path):
    version = await catalog_version(engine)
    good = tmp_path / "prices.json"
    good.write_text(json.dumps({k: v for k, v in json.loads(LITELLM_FILE).items() if k != "gpt-broken"}))
    # Into the real providers (the default mapping), so only as a dry run.
    dry = await billing(database, "catalog", "sync", "--litellm-file", str(good), "--dry-run")
    assert dry.exit_code == 0, (dry.stdout, dry.stderr)
    assert "[dry run] litellm (file):" in dry.stdout
    assert "openai/text-embedding-3-small" in dry.stdout or "unchanged" in dry.stdout

    broken = tmp_path / "broken.json"
    broken.write_text('{"gpt-4o": ')
    failed = await billing(database, "catalog", "sync", "--litellm-file", str(broken))
    assert failed.exit_code == 1
    assert "ERROR litellm: " in failed.stderr and "malformed JSON" in failed.stderr

    env = {"OLLAMA_BASE_URL": closed_port, "BILLING_SYNC_RETRIES": "0"}
    down = await billing(database, "catalog", "sync", "--source", "ollama", "--json", **env)
    assert down.exit_code == 0, (down.stdout, down.stderr)
    assert json.loads(down.stdout)["results"][0]["source"] == "ollama_unreachable"
    assert await catalog_version(engine) == version

    usage = await billing(database, "catalog", "sync", "--source", "litellm")
    assert usage.exit_code == 2 and "--litellm-file" in usage.stderr

    packaged = await billing(database, "catalog", "sync", "--source", "genai-prices", "--dry-run")
    assert packaged.exit_code == 0, (packaged.stdout, packaged.stderr)
    assert "[dry run] genai-prices (package): 0 added, 0 updated, 0 price versions added" in packaged.stdout


# The periodic sync


async def test_one_worker_at_a_time(engine, upstream, fresh):
    provider = fresh()
    serve_openrouter(upstream)
    up = upstreams(upstream.url, openrouter_provider=provider)
    async with engine.connect() as holder, engine.connect() as conn:
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SYNC_LOCK})
        assert await sync_if_free(conn, up, ["openrouter"], at=datetime.now(UTC)) is None
        # An operator's sync waits a while for the running one, then says so and writes nothing;
        # a dry run needs no lock.
        busy = await sync_catalog(conn, up, ["openrouter"], at=datetime.now(UTC), lock_wait=0.2)
        assert busy.results[0].errors == [
            "openrouter: another catalog sync is running; nothing was written, try again later"
        ]
        assert await models_of(engine, provider) == {}
        preview = await sync_catalog(conn, up, ["openrouter"], at=datetime.now(UTC), dry_run=True, lock_wait=0.2)
        assert preview.ok and preview.results[0].models_added == 6
        await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SYNC_LOCK})
        await holder.commit()
        result = await sync_if_free(conn, up, ["openrouter"], at=datetime.now(UTC))
        assert result.results[0].models_added == 6
        # The session lock is released afterwards.
        assert (await holder.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SYNC_LOCK})).scalar()
        await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SYNC_LOCK})
        await holder.commit()


async def test_periodic_sync_in_the_service(engine, upstream, fresh):
    """The service's loop (BILLING_SYNC_INTERVAL_SECONDS), on a state of this test's own event loop."""
    provider = fresh()
    serve_openrouter(upstream)
    store = CatalogStore(engine, Decimal("1.4"), Decimal(100))
    await store.refresh()
    state = SimpleNamespace(
        engine=engine,
        direct_engine=engine,
        catalog=store,
        clock=store.clock,
        upstreams=upstreams(upstream.url, openrouter_provider=provider),
    )
    task = asyncio.create_task(sync_catalog_periodically(state, ("openrouter",), 0.01))
    try:
        for _ in range(200):
            if f"{provider}/openai/gpt-4o" in store.catalog.models:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    model = store.catalog.models[f"{provider}/openai/gpt-4o"]
    assert model.prices[-1].rates.input == Decimal("2.5")


def test_upstreams_from_settings():
    settings = Settings.from_env(
        {
            "OPENROUTER_BASE_URL": "https://or.example/",
            "OPENROUTER_API_KEY": "sk-or-1",
            "OLLAMA_BASE_URL": "http://gpu-box:11434",
            "LITELLM_PRICES": "/srv/prices.json",
            "BILLING_SYNC_TIMEOUT_SECONDS": "2.5",
            "BILLING_SYNC_RETRIES": "0",
            "BILLING_SYNC_MAX_BYTES": "4096",
            "BILLING_SYNC_SOURCES": "ollama, litellm",
            "BILLING_SYNC_INTERVAL_SECONDS": "3600",
        }
    )
    up = Upstreams.from_settings(settings)
    assert (up.openrouter_url, up.openrouter_api_key, up.ollama_url, up.litellm) == (
        "https://or.example",
        "sk-or-1",
        "http://gpu-box:11434",
        "/srv/prices.json",
    )
    assert (up.limits.timeout, up.limits.retries, up.limits.max_bytes) == (2.5, 0, 4096)
    assert (settings.sync_sources, settings.sync_interval_seconds) == (("ollama", "litellm"), 3600)
    assert replace(up, openrouter_provider="x").openrouter_provider == "x"
