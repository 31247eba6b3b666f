import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai
import pytest
from sqlalchemy import text

from app.catalog import repository as catalog_repository
from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

CPU = Decimal(100)  # CREDITS_PER_USD default
REQUIRED_PROVIDERS = {
    "openai", "anthropic", "google", "vertex", "cohere", "openrouter", "cerebras", "featherless", "azure", "ollama",
}  # fmt: skip


def exact_json(response) -> dict:
    """JSON with numbers as Decimal, so a rate is compared digit for digit."""
    return json.loads(response.content, parse_float=Decimal, parse_int=Decimal)


@pytest.fixture
async def reader(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read")}


@pytest.fixture
async def finance(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read", "ledger:read")}


async def test_every_listed_rate_is_upstream_times_margin_times_credits(client, finance):
    body = exact_json(await client.get("/models", headers=finance))
    models = body["models"]
    assert body["total"] == len(models) >= 300
    assert {m["provider"] for m in models} >= REQUIRED_PROVIDERS
    assert len({m["provider"] for m in models}) >= 8
    priced = [m for m in models if m["priced"]]
    assert len(priced) >= 300
    for model in priced:
        up, margin, pricing = model["upstream"], Decimal(model["margin"]), model["pricing"]
        for kind in ("input", "output", "cached_input", "cache_write", "per_request"):
            if up[kind] is not None:
                assert Decimal(pricing[kind]) == Decimal(up[kind]) * margin * CPU, (model["id"], kind)
        assert model["input_cost_per_1m_tokens"] == Decimal(up["input"]) * margin * CPU
        assert model["cost_per_1k_input"] * 1000 == model["input_cost_per_1m_tokens"]
        if model["type"] == "language":
            assert model["output_cost_per_1m_tokens"] == Decimal(up["output"]) * margin * CPU
        for tier, up_tier in zip(pricing["tiers"], up["tiers"], strict=True):
            if up_tier["input"] is not None:
                assert Decimal(tier["input"]) == Decimal(up_tier["input"]) * margin * CPU


async def test_known_prices(client, finance):
    gpt4o = exact_json(await client.get("/models/openai/gpt-4o", headers=finance))
    assert (gpt4o["upstream"]["input"], gpt4o["upstream"]["output"], gpt4o["upstream"]["cached_input"]) == (
        "2.5",
        "10",
        "1.25",
    )
    assert gpt4o["input_cost_per_1m_tokens"] == 350 and gpt4o["output_cost_per_1m_tokens"] == 1400
    assert gpt4o["pricing"]["cached_input"] == "175" and gpt4o["margin"] == "1.4"
    ollama = [
        m for m in exact_json(await client.get("/models", params={"provider": "ollama"}, headers=finance))["models"]
    ]
    assert ollama and all(m["priced"] and m["input_cost_per_1m_tokens"] == 0 for m in ollama)
    gemini = exact_json(await client.get("/models/google/gemini-2.5-pro", headers=finance))
    assert gemini["pricing"]["tiers"][0]["above_input_tokens"] == 200000


async def test_upstream_and_margin_only_for_finance_keys(client, reader, finance, admin):
    plain = (await client.get("/models/openai/gpt-4o", headers=reader)).json()
    assert "upstream" not in plain and "margin" not in plain
    listed = (await client.get("/models", headers=reader)).text
    assert '"upstream"' not in listed and '"margin"' not in listed
    for headers in (finance, admin):
        seen = (await client.get("/models/openai/gpt-4o", headers=headers)).json()
        assert seen["upstream"]["input"] == "2.5" and seen["margin"] == "1.4"
    v1 = (await client.get("/v1/models/openai/gpt-4o", headers=reader)).json()
    assert "upstream" not in v1


@pytest.mark.parametrize(
    "path",
    [
        "/models/openai/gpt-4o",
        "/models/openai%2Fgpt-4o",
        "/models/openai%2fgpt-4o",
        "/models/gpt-4o",
        "/models/gpt-4o-2024-08-06",
        "/v1/models/openai/gpt-4o",
        "/v1/models/openai%2Fgpt-4o",
        "/v1/models/gpt-4o",
    ],
)
async def test_model_ids_raw_encoded_and_aliases(client, reader, path):
    response = await client.get(path, headers=reader)
    assert response.status_code == 200, response.text
    body = response.json()
    # By another name than its id: `id` is the name asked for and `root` the model's id, as OpenAI answers.
    asked = path.split("/models/", 1)[1].replace("%2F", "/").replace("%2f", "/")
    assert body["id"] == asked
    assert body.get("root", body["id"]) == "openai/gpt-4o"


async def test_router_ids_with_two_slashes(client, reader):
    listed = (await client.get("/models", params={"provider": "openrouter"}, headers=reader)).json()["models"]
    model_id = listed[0]["id"]
    assert model_id.count("/") >= 2
    assert (await client.get(f"/models/{model_id}", headers=reader)).json()["id"] == model_id


async def test_unknown_model(client, reader):
    for path in ("/models/openai/gpt-17", "/v1/models/nope", "/models/embedding/openai/gpt-17"):
        assert_error(await client.get(path, headers=reader), 404, "model_not_found")
    assert_error(await client.get("/models/embedding/openai/gpt-4o", headers=reader), 404, "model_not_found")


async def test_filters(client, reader):
    async def models(**params):
        return (await client.get("/models", params=params, headers=reader)).json()["models"]

    anthropic = await models(provider="anthropic")
    assert anthropic and {m["provider"] for m in anthropic} == {"anthropic"}
    embeddings = await models(type="embedding")
    assert embeddings and {m["type"] for m in embeddings} == {"embedding"}
    tools = await models(supports_tools="true", provider="openai")
    assert tools and all(m["supports_tools"] for m in tools)
    no_vision = await models(supports_vision="false", type="language")
    assert no_vision and not any(m["supports_vision"] for m in no_vision)
    assert await models(provider="no-such-provider") == []
    assert_error(await client.get("/models", params={"type": "image"}, headers=reader), 400, "validation_error")
    assert_error(
        await client.get("/models", params={"supports_tools": "maybe"}, headers=reader), 400, "validation_error"
    )


async def test_providers(client, reader):
    providers = {p["id"]: p for p in (await client.get("/models/providers", headers=reader)).json()["providers"]}
    assert set(providers) >= REQUIRED_PROVIDERS
    openai_ = providers["openai"]
    assert openai_["configured"] is True
    assert openai_["model_count"] == openai_["language_models"] + openai_["embedding_models"] > 0


async def test_embedding_models(client, reader):
    body = (await client.get("/models/embedding", headers=reader)).json()
    models = {m["id"]: m for m in body["models"]}
    assert body["total"] == len(models) and {m["type"] for m in models.values()} == {"embedding"}
    expected = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
    for name, dimensions in expected.items():
        model = models[f"openai/{name}"]
        assert model["dimensions"] == dimensions and model["max_input_tokens"] == 8191
    assert any(m["provider"] == "cohere" for m in models.values())
    assert any("bge" in m["id"] for m in models.values())
    one = (await client.get("/models/embedding/openai%2Ftext-embedding-3-large", headers=reader)).json()
    assert one["dimensions"] == 3072


async def test_openai_shaped_list(client, reader):
    body = (await client.get("/v1/models", headers=reader)).json()
    assert body["object"] == "list" and len(body["data"]) >= 300
    first = body["data"][0]
    assert first["object"] == "model" and isinstance(first["created"], int) and first["owned_by"]


async def test_official_openai_sdk(client, reader):
    sdk = openai.AsyncOpenAI(api_key=reader["X-API-Key"], base_url="http://testserver.local/v1", http_client=client)
    page = await sdk.models.list()
    ids = [model.id for model in page.data]
    assert "openai/gpt-4o" in ids and len(ids) >= 300
    model = await sdk.models.retrieve("openai/gpt-4o")
    assert (model.id, model.object, model.owned_by) == ("openai/gpt-4o", "model", "openai")
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            api_key="cmk_wrong", base_url="http://testserver.local/v1", http_client=client
        ).models.list()
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("openai/gpt-17")


async def test_etag_and_304(client, reader, admin, scratch):
    first = await client.get("/models", headers=reader)
    etag = first.headers["etag"]
    again = await client.get("/models", headers={**reader, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    model = {"provider": scratch, "name": "m1", "type": "language"}
    assert (await client.put("/catalog/models", json=model, headers=admin)).status_code == 200
    changed = await client.get("/models", headers={**reader, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert f"{scratch}/m1" in changed.text


async def test_disabled_provider(client, reader, admin, scratch):
    await client.put("/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin)
    assert (await client.get(f"/models/{scratch}/m", headers=reader)).status_code == 200
    response = await client.patch(f"/catalog/providers/{scratch}", json={"enabled": False}, headers=admin)
    assert response.status_code == 200 and response.json()["configured"] is False
    error = assert_error(await client.get(f"/models/{scratch}/m", headers=reader), 404, "provider_not_configured")
    assert f"{scratch}/m" in error["message"]
    # As OpenAI types them: the request named a model this service cannot serve.
    assert error["type"] == "invalid_request_error"
    error = assert_error(await client.get(f"/v1/models/{scratch}/m", headers=reader), 404, "provider_not_configured")
    assert error["type"] == "invalid_request_error"
    assert f"{scratch}/m" not in (await client.get("/models", headers=reader)).text
    providers = (await client.get("/models/providers", headers=reader)).json()["providers"]
    assert {p["id"]: p["configured"] for p in providers}[scratch] is False
    await client.patch(f"/catalog/providers/{scratch}", json={"enabled": True}, headers=admin)
    assert (await client.get(f"/models/{scratch}/m", headers=reader)).status_code == 200


async def test_admin_prices_and_margins(client, admin, scratch, clock):
    model_id = f"{scratch}/m"
    body = {"provider": scratch, "name": "m", "type": "language", "aliases": [f"{scratch}-alias"]}
    created = (await client.put("/catalog/models", json=body, headers=admin)).json()
    assert created["priced"] is False and created["pricing"] is None and created["aliases"] == [f"{scratch}-alias"]

    price = await client.post("/catalog/prices", json={"model": model_id, "input": "2", "output": "8"}, headers=admin)
    assert price.status_code == 201 and price.json()["input"] == "2"
    view = (await client.get(f"/models/{scratch}-alias", headers=admin)).json()
    assert view["priced"] and view["pricing"]["input"] == "280" and view["margin"] == "1.4"

    # Provider margin beats the default; a model margin beats the provider's.
    await client.put("/catalog/margins", json={"scope": "provider", "target": scratch, "margin": "2"}, headers=admin)
    assert (await client.get(f"/models/{model_id}", headers=admin)).json()["pricing"]["input"] == "400"
    await client.put("/catalog/margins", json={"scope": "model", "target": model_id, "margin": "1.1"}, headers=admin)
    assert (await client.get(f"/models/{model_id}", headers=admin)).json()["pricing"]["input"] == "220"
    # Ending the model override falls back to the provider's margin. A margin's history moves forward: the
    # next version starts after this one, at the app's (test) clock.
    clock.advance(seconds=1)
    response = await client.put(
        "/catalog/margins", json={"scope": "model", "target": model_id, "margin": None}, headers=admin
    )
    assert response.status_code == 201
    assert (await client.get(f"/models/{model_id}", headers=admin)).json()["pricing"]["input"] == "400"

    # A scheduled price is kept but not shown until it takes effect; history lists both.
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = {"model": model_id, "input": "3", "output": "9", "effective_from": later}
    assert (await client.post("/catalog/prices", json=scheduled, headers=admin)).status_code == 201
    assert (await client.get(f"/models/{model_id}", headers=admin)).json()["upstream"]["input"] == "2"
    history = (await client.get("/catalog/prices", params={"model": model_id}, headers=admin)).json()["data"]
    assert [p["input"] for p in history] == ["2", "3"]
    margins = (await client.get("/catalog/margins", headers=admin)).json()
    assert margins["default_margin"] == "1.4" and len([m for m in margins["margins"] if scratch in m["target"]]) == 3


async def test_admin_write_errors_change_nothing(client, admin, scratch):
    model_id = f"{scratch}/m"
    await client.put("/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin)

    async def price(**body):
        return await client.post(
            "/catalog/prices", json={"model": model_id, "input": "1", "output": "2"} | body, headers=admin
        )

    assert_error(await price(input="-1"), 400, "validation_error")
    assert_error(await price(output="NaN"), 400, "validation_error")
    assert_error(await price(model="nobody/none"), 404, "model_not_found")
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert_error(await price(effective_from=past), 400, "validation_error")
    assert_error(await price(tiers=[{"above_input_tokens": 5}, {"above_input_tokens": 5}]), 400, "validation_error")
    history = (await client.get("/catalog/prices", params={"model": model_id}, headers=admin)).json()["data"]
    assert history == []
    first = await price()
    assert first.status_code == 201
    # A version may not start at or before the latest one: that would rewrite history.
    assert_error(await price(effective_from=first.json()["effective_from"]), 409, "price_history_conflict")

    async def put_model(**body):
        return await client.put(
            "/catalog/models", json={"provider": scratch, "name": "x", "type": "language"} | body, headers=admin
        )

    assert_error(await put_model(provider="nope-provider"), 404, "provider_not_found")
    assert_error(await put_model(type="image"), 400, "validation_error")
    assert_error(await put_model(aliases=["gpt-4o"]), 409, "alias_taken")
    assert_error(await put_model(context_window=-5), 400, "validation_error")
    assert_error(
        await client.put("/catalog/margins", json={"scope": "model", "target": model_id, "margin": "0"}, headers=admin),
        400,
        "validation_error",
    )
    assert_error(
        await client.put(
            "/catalog/margins", json={"scope": "provider", "target": "nope", "margin": "2"}, headers=admin
        ),
        404,
        "provider_not_found",
    )
    assert_error(
        await client.post("/catalog/providers", json={"id": scratch, "name": "again"}, headers=admin),
        409,
        "provider_exists",
    )
    assert_error(
        await client.patch("/catalog/providers/nope", json={"enabled": False}, headers=admin), 404, "provider_not_found"
    )


async def test_catalog_writes_need_admin(client, finance):
    assert_error(await client.post("/catalog/import", headers=finance), 403, "insufficient_scope")
    assert_error(
        await client.put(
            "/catalog/models", json={"provider": "openai", "name": "x", "type": "language"}, headers=finance
        ),
        403,
        "insufficient_scope",
    )


async def test_import_is_idempotent(client, admin):
    result = (await client.post("/catalog/import", headers=admin)).json()
    assert result["models"] >= 300
    assert (result["models_changed"], result["prices_added"], result["aliases_added"]) == (0, 0, 0)


async def test_other_workers_see_writes_made_elsewhere(client, reader, scratch, conn_engine):
    """A write by another process (here: plain SQL) reaches this worker through LISTEN/NOTIFY."""
    async with conn_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO models (id, provider, name, display_name, type) "
                "VALUES (:id, :provider, 'sql', 'SQL', 'language')"
            ),
            {"id": f"{scratch}/sql", "provider": scratch},
        )
        await conn.execute(text(catalog_repository.CHANGED))  # what every catalog writer runs
    for _ in range(100):
        if (await client.get(f"/models/{scratch}/sql", headers=reader)).status_code == 200:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the change never reached the worker")
