"""Model resolution through the API: the same answer for usage, estimates, holds and the catalog reads, and the
provider that served a call deciding between copies of a model (tests/test_resolve.py has the rules' table)."""

import pytest

from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

SONNET_V2 = "anthropic.claude-3-5-sonnet-20241022-v2:0"


@pytest.fixture
async def reader(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read")}


@pytest.mark.parametrize(
    ("model", "provider", "expected", "rule"),
    [
        ("claude-3-5-sonnet-20241022", None, "anthropic/claude-3-5-sonnet", "match"),
        ("models/gemini-1.5-flash", None, "google/gemini-1.5-flash", "alias"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", None, f"bedrock/{SONNET_V2}", "match"),
        ("llama3.1:8b", None, "ollama/llama3.1", "ollama_tag"),
        ("deepseek/deepseek-chat", None, "deepseek/deepseek-chat", "id"),
        ("deepseek/deepseek-chat", "openrouter", "openrouter/deepseek/deepseek-chat", "name"),
        ("GPT-4O", "OpenAI", "openai/gpt-4o", "alias"),
    ],
)  # fmt: skip
async def test_resolve_says_which_model_and_why(client, reader, model, provider, expected, rule):
    params = {"model": model} | ({"provider": provider} if provider else {})
    response = await client.get("/models/resolve", params=params, headers=reader)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["rule"], body["query"], body["provider_hint"]) == (expected, rule, model, provider)
    assert body["details"]["id"] == expected and "upstream" not in body["details"]
    # Retrieved by that name, a model answers the name asked for as `id` and its own id as `root`.
    one = await client.get(f"/v1/models/{model}", params={"provider": provider} if provider else {}, headers=reader)
    assert one.status_code == 200 and one.json()["root"] == expected


async def test_unknown_names_and_hints_resolve_nothing(client, reader):
    for params in ({"model": "no-such-model-anywhere"}, {"model": "gpt-4o", "provider": "a-provider-we-lack"}):
        error = assert_error(await client.get("/models/resolve", params=params, headers=reader), 404, "model_not_found")
        assert error["param"] == "model"
    assert_error(await client.get("/models/resolve", headers=reader), 400, "validation_error")


async def test_the_provider_that_served_the_call_sets_the_price(client, admin, clock):
    """`deepseek/deepseek-chat` from OpenRouter is charged OpenRouter's price, not DeepSeek's direct one."""
    # At 10:00 UTC, outside DeepSeek's off-peak hours (16:30 to 00:30 UTC, half price).
    clock.advance(hours=(10 - clock.now().hour) % 24, minutes=-clock.now().minute)
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    call = {"account_id": "acme", "model": "deepseek/deepseek-chat", "input_tokens": 1_000_000, "output_tokens": 0}
    direct = await client.post("/usage", json={"event_id": "d", **call}, headers=admin)
    routed = await client.post("/usage", json={"event_id": "r", **call, "provider": "openrouter"}, headers=admin)
    assert (direct.status_code, routed.status_code) == (201, 201)
    # 1M input tokens: 0.27 USD direct, 0.2574 USD through OpenRouter; x 140 credits
    assert (direct.json()["model"], direct.json()["cost"]) == ("deepseek/deepseek-chat", "37.800000000")
    assert (routed.json()["model"], routed.json()["cost"]) == ("openrouter/deepseek/deepseek-chat", "36.036000000")
    assert routed.json()["reported_model"] == "deepseek/deepseek-chat" and routed.json()["provider"] == "openrouter"
    # Estimates and holds resolve alike.
    estimate = await client.post(
        "/estimate", json={"model": "deepseek/deepseek-chat", "provider": "openrouter", "input_tokens": 1_000_000},
        headers=admin,
    )  # fmt: skip
    assert (
        estimate.json()["model"] == "openrouter/deepseek/deepseek-chat" and estimate.json()["credits"] == "36.036000000"
    )
    # A provider the catalog does not have: the call waits unrated rather than take another provider's price.
    unknown = await client.post("/usage", json={"event_id": "u", **call, "provider": "fireworks"}, headers=admin)
    assert unknown.status_code == 202 and unknown.json()["unrated_reason"] == "model_not_found"


async def test_operator_alias_errors(client, admin, scratch):
    model = f"{scratch}/m"
    created = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin
    )
    assert created.status_code == 200

    async def add(body: dict):
        return await client.post("/catalog/aliases", json=body, headers=admin)

    assert (await add({"alias": f"{scratch}-x", "model": model})).status_code == 201
    assert (await add({"alias": f"{scratch}-x", "model": model})).status_code == 200  # the same alias again
    assert_error(await add({"alias": f"{scratch}-x", "model": "openai/gpt-4o"}), 409, "alias_taken")
    assert_error(await add({"alias": f"{scratch.upper()}-X", "model": model}), 409, "alias_taken")
    assert_error(await add({"alias": "openai/gpt-4o", "model": model}), 409, "alias_taken")
    assert_error(await add({"alias": f"{scratch}-y", "model": "no-such-model-anywhere"}), 404, "model_not_found")
    assert_error(await add({"alias": f"{scratch}-y", "model": model, "provider": "nope"}), 404, "provider_not_found")
    assert_error(await add({"alias": "", "model": model}), 400, "validation_error")
    assert_error(await add({"alias": f"{scratch}-y", "model": model, "colour": "red"}), 400, "validation_error")
    # Only an operator's alias is deleted; the catalog's come back with every import anyway.
    assert_error(await client.delete("/catalog/aliases/gpt-4o-2024-08-06", headers=admin), 409, "alias_from_catalog")
    assert_error(await client.delete(f"/catalog/aliases/{scratch}-none", headers=admin), 404, "alias_not_found")
    assert (await client.delete(f"/catalog/aliases/{scratch}-x", headers=admin)).status_code == 204
    assert_error(
        await client.get("/models/resolve", params={"model": f"{scratch}-x"}, headers=admin), 404, "model_not_found"
    )
