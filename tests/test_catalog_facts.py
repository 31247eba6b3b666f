"""The bundled catalog's depth: model facts with their sources, release dates, and price variants.

The bar: at least 95% of the priced language models of the first-party providers know their context
window, output limit, tool use and vision; router models know what the router lists. The file is the
build script's output (scripts/build_catalog.py), checked here as the service reads it."""

import asyncio
import calendar
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from app.catalog import entries
from app.catalog.importer import import_catalog, read_catalog

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

FIRST_PARTY = ("openai", "anthropic", "google", "vertex", "mistral", "cohere", "xai", "deepseek", "groq", "cerebras")
BAR = ("context_window", "max_output_tokens", "tools", "vision")
CATALOG = read_catalog()
MODELS = {m["id"]: m for m in CATALOG["models"]}
SOURCES = {s["name"].split()[0]: s["version"] for s in CATALOG["sources"]}


@pytest.fixture
async def reader(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read")}


def known(model: dict, fact: str):
    return model["capabilities"].get(fact) if fact in model["capabilities"] else model.get(fact)


def current(model: dict) -> dict:
    dated = [p for p in model["prices"] if p["effective_from"] <= CATALOG["generated_at"]]
    return dated[-1]


@pytest.mark.parametrize("fact", BAR)
def test_first_party_language_models_know_the_facts_that_matter(fact):
    priced = [m for m in CATALOG["models"] if m["provider"] in FIRST_PARTY and m["type"] == "language" and m["prices"]]
    have = [m for m in priced if known(m, fact) is not None]
    assert len(priced) > 400
    assert len(have) / len(priced) >= 0.95, f"{fact}: {len(have)} of {len(priced)}"


def test_every_fact_names_its_source_and_router_models_only_the_routers_listing():
    labels = Counter()
    for m in CATALOG["models"]:
        values = {fact: known(m, fact) for fact in (*m["capabilities"], "context_window", "max_input_tokens")}
        values |= {f: m[f] for f in ("max_output_tokens", "dimensions", "input_modalities", "output_modalities")}
        values["created"] = m["created"]
        assert {f for f, v in values.items() if v is not None} == set(m["facts"]), m["id"]
        for label in m["facts"].values():
            labels[label.split(" (")[0]] += 1
            if m["provider"] == "openrouter":
                # The router's own entries in each dataset, never another provider's entry of the model.
                assert "(" not in label or label.endswith("(no flag: false, as LiteLLM reads it)"), (m["id"], label)
    datasets = {f"genai-prices {SOURCES['genai-prices']}", f"litellm {SOURCES['litellm']}"}
    datasets |= {f"models.dev {SOURCES['models.dev']}", "snapshot name"}
    assert datasets <= set(labels)
    assert all(label.startswith(("genai-prices ", "litellm ", "models.dev ", "snapshot name")) for label in labels)


def test_facts_of_well_known_models():
    gpt4o = MODELS["openai/gpt-4o"]
    assert (gpt4o["context_window"], gpt4o["max_output_tokens"], gpt4o["capabilities"]["vision"]) == (
        128000,
        16384,
        True,
    )
    assert "image" in gpt4o["input_modalities"] and gpt4o["output_modalities"] == ["text"]
    assert gpt4o["created"] == "2024-05-13"
    embedding = MODELS["openai/text-embedding-3-large"]
    assert (embedding["dimensions"], embedding["output_modalities"]) == (3072, ["embedding"])
    # Azure serves OpenAI's model: the dimensions come from OpenAI's entry, and say so.
    assert MODELS["azure/text-embedding-3-large"]["dimensions"] == 3072
    assert "openai: text-embedding-3-large" in MODELS["azure/text-embedding-3-large"]["facts"]["dimensions"]
    assert (MODELS["azure/gpt-4o-2024-05-13"]["created"], MODELS["azure/gpt-4o-2024-05-13"]["facts"]["created"]) == (
        "2024-05-13",
        "snapshot name",
    )


def test_release_dates_are_data_never_the_catalogs_date():
    dated = [m for m in CATALOG["models"] if m["created"]]
    assert len(dated) > 900
    assert all(date.fromisoformat(m["created"]) for m in dated)
    assert Counter(m["created"] for m in dated).most_common(1)[0][1] < 50  # no one date stands in for many


def test_every_price_and_variant_is_well_formed():
    for m in CATALOG["models"]:
        for price in m["prices"]:
            assert entries.rate_problems(price) == [], m["id"]
            assert entries.problems(price.get("variants", [])) == [], m["id"]


def test_price_variants_the_data_carries():
    kinds = Counter()
    for m in CATALOG["models"]:
        for variant in current(m).get("variants", []) if m["prices"] else []:
            when = entries.conditions(variant)
            kinds["time" if "time_from" in when else when.get("service_tier") or "region"] += 1
            kinds["region"] += "region" in when and "service_tier" in when
    assert kinds["batch"] > 200 and kinds["flex"] > 100 and kinds["priority"] > 100
    assert kinds["time"] >= 7 and kinds["region"] > 100

    # DeepSeek's off-peak hours: half price from 16:30 to 00:30 UTC.
    chat = current(MODELS["deepseek/deepseek-chat"])
    (window,) = chat["variants"]
    assert (chat["input"], window["time_from"], window["time_to"], window["input"]) == (
        "0.27",
        "16:30",
        "00:30",
        "0.135",
    )
    # Claude Sonnet 4.5 on Bedrock: genai-prices' price, with LiteLLM's >200k tier for the same base rates.
    sonnet = current(MODELS["bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"])
    assert (sonnet["input"], sonnet["tiers"][0]["above_input_tokens"], sonnet["tiers"][0]["input"]) == (
        "3.3",
        200000,
        "6.6",
    )
    assert sonnet["source"].startswith("genai-prices") and "litellm" in sonnet["source"] and "tiers" in sonnet["source"]
    # Azure's data zones: a US or EU deployment of gpt-4.1 costs 10% more.
    azure = current(MODELS["azure/gpt-4.1"])
    regions = {v["region"]: v["input"] for v in azure["variants"] if set(entries.conditions(v)) == {"region"}}
    assert regions == {"eu": "2.2", "us": "2.2"} and azure["input"] == "2"
    # A batch of gpt-5: genai-prices' variant, every rate given.
    batch = next(v for v in current(MODELS["openai/gpt-5"])["variants"] if v.get("service_tier") == "batch")
    assert (batch["input"], batch["output"], batch["cached_input"]) == ("0.625", "5", "0.0625")


# Through the API


async def test_models_show_facts_and_modalities_in_both_views(client, reader):
    model = (await client.get("/models/openai/gpt-4o", headers=reader)).json()
    assert model["input_modalities"] == MODELS["openai/gpt-4o"]["input_modalities"]
    assert model["facts"] == MODELS["openai/gpt-4o"]["facts"]
    openai = (await client.get("/v1/models/openai/gpt-4o", headers=reader)).json()
    assert openai["capabilities"] == {
        "vision": True,
        "function_calling": True,
        "reasoning": False,
        "prompt_caching": True,
        "structured_output": True,
        "input_modalities": model["input_modalities"],
        "output_modalities": ["text"],
    }
    assert (openai["created"], openai["facts"]) == (model["created"], model["facts"])
    assert model["created"] == calendar.timegm(date(2024, 5, 13).timetuple())


async def test_created_is_the_same_in_both_lists_and_never_the_import_time(client, reader, admin, scratch, conn_engine):
    # A model no source dates, imported now: created is 0, not the import time.
    at = datetime.now(UTC)
    undated = {
        "id": f"{scratch}/m",
        "provider": scratch,
        "name": "m",
        "type": "language",
        "prices": [{"effective_from": at.date().isoformat(), "input": "1", "output": "2", "source": "test"}],
    }
    async with conn_engine.begin() as conn:
        await import_catalog(
            conn, {"providers": [{"id": scratch, "name": "Test"}], "models": [undated]}, at=at, label="t"
        )
    await asyncio.to_thread(client.blocking_portal.call, client.app.state.catalog.refresh)
    assert (await client.get(f"/models/{scratch}/m", headers=reader)).json()["created"] == 0

    models = (await client.get("/models", headers=reader)).json()["models"]
    listed = {m["id"]: m["created"] for m in (await client.get("/v1/models", headers=reader)).json()["data"]}
    assert {m["id"]: m["created"] for m in models} == listed
    today = calendar.timegm(at.date().timetuple())
    assert not [model_id for model_id, created in listed.items() if created >= today]


async def test_an_operator_gives_modalities_and_owns_the_facts_given(client, admin, scratch):
    body = {"provider": scratch, "name": "m", "type": "language", "context_window": 8000}
    body |= {"input_modalities": ["text", "image"], "supports_vision": True}
    created = await client.put("/catalog/models", json=body, headers=admin)
    assert created.status_code in (200, 201), created.text
    model = (await client.get(f"/models/{scratch}/m", headers=admin)).json()
    assert (model["input_modalities"], model["output_modalities"], model["supports_vision"]) == (
        ["text", "image"],
        None,
        True,
    )
    assert model["facts"] == {"context_window": "operator", "vision": "operator", "input_modalities": "operator"}
    bad = await client.put("/catalog/models", json=body | {"input_modalities": ["Text!"]}, headers=admin)
    assert bad.status_code == 400
