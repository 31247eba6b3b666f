"""Usage events, estimates and holds carrying the provider's own usage object: each is charged exactly what
the same usage costs in token fields, and the stored event keeps the object beside its counts.

The objects are built with the `openai` and `anthropic` SDKs' own types (dumped as their APIs send them),
and written as recorded Gemini (`usageMetadata`) and Bedrock Converse (`usage`) answers."""

from decimal import Decimal

import pytest
from anthropic.types import CacheCreation
from anthropic.types import Usage as AnthropicUsage
from openai.types import CompletionUsage
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.responses import ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

OPENAI_CHAT = CompletionUsage(
    prompt_tokens=2006,
    completion_tokens=300,
    total_tokens=2306,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=1920, audio_tokens=0),
    completion_tokens_details=CompletionTokensDetails(reasoning_tokens=0, audio_tokens=0),
).model_dump()
OPENAI_RESPONSES = ResponseUsage(
    input_tokens=2006,
    input_tokens_details=InputTokensDetails(cached_tokens=1920, cache_write_tokens=0),
    output_tokens=300,
    output_tokens_details=OutputTokensDetails(reasoning_tokens=120),
    total_tokens=2306,
).model_dump()
# Anthropic's input_tokens leaves out cache reads and writes: 5000 + 4000 + 3000 = 12000 prompt tokens.
ANTHROPIC = AnthropicUsage(
    input_tokens=5000,
    cache_read_input_tokens=4000,
    cache_creation_input_tokens=3000,
    cache_creation=CacheCreation(ephemeral_5m_input_tokens=3000, ephemeral_1h_input_tokens=0),
    output_tokens=2000,
).model_dump()
# Gemini's thoughts are outside candidatesTokenCount: 700 + 300 = 1000 output tokens, 300 of them reasoning.
GEMINI = {
    "promptTokenCount": 10_000,
    "cachedContentTokenCount": 4_000,
    "candidatesTokenCount": 700,
    "thoughtsTokenCount": 300,
    "totalTokenCount": 11_000,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10_000}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 4_000}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 700}],
}
# The same, as the google-genai SDK's `response.usage_metadata.model_dump()` writes it.
GEMINI_SDK = {
    "prompt_token_count": 10_000,
    "cached_content_token_count": 4_000,
    "candidates_token_count": 700,
    "thoughts_token_count": 300,
    "total_token_count": 11_000,
    "tool_use_prompt_token_count": None,
    "prompt_tokens_details": [{"modality": "TEXT", "token_count": 10_000}],
    "cache_tokens_details": None,
    "candidates_tokens_details": None,
    "traffic_type": None,
}
# Bedrock Converse: inputTokens leaves out cache reads and writes, as Anthropic's does.
BEDROCK = {
    "inputTokens": 5000,
    "outputTokens": 2000,
    "totalTokens": 14000,
    "cacheReadInputTokens": 4000,
    "cacheWriteInputTokens": 3000,
    "cacheDetails": [{"ttl": "5m", "inputTokens": 3000}],
}

CASES = [
    # (model, provider, usage object, format, the same usage in token fields)
    ("gpt-4o-2024-08-06", "openai", OPENAI_CHAT, "openai",
     {"input_tokens": 2006, "cached_input_tokens": 1920, "output_tokens": 300}),
    ("gpt-4o", None, OPENAI_RESPONSES, "openai-responses",
     {"input_tokens": 2006, "cached_input_tokens": 1920, "output_tokens": 300, "reasoning_tokens": 120}),
    ("claude-sonnet-4-5-20250929", "anthropic", ANTHROPIC, "anthropic",
     {"input_tokens": 12_000, "cached_input_tokens": 4000, "cache_write_tokens": 3000, "output_tokens": 2000}),
    ("google/gemini-2.5-pro", "google", GEMINI, "gemini",
     {"input_tokens": 10_000, "cached_input_tokens": 4000, "output_tokens": 1000, "reasoning_tokens": 300}),
    ("gemini-2.5-pro", "gemini", GEMINI_SDK, "gemini",
     {"input_tokens": 10_000, "cached_input_tokens": 4000, "output_tokens": 1000, "reasoning_tokens": 300}),
    ("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock", BEDROCK, "bedrock",
     {"input_tokens": 12_000, "cached_input_tokens": 4000, "cache_write_tokens": 3000, "output_tokens": 2000}),
]  # fmt: skip
# The costs, worked by hand (credits = USD x 1.4 x 100):
COSTS = [
    "0.786100000",  # (86 x 2.5 + 1920 x 1.25 + 300 x 10) / 1e6 = 0.005615 USD
    "0.786100000",  # the same call; reasoning is billed as output
    "8.043000000",  # (5000 x 3 + 4000 x 0.3 + 3000 x 3.75 + 2000 x 15) / 1e6 = 0.05745 USD
    "2.520000000",  # (6000 x 1.25 + 4000 x 0.125 + 1000 x 10) / 1e6 = (7500 + 500 + 10000) / 1e6 = 0.018 USD
    "2.520000000",  # the same call, reported by the google-genai SDK
    "8.043000000",  # Bedrock's Claude 3.5 Sonnet v2 is priced like Anthropic's Sonnet above
]


@pytest.fixture
async def acme(client, admin) -> str:
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    assert (await client.post("/accounts/acme/grants", json={"amount": "1000"}, headers=admin)).status_code == 201
    return "acme"


def with_provider(body: dict, provider: str | None) -> dict:
    return body if provider is None else body | {"provider": provider}


@pytest.mark.parametrize(("case", "cost"), list(zip(CASES, COSTS, strict=True)), ids=[c[3] for c in CASES])
async def test_usage_object_costs_what_token_fields_cost(client, admin, acme, conn_engine, case, cost):
    model, provider, usage, usage_format, fields = case
    base = with_provider({"account_id": "acme", "model": model}, provider)
    twin = await client.post("/usage", json=base | {"event_id": "fields", **fields}, headers=admin)
    assert twin.status_code == 201, twin.text
    stated = await client.post(
        "/usage", json=base | {"event_id": "stated", "usage": usage, "usage_format": usage_format}, headers=admin
    )
    assert stated.status_code == 201, stated.text
    event = stated.json()
    assert event["cost"] == twin.json()["cost"] == cost
    assert event["upstream_cost_usd"] == twin.json()["upstream_cost_usd"]
    counted = {name: event[name] for name in fields}
    assert counted == fields
    # The object is stored with the event, as sent, and explains the charge.
    assert (event["usage"], event["usage_format"]) == (usage, usage_format)
    listed = (await client.get("/usage", params={"status": "charged"}, headers=admin)).json()["data"]
    assert [e["usage"] for e in listed if e["event_id"] == "stated"] == [usage]
    # Without `usage_format` the object's shape tells it.
    shaped = await client.post("/usage", json=base | {"event_id": "shaped", "usage": usage}, headers=admin)
    assert shaped.status_code == 201 and shaped.json()["cost"] == cost and shaped.json()["usage_format"] == usage_format
    # A retry with the object replays; with other counts it is another payload.
    retry = await client.post(
        "/usage", json=base | {"event_id": "stated", "usage": usage, "usage_format": usage_format}, headers=admin
    )
    assert retry.status_code == 200 and retry.json()["cost"] == cost
    # Estimates and holds read the object alike.
    estimate = await client.post(
        "/estimate", json=with_provider({"model": model, "usage": usage}, provider), headers=admin
    )
    assert estimate.status_code == 200 and estimate.json()["credits"] == cost
    hold = await client.post(
        "/authorizations", json=base | {"usage": usage, "usage_format": usage_format}, headers=admin
    )
    assert hold.status_code == 201 and hold.json()["amount"] == cost
    await assert_reconciled(conn_engine)


async def test_a_batch_of_usage_objects(client, admin, acme, conn_engine):
    events = [
        with_provider({"event_id": f"b{i}", "account_id": "acme", "model": model, "usage": usage}, provider)
        for i, (model, provider, usage, _, _) in enumerate(CASES)
    ]
    events.append({"event_id": "bad", "account_id": "acme", "model": "gpt-4o", "usage": {"prompt_tokens": -1}})
    response = await client.post("/usage/batch", json={"events": events}, headers=admin)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r.get("event", {}).get("cost") for r in results[:-1]] == COSTS
    assert results[-1]["status"] == "error" and results[-1]["error"]["param"] == "usage.prompt_tokens"
    await assert_reconciled(conn_engine)


async def test_malformed_usage_objects_are_refused_naming_the_field(client, admin, acme):
    cases = [
        ({"prompt_tokens": 10, "completion_tokens": "5"}, None, "usage.completion_tokens"),
        ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}, None, "cached_input_tokens"),
        ({"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 5,
          "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 1}}, "anthropic", "usage"),
        ({"promptTokenCount": True}, "gemini", "usage.promptTokenCount"),
        ({"inputTokens": 1}, "bedrock", "usage.outputTokens"),
        ({"prompt_tokens": 10}, "gemini", "usage"),
        ({}, None, "usage"),
    ]  # fmt: skip
    for usage, usage_format, param in cases:
        body = {"event_id": "x", "account_id": "acme", "model": "gpt-4o", "usage": usage}
        if usage_format:
            body["usage_format"] = usage_format
        error = assert_error(await client.post("/usage", json=body, headers=admin), 400, "validation_error")
        assert error["param"].startswith(param), (usage, error)
        call = {key: body[key] for key in ("model", "usage", "usage_format") if key in body}
        estimate = await client.post("/estimate", json=call, headers=admin)
        assert estimate.status_code == 400, (usage, estimate.text)
    assert (await client.get("/usage", headers=admin)).json()["data"] == []
    assert Decimal((await client.get("/accounts/acme/balance", headers=admin)).json()["balance"]) == 1000
