"""POST /usage and /usage/batch: exact charges, validation, pricing at occurred_at, idempotency, overdraft."""

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.money import money
from app.pricing import Rates, Usage, credits_value, quote
from app.usage import service
from app.usage.endpoints import BATCHES
from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


GRANT = Decimal(100)
# The DESIGN example: (86 x 2.5 + 1920 x 1.25 + 300 x 10) / 1e6 = 0.005615 USD; x 1.4 x 100 = 0.7861 credits.
GPT4O = {"model": "gpt-4o", "input_tokens": 2006, "cached_input_tokens": 1920, "output_tokens": 300}
GPT4O_COST = Decimal("0.786100000")


def credits(value: Decimal | str) -> str:
    """An amount as the API writes it: 9 fractional digits."""
    return format(Decimal(value).quantize(Decimal("0.000000001")), "f")


def event(event_id: str, account_id: str | None = "acme", **fields) -> dict:
    body = {"event_id": event_id, **GPT4O, **fields}
    if account_id is not None:
        body["account_id"] = account_id
    return body


@pytest.fixture
async def writer(make_key) -> dict[str, str]:
    """A gateway's key: records usage, sees no upstream costs."""
    return {"X-API-Key": await make_key("usage:write")}


@pytest.fixture
async def finance(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("usage:write", "ledger:read")}


async def create_account(client, admin, account_id: str, grant: Decimal | None = GRANT, overdraft: str = "0") -> str:
    response = await client.post(
        "/accounts", json={"id": account_id, "name": account_id, "overdraft_limit": overdraft}, headers=admin
    )
    assert response.status_code == 201, response.text
    if grant:
        response = await client.post(f"/accounts/{account_id}/grants", json={"amount": str(grant)}, headers=admin)
        assert response.status_code == 201, response.text
    return account_id


@pytest.fixture
async def acme(client, admin) -> str:
    return await create_account(client, admin, "acme")


async def balance(client, admin, account_id: str = "acme") -> Decimal:
    response = await client.get(f"/accounts/{account_id}/balance", headers=admin)
    assert response.status_code == 200, response.text
    return Decimal(response.json()["balance"])


async def events(client, admin, **params) -> list[dict]:
    response = await client.get("/usage", params={"limit": 1000, **params}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def post(client, headers, body):
    return await client.post("/usage", json=body, headers=headers)


async def current_price_version(client, admin, model: str) -> int:
    return (await client.get(f"/models/{model}", headers=admin)).json()["pricing"]["price_version"]


# Charges


async def test_gpt4o_example(client, admin, finance, acme):
    response = await post(client, finance, event("e1", metadata={"request": "r-1"}))
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert body["cost"] == "0.786100000" and body["upstream_cost_usd"] == "0.005615000"
    assert body["margin"] == "1.4" and body["model"] == "openai/gpt-4o"  # the alias resolved
    assert body["price_version"] == await current_price_version(client, admin, "openai/gpt-4o")
    assert body["balance_after"] == credits(GRANT - GPT4O_COST) == "99.213900000"
    assert body.get("replay", False) is False and body["overdrawn"] is False
    assert (body["event_id"], body["account_id"], body["metadata"]) == ("e1", "acme", {"request": "r-1"})
    assert (body["input_tokens"], body["cached_input_tokens"], body["output_tokens"]) == (2006, 1920, 300)
    assert body["cache_write_tokens"] == body["reasoning_tokens"] == 0
    assert await balance(client, admin) == GRANT - GPT4O_COST
    assert [e["event_id"] for e in await events(client, admin)] == ["e1"]


async def test_upstream_cost_only_for_finance_keys(client, admin, writer, finance, acme):
    plain = await post(client, writer, event("e1"))
    assert plain.status_code == 201 and "upstream_cost_usd" not in plain.json()
    assert plain.json()["cost"] == "0.786100000"
    replayed = await post(client, writer, event("e1"))
    assert replayed.status_code == 200 and "upstream_cost_usd" not in replayed.json()
    batch = await client.post("/usage/batch", json={"events": [event("e1"), event("e2")]}, headers=writer)
    assert batch.status_code == 200 and "upstream_cost_usd" not in batch.text
    for headers in (finance, admin):
        seen = await post(client, headers, event("e1"))
        assert seen.status_code == 200 and seen.json()["upstream_cost_usd"] == "0.005615000"


async def test_embedding_bills_input_only(client, admin, finance, acme):
    # 1000 x 0.02 / 1e6 = 0.00002 USD; x 140 = 0.0028 credits
    body = {"event_id": "emb", "account_id": "acme", "model": "openai/text-embedding-3-small", "input_tokens": 1000}
    response = await post(client, finance, body)
    assert response.status_code == 201, response.text
    assert response.json()["cost"] == "0.002800000" and response.json()["upstream_cost_usd"] == "0.000020000"
    error = assert_error(
        await post(client, finance, body | {"event_id": "emb2", "output_tokens": 5}), 400, "validation_error"
    )
    assert error["param"] == "output_tokens"
    assert await balance(client, admin) == GRANT - Decimal("0.0028")


async def test_long_context_tier_is_a_cliff(client, admin, finance, acme):
    model = "google/gemini-2.5-pro"
    # At the threshold: 200000 x 1.25 + 1000 x 10 = 260000 -> 0.26 USD -> 36.4 credits
    at = await post(
        client, finance, event("at", model=model, input_tokens=200_000, cached_input_tokens=0, output_tokens=1000)
    )
    assert at.status_code == 201, at.text
    assert at.json()["cost"] == "36.400000000" and at.json()["upstream_cost_usd"] == "0.260000000"
    # One token above: the whole request at the tier's rates, 200001 x 2.5 + 1000 x 15 = 515002.5 -> 72.10035 credits
    above = await post(
        client, finance, event("above", model=model, input_tokens=200_001, cached_input_tokens=0, output_tokens=1000)
    )
    assert above.status_code == 201, above.text
    assert above.json()["cost"] == "72.100350000" and above.json()["upstream_cost_usd"] == "0.515002500"
    assert await balance(client, admin) == GRANT - Decimal("36.4") - Decimal("72.10035")


async def test_ollama_is_free_but_recorded(client, admin, finance, acme):
    body = {
        "event_id": "local",
        "account_id": "acme",
        "model": "ollama/llama3",
        "input_tokens": 5000,
        "output_tokens": 700,
    }
    response = await post(client, finance, body)
    assert response.status_code == 201, response.text
    assert response.json()["cost"] == "0.000000000" and response.json()["upstream_cost_usd"] == "0.000000000"
    assert response.json()["balance_after"] == credits(GRANT)
    assert await balance(client, admin) == GRANT
    assert [e["model"] for e in await events(client, admin)] == ["ollama/llama3"]


async def test_cache_write_and_reasoning_are_billed(client, finance, acme):
    # 10000 input = 1000 uncached + 6000 cache reads + 3000 cache writes; 500 output, 200 of them reasoning
    # (billed as output, not on top): 1000 x 3 + 6000 x 0.3 + 3000 x 3.75 + 500 x 15 = 23550 -> 0.02355 USD
    # -> 3.297 credits
    body = event("r", model="anthropic/claude-sonnet-4-5", input_tokens=10_000, cached_input_tokens=6000)
    body |= {"cache_write_tokens": 3000, "output_tokens": 500, "reasoning_tokens": 200}
    response = await post(client, finance, body)
    assert response.status_code == 201, response.text
    assert response.json()["cost"] == "3.297000000" and response.json()["upstream_cost_usd"] == "0.023550000"
    assert (response.json()["cache_write_tokens"], response.json()["reasoning_tokens"]) == (3000, 200)


async def test_token_counts_are_integers_on_both_endpoints(client, admin, finance, acme):
    """The same event is accepted or refused alike by POST /usage and POST /usage/batch: a count is a
    JSON integer; a string of digits, a float (even 2006.0) or anything else is refused, naming the field."""
    for value in ("2006", "2.006e3", 2006.0, "2006 tokens"):
        bad = event("x", input_tokens=value)
        single = await post(client, finance, bad)
        batch = await client.post("/usage/batch", json={"events": [bad]}, headers=finance)
        result = batch.json()["results"][0]
        assert (single.status_code, result["status"]) == (400, "error"), (single.text, batch.text)
        assert single.json()["error"]["param"] == result["error"]["param"] == "input_tokens"
    single = await post(client, finance, event("s", input_tokens=2006))
    batch = await client.post("/usage/batch", json={"events": [event("b", input_tokens=2006)]}, headers=finance)
    assert (single.status_code, batch.json()["results"][0]["status"]) == (201, "created"), (single.text, batch.text)
    assert sorted(e["event_id"] for e in await events(client, admin)) == ["b", "s"]


# Validation: a 4xx with the error shape, and nothing recorded


NO_TOKENS = {"input_tokens": None, "output_tokens": None, "cached_input_tokens": None}
INVALID = [
    # (changed fields, status, code, the field the error names)
    # Usage of an unknown model is kept unrated (tests/test_unrated.py), unless it settles a hold, which was priced.
    ({"model": "nobody/no-such-model", "authorization_id": "auth_x"}, 404, "model_not_found", "model"),
    ({"cached_input_tokens": 2007}, 400, "validation_error", "cached_input_tokens"),
    ({"cache_write_tokens": 100}, 400, "validation_error", "cache_write_tokens"),
    ({"output_tokens": 10, "reasoning_tokens": 11}, 400, "validation_error", "reasoning_tokens"),
    ({"input_tokens": -1, "cached_input_tokens": 0}, 400, "validation_error", "input_tokens"),
    ({"output_tokens": -5}, 400, "validation_error", "output_tokens"),
    ({"cached_input_tokens": -5}, 400, "validation_error", "cached_input_tokens"),
    ({"input_tokens": 2**63, "cached_input_tokens": 0}, 400, "validation_error", "input_tokens"),
    ({"input_tokens": "many"}, 400, "validation_error", "input_tokens"),
    ({"input_tokens": 20.5}, 400, "validation_error", "input_tokens"),
    ({"input_tokens": None}, 400, "validation_error", "input_tokens"),
    ({"model": None}, 400, "validation_error", "model"),
    ({"occurred_at": "2026-01-01T00:00:00"}, 400, "validation_error", "occurred_at"),  # naive
    ({"occurred_at": "yesterday"}, 400, "validation_error", "occurred_at"),
    ({"account_id": "ghost"}, 404, "account_not_found", "account_id"),
    ({"colour": "red"}, 400, "validation_error", "colour"),
    ({"metadata": {"a": {"b": "c"}}}, 400, "validation_error", "metadata"),
    ({"metadata": {"a": 1}}, 400, "validation_error", "metadata"),
    ({"metadata": ["a"]}, 400, "validation_error", "metadata"),
    ({"metadata": {"": "empty key"}}, 400, "validation_error", "metadata"),
    ({"metadata": {f"k{i}": "v" for i in range(51)}}, 400, "validation_error", "metadata"),
    ({"event_id": ""}, 400, "validation_error", "event_id"),
    ({"event_id": "x" * 201}, 400, "validation_error", "event_id"),
    ({"event_id": None}, 400, "validation_error", "event_id"),
    # Token fields or the provider's usage object, not both; the object is checked field by field.
    ({"usage": {"prompt_tokens": 2006, "completion_tokens": 300}}, 400, "validation_error", "input_tokens"),
    ({**NO_TOKENS, "usage": {"prompt_tokens": "2006"}}, 400, "validation_error", "usage.prompt_tokens"),
    ({**NO_TOKENS, "usage": {"prompt_tokens": 2006.0}}, 400, "validation_error", "usage.prompt_tokens"),
    ({**NO_TOKENS, "usage": {"prompt_tokens": 1, "prompt_tokens_details": []}}, 400, "validation_error", "usage"),
    ({**NO_TOKENS, "usage": {"input_tokens": 5}, "usage_format": "cobol"}, 400, "validation_error", "usage_format"),
    ({**NO_TOKENS, "usage": {"tokens": 5}}, 400, "validation_error", "usage"),
    ({**NO_TOKENS, "usage": ["prompt_tokens"]}, 400, "validation_error", "usage"),
    ({**NO_TOKENS, "usage": {"prompt_tokens": 1, "padding": "x" * 9000}}, 400, "validation_error", "usage"),
    ({"usage_format": "openai"}, 400, "validation_error", "usage_format"),
    ({"provider": ""}, 400, "validation_error", "provider"),
]


async def test_invalid_events_record_nothing(client, admin, finance, acme):
    for fields, status, code, param in INVALID:
        body = {k: v for k, v in (event("bad") | fields).items() if v is not None}
        response = await post(client, finance, body)
        assert response.status_code == status, (fields, response.text)
        error = assert_error(response, status, code)
        assert error.get("param") == param or param in error["message"], (fields, error)
    assert await events(client, admin) == []
    assert await balance(client, admin) == GRANT


async def test_occurred_at_in_the_future(client, admin, finance, clock, acme):
    ahead = (clock.now() + timedelta(minutes=2)).isoformat()
    error = assert_error(await post(client, finance, event("future", occurred_at=ahead)), 400, "validation_error")
    assert error["param"] == "occurred_at" and "future" in error["message"]
    assert await events(client, admin) == []
    # Within the minute of clock skew allowed to reporters, it is accepted.
    skewed = clock.now() + timedelta(seconds=30)
    response = await post(client, finance, event("skewed", occurred_at=skewed.isoformat()))
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["occurred_at"]) == skewed


async def test_unpriced_model_waits_unrated(client, admin, finance, acme, scratch):
    """Never priced at 0 and never refused: usage of a model without a price is kept, uncharged."""
    created = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin
    )
    assert created.status_code == 200 and created.json()["priced"] is False
    response = await post(client, finance, event("u", model=f"{scratch}/m"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["unrated_reason"], body["model"]) == ("unrated", "model_unpriced", f"{scratch}/m")
    assert body["cost"] is body["balance_after"] is body["price_version"] is None
    # A price known for input only is still no price for a language model: a retry finds it still waiting.
    await client.post("/catalog/prices", json={"model": f"{scratch}/m", "input": "1"}, headers=admin)
    retry = await post(client, finance, event("u", model=f"{scratch}/m"))
    assert retry.status_code == 200 and retry.json()["status"] == "unrated" and retry.json()["replay"] is True
    assert [e["status"] for e in await events(client, admin)] == ["unrated"]
    assert await balance(client, admin) == GRANT


async def test_event_before_the_first_price_is_priced_with_it(client, admin, finance, acme):
    """A dataset dates a price from when it was recorded: older usage is charged the earliest known price."""
    now = await post(client, finance, event("now"))
    old = await post(client, finance, event("old", occurred_at="2001-01-01T00:00:00Z"))
    assert old.status_code == 201, old.text
    # gpt-4o's later versions add service-tier variants; its base rates are the same throughout.
    history = (await client.get("/catalog/prices", params={"model": "gpt-4o"}, headers=admin)).json()["data"]
    assert now.json()["price_version"] == history[-1]["id"]
    assert (old.json()["price_version"], old.json()["cost"]) == (history[0]["id"], now.json()["cost"])


async def test_unbound_key_needs_an_account(client, admin, finance, acme):
    error = assert_error(await post(client, finance, event("x", account_id=None)), 400, "validation_error")
    assert error["param"] == "account_id"
    assert await events(client, admin) == []


async def test_account_bound_key(client, admin, make_key, acme):
    await create_account(client, admin, "other")
    bound = {"X-API-Key": await make_key("usage:write", account_id="acme")}
    implied = await post(client, bound, event("mine", account_id=None))
    assert implied.status_code == 201 and implied.json()["account_id"] == "acme"
    explicit = await post(client, bound, event("mine2"))
    assert explicit.status_code == 201 and explicit.json()["account_id"] == "acme"
    error = assert_error(await post(client, bound, event("theirs", account_id="other")), 404, "account_not_found")
    assert "other" in error["message"]
    batch = await client.post("/usage/batch", json={"events": [event("theirs2", account_id="other")]}, headers=bound)
    assert batch.status_code == 200 and batch.json()["results"][0]["error"]["code"] == "account_not_found"
    assert await events(client, admin, account_id="other") == []
    assert await balance(client, admin, "other") == GRANT
    assert await balance(client, admin) == GRANT - 2 * GPT4O_COST


async def test_scopes(client, make_key, acme):
    reader = {"X-API-Key": await make_key("catalog:read", "ledger:read")}
    assert_error(await post(client, reader, event("x")), 403, "insufficient_scope")
    assert_error(
        await client.post("/usage/batch", json={"events": [event("x")]}, headers=reader), 403, "insufficient_scope"
    )
    assert_error(await post(client, {}, event("x")), 401, "invalid_api_key")


async def test_nul_characters_are_a_validation_error(client, admin, finance, acme):
    """PostgreSQL text and jsonb cannot hold U+0000: such an event is a 400, not a 500, and in a batch
    it fails alone."""
    bodies = {
        "metadata value": event("nul", metadata={"k": "a\u0000b"}),
        "metadata key": event("nul", metadata={"k\u0000": "v"}),
        "event_id": event("n\u0000ul"),
        "authorization_id": event("nul", authorization_id="a\u0000"),
    }
    seen = {}
    for where, body in bodies.items():
        single = await post(client, finance, body)
        batch = await client.post("/usage/batch", json={"events": [body, event(f"fine-{where}")]}, headers=finance)
        statuses = [r["status"] for r in batch.json()["results"]] if batch.status_code == 200 else None
        seen[where] = (single.status_code, single.json().get("error", {}).get("code"), batch.status_code, statuses)
    expected = {where: (400, "validation_error", 200, ["error", "created"]) for where in bodies}
    assert seen == expected
    assert sorted(e["event_id"] for e in await events(client, admin)) == sorted(f"fine-{w}" for w in bodies)


# Pricing at occurred_at


async def test_priced_by_the_version_and_margin_in_effect_at_occurred_at(client, admin, finance, clock, scratch):
    await create_account(client, admin, "acme", grant=Decimal(10_000))
    model = f"{scratch}/m"
    await client.put("/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin)
    v1 = (
        await client.post("/catalog/prices", json={"model": model, "input": "1", "output": "2"}, headers=admin)
    ).json()
    start = datetime.now(UTC)
    new_price_at = start + timedelta(days=1)
    new_margin_at = start + timedelta(days=2)
    v2 = await client.post(
        "/catalog/prices",
        json={"model": model, "input": "3", "output": "4", "effective_from": new_price_at.isoformat()},
        headers=admin,
    )
    assert v2.status_code == 201, v2.text
    v2 = v2.json()
    margin = await client.put(
        "/catalog/margins",
        json={"scope": "model", "target": model, "margin": "2", "effective_from": new_margin_at.isoformat()},
        headers=admin,
    )
    assert margin.status_code == 201, margin.text
    clock.at = start  # the first version is in effect from `start` on

    def million(event_id, **fields):
        return {
            "event_id": event_id,
            "account_id": "acme",
            "model": model,
            "input_tokens": 10**6,
            "output_tokens": 10**6,
        } | fields

    # (version, margin, cost): 1M input + 1M output is 1 + 2 = 3 USD under v1, 3 + 4 = 7 USD under v2.
    expected = {}
    first = await post(client, finance, million("now"))
    expected["now"] = (v1["id"], "1.4", "420.000000000", "3.000000000")

    clock.advance(days=1, seconds=1)
    expected["after-price"] = (v2["id"], "1.4", "980.000000000", "7.000000000")
    after_price = await post(client, finance, million("after-price"))
    # Reported late: priced at its occurred_at, by the version in effect then.
    expected["late"] = (v1["id"], "1.4", "420.000000000", "3.000000000")
    late = await post(client, finance, million("late", occurred_at=(new_price_at - timedelta(seconds=1)).isoformat()))
    expected["boundary"] = (v2["id"], "1.4", "980.000000000", "7.000000000")
    boundary = await post(client, finance, million("boundary", occurred_at=new_price_at.isoformat()))

    clock.advance(days=1)
    expected["after-margin"] = (v2["id"], "2", "1400.000000000", "7.000000000")
    after_margin = await post(client, finance, million("after-margin"))
    expected["before-margin"] = (v2["id"], "1.4", "980.000000000", "7.000000000")
    before_margin = await post(
        client, finance, million("before-margin", occurred_at=(new_margin_at - timedelta(microseconds=1)).isoformat())
    )

    responses = {"now": first, "after-price": after_price, "late": late, "boundary": boundary}
    responses |= {"after-margin": after_margin, "before-margin": before_margin}
    for name, response in responses.items():
        assert response.status_code == 201, (name, response.text)
        body = response.json()
        assert (body["price_version"], body["margin"], body["cost"], body["upstream_cost_usd"]) == expected[name], name
    # Stored the same way: the list shows each event with the version and margin it was charged by.
    stored = {e["event_id"]: e for e in await events(client, admin)}
    for name, (version, margin, cost, _) in expected.items():
        assert (stored[name]["price_version"], stored[name]["margin"], stored[name]["cost"]) == (version, margin, cost)
    total = sum(Decimal(v[2]) for v in expected.values())
    assert await balance(client, admin) == Decimal(10_000) - total


async def test_disabled_provider_is_still_charged(client, admin, finance, clock, scratch, acme):
    """The call already happened upstream: usage of a disabled provider's model is recorded and charged."""
    model = f"{scratch}/m"
    await client.put("/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin)
    await client.post("/catalog/prices", json={"model": model, "input": "1", "output": "1"}, headers=admin)
    clock.at = datetime.now(UTC)
    await client.patch(f"/catalog/providers/{scratch}", json={"enabled": False}, headers=admin)
    response = await post(
        client, finance, event("d", model=model, input_tokens=10**6, cached_input_tokens=0, output_tokens=0)
    )
    assert response.status_code == 201, response.text
    assert response.json()["cost"] == "140.000000000"


# Idempotency


async def test_same_event_same_payload_is_a_replay(client, admin, finance, clock, acme):
    first = await post(client, finance, event("e1", metadata={"k": "v"}))
    assert first.status_code == 201
    clock.advance(minutes=5)
    for body in (
        event("e1", metadata={"k": "v"}),
        event("e1", model="openai/gpt-4o", metadata={"k": "v"}),  # the alias and the id name one model
    ):
        again = await post(client, finance, body)
        assert again.status_code == 200, again.text
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json() == first.json() | {"replay": True}
    assert await balance(client, admin) == GRANT - GPT4O_COST
    assert len(await events(client, admin)) == 1


async def test_replay_of_an_event_with_an_explicit_occurred_at(client, admin, finance, clock, acme):
    at = clock.now() - timedelta(hours=1)
    first = await post(client, finance, event("e1", occurred_at=at.isoformat()))
    assert first.status_code == 201
    again = await post(client, finance, event("e1", occurred_at=at.isoformat()))
    assert again.status_code == 200 and again.json() == first.json() | {"replay": True}
    # The same instant written in another offset is the same payload.
    shifted = at.astimezone(timezone(timedelta(hours=2)))
    again = await post(client, finance, event("e1", occurred_at=shifted.isoformat()))
    assert again.status_code == 200 and again.json() == first.json() | {"replay": True}
    # A retry that leaves occurred_at out is still a replay (the default would be "now").
    clock.advance(minutes=10)
    again = await post(client, finance, event("e1"))
    assert again.status_code == 200 and again.json() == first.json() | {"replay": True}
    assert await balance(client, admin) == GRANT - GPT4O_COST


async def test_occurred_at_is_echoed_as_stored(client, admin, finance, clock, acme):
    """The created answer, a replay and the stored event show one occurred_at, whatever offset the client used."""
    at = (clock.now() - timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    first = await post(client, finance, event("e1", occurred_at=at.isoformat()))
    assert first.status_code == 201
    again = await post(client, finance, event("e1", occurred_at=at.isoformat()))
    (stored,) = await events(client, admin)
    assert datetime.fromisoformat(first.json()["occurred_at"]) == at
    assert first.json()["occurred_at"] == again.json()["occurred_at"] == stored["occurred_at"]


async def test_retry_giving_occurred_at_is_compared_with_the_stored_time(client, admin, finance, clock, acme):
    first = await post(client, finance, event("e1"))
    assert first.status_code == 201
    clock.advance(seconds=30)
    stored_at = first.json()["occurred_at"]
    again = await post(client, finance, event("e1", occurred_at=stored_at))
    assert again.status_code == 200 and again.json()["replay"] is True
    other_time = (datetime.fromisoformat(stored_at) - timedelta(seconds=1)).isoformat()
    error = assert_error(
        await post(client, finance, event("e1", occurred_at=other_time)), 422, "idempotency_key_reused"
    )
    assert "occurred_at" in error["message"]


CHANGES = [
    ({"input_tokens": 2007}, ["input_tokens"]),
    ({"output_tokens": 301}, ["output_tokens"]),
    ({"cached_input_tokens": 1000}, ["cached_input_tokens"]),
    ({"cache_write_tokens": 10}, ["cache_write_tokens"]),
    ({"reasoning_tokens": 10}, ["reasoning_tokens"]),
    ({"model": "openai/gpt-4o-mini"}, ["model"]),
    ({"metadata": {"k": "other"}}, ["metadata"]),
    ({"metadata": None}, ["metadata"]),
    ({"authorization_id": "auth_1"}, ["authorization_id"]),
    ({"occurred_at": "2026-01-01T00:00:00Z"}, ["occurred_at"]),
    ({"input_tokens": 3000, "output_tokens": 1}, ["input_tokens", "output_tokens"]),
]
FIELDS = ["input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"]
FIELDS += ["model", "metadata", "authorization_id", "occurred_at"]


async def test_same_event_different_payload_is_422(client, admin, finance, acme):
    original = event("e1", metadata={"k": "v"})
    first = await post(client, finance, original)
    assert first.status_code == 201
    for changes, fields in CHANGES:
        changed = {k: v for k, v in (original | changes).items() if v is not None}
        error = assert_error(await post(client, finance, changed), 422, "idempotency_key_reused")
        named = {name for name in FIELDS if re.search(rf"\b{name}\b", error["message"])}
        assert named == set(fields) and error.get("param") == fields[0], (changes, error)
    (stored,) = await events(client, admin)
    assert stored == first.json()
    assert await balance(client, admin) == GRANT - GPT4O_COST


async def test_same_event_id_on_two_accounts_is_two_events(client, admin, finance, acme):
    await create_account(client, admin, "other")
    a = await post(client, finance, event("shared"))
    b = await post(client, finance, event("shared", account_id="other"))
    assert (a.status_code, b.status_code) == (201, 201)
    assert (a.json()["account_id"], b.json()["account_id"]) == ("acme", "other")
    # Different payloads on the two accounts are no conflict either.
    c = await post(client, finance, event("shared2", input_tokens=10, cached_input_tokens=0))
    d = await post(client, finance, event("shared2", account_id="other", input_tokens=20, cached_input_tokens=0))
    assert (c.status_code, d.status_code) == (201, 201)
    assert len(await events(client, admin)) == 4


# Overdraft


async def test_overdraft(client, admin, finance):
    # The limit is exactly one event's cost: the first event reaches it, the second goes beyond.
    await create_account(client, admin, "acme", grant=None, overdraft=str(GPT4O_COST))
    first = await post(client, finance, event("e1"))
    assert first.status_code == 201 and first.json()["balance_after"] == "-0.786100000"
    assert first.json()["overdrawn"] is False
    second = await post(client, finance, event("e2"))
    assert second.status_code == 201 and second.json()["balance_after"] == "-1.572200000"
    assert second.json()["overdrawn"] is True
    third = await post(client, finance, event("e3"))
    assert third.status_code == 201 and third.json()["overdrawn"] is True
    assert await balance(client, admin) == -3 * GPT4O_COST
    stored = await events(client, admin)
    assert [(e["event_id"], e["overdrawn"]) for e in stored] == [("e1", False), ("e2", True), ("e3", True)]
    # A replay reports the flag as first recorded.
    assert (await post(client, finance, event("e2"))).json()["overdrawn"] is True


async def test_no_overdraft_limit_flags_any_negative_balance(client, admin, finance):
    await create_account(client, admin, "acme", grant=Decimal(1))
    first = await post(client, finance, event("e1"))
    assert first.json()["balance_after"] == "0.213900000" and first.json()["overdrawn"] is False
    second = await post(client, finance, event("e2"))
    assert second.status_code == 201 and second.json()["overdrawn"] is True
    assert second.json()["balance_after"] == "-0.572200000"


# Batches


async def test_extreme_amounts_are_stored_and_answered_exactly(client, admin, finance, clock, scratch, conn_engine):
    """Amounts travel to PostgreSQL as exact decimal text: long, tiny and huge figures, and balances
    that go negative, are stored and answered digit for digit as `quote` and the ledger work them out."""
    # Balances stay within 28 digits: the ledger's running balance is still worked out in the default
    # decimal context. The overdraft limit is longer; accounts answer it in full.
    grant = Decimal("123456789012.123456789")
    await create_account(client, admin, "acme", grant=grant, overdraft="99999999999999999999999")
    model = f"{scratch}/m"
    await client.put("/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin)
    rates = {"input": "0.000000000123456789012345678", "output": "98765.4321", "cached_input": "0.3"}
    assert (await client.post("/catalog/prices", json={"model": model, **rates}, headers=admin)).status_code == 201
    margin = {"scope": "model", "target": model, "margin": "3.14159"}
    assert (await client.put("/catalog/margins", json=margin, headers=admin)).status_code == 201
    clock.at = datetime.now(UTC)
    usages = [(1, 0, 0), (10**12, 10**11, 0), (123456789, 987654, 1000), (7, 3, 7), (10**12, 10**12, 10**12)]
    body = {
        "events": [
            {"event_id": f"x{n}", "account_id": "acme", "model": model, "input_tokens": i, "output_tokens": o}
            | {"cached_input_tokens": c}
            for n, (i, o, c) in enumerate(usages)
        ]
    }
    response = await client.post("/usage/batch", json=body, headers=finance)
    assert response.status_code == 200, response.text
    results = [r["event"] for r in response.json()["results"]]

    prices = Rates(**{k: Decimal(v) for k, v in rates.items()})
    expected, left = [], grant
    for i, o, c in usages:
        q = quote(
            model, prices, Usage(i, o, c), embedding=False, margin=Decimal("3.14159"), credits_per_usd=Decimal(100)
        )
        left -= q.credits
        expected.append((q.credits, q.upstream_usd, credits_value(q.credits, Decimal(100)), left))
    assert left < 0  # the last event overdraws the account
    answered = [(r["cost"], r["upstream_cost_usd"], r["balance_after"]) for r in results]
    assert answered == [(money(c), money(u), money(after)) for c, u, _, after in expected]
    async with conn_engine.connect() as conn:
        stored = (
            await conn.execute(
                text(
                    "SELECT u.cost, u.upstream_cost_usd, u.credits_usd, l.balance_after, l.amount, u.margin, "
                    "u.credits_per_usd FROM usage_events u JOIN ledger_entries l ON l.usage_event_id = u.id "
                    "ORDER BY u.event_id"
                )
            )
        ).all()
    assert [tuple(row[:4]) for row in stored] == expected
    assert [(row.amount, row.margin, row.credits_per_usd) for row in stored] == [
        (-c, Decimal("3.14159"), Decimal(100)) for c, *_ in expected
    ]
    assert await balance(client, admin) == left


async def test_batch_mixing_created_invalid_and_duplicates(client, admin, finance, acme):
    stored = await post(client, finance, event("stored"))
    assert stored.status_code == 201
    batch = [
        event("b1"),  # 0 created
        event("bad-field", input_tokens="many"),  # 1 invalid type
        event("unknown-model", model="nobody/nothing"),  # 2 unknown model: kept unrated
        event("subset", cached_input_tokens=3000),  # 3 subset larger than total
        event("stored"),  # 4 duplicate of a stored event
        event("stored", output_tokens=1),  # 5 stored event id, another payload
        event("b2", input_tokens=10, cached_input_tokens=0, output_tokens=0),  # 6 created
        event("b1"),  # 7 repeat inside the batch, same payload
        event(
            "b2", input_tokens=11, cached_input_tokens=0, output_tokens=0
        ),  # 8 repeat inside the batch, another payload
        event("ghost", account_id="ghost"),  # 9 unknown account
        {"model": "gpt-4o", "account_id": "acme", "input_tokens": 1},  # 10 no event_id
        event("extra", colour="red"),  # 11 unknown field
    ]
    response = await client.post("/usage/batch", json={"events": batch}, headers=finance)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(batch)))
    assert [r["status"] for r in results] == [
        "created", "error", "unrated", "error", "duplicate", "error", "created", "duplicate", "error", "error",
        "error", "error",
    ]  # fmt: skip
    assert [r.get("event_id") for r in results[:10]] == [b["event_id"] for b in batch[:10]]
    assert (body["created"], body["duplicates"], body["errors"], body["unrated"]) == (2, 2, 7, 1)
    codes = {i: results[i]["error"]["code"] for i in (1, 3, 5, 8, 9, 10, 11)}
    assert codes == {
        1: "validation_error", 3: "validation_error", 5: "idempotency_key_reused",
        8: "idempotency_key_reused", 9: "account_not_found", 10: "validation_error", 11: "validation_error",
    }  # fmt: skip
    assert results[2]["event"]["status"] == "unrated" and results[2]["event"]["unrated_reason"] == "model_not_found"
    assert results[1]["error"]["param"] == "input_tokens"
    assert results[3]["error"]["param"] == "cached_input_tokens"
    assert "output_tokens" in results[5]["error"]["message"] and "input_tokens" in results[8]["error"]["message"]
    assert all(set(r["error"]) >= {"message", "type", "code"} for r in results if r["status"] == "error")
    assert all("event" not in r for r in results if r["status"] == "error")
    # A duplicate carries the event as first recorded, marked as a replay.
    assert results[4]["event"] == stored.json() | {"replay": True}
    assert results[7]["event"] == results[0]["event"] | {"replay": True}
    assert results[0]["event"].get("replay", False) is False and results[0]["event"]["cost"] == "0.786100000"
    # 10 x 2.5 / 1e6 x 140 = 0.0035
    assert results[6]["event"]["cost"] == "0.003500000"
    # balance_after runs in the batch's order
    assert Decimal(results[6]["event"]["balance_after"]) == Decimal(results[0]["event"]["balance_after"]) - Decimal(
        "0.0035"
    )
    charged = 2 * GPT4O_COST + Decimal("0.0035")
    assert await balance(client, admin) == GRANT - charged
    assert sorted(e["event_id"] for e in await events(client, admin)) == ["b1", "b2", "stored", "unknown-model"]

    # The whole batch again: everything recorded comes back as a duplicate, nothing is charged again.
    retry = await client.post("/usage/batch", json={"events": batch}, headers=finance)
    assert retry.status_code == 200
    again = retry.json()
    assert [r["status"] for r in again["results"]] == [
        "duplicate", "error", "duplicate", "error", "duplicate", "error", "duplicate", "duplicate", "error", "error",
        "error", "error",
    ]  # fmt: skip
    assert (again["created"], again["duplicates"], again["errors"]) == (0, 5, 7)
    assert again["results"][0]["event"] == results[0]["event"] | {"replay": True}
    assert again["results"][2]["event"] == results[2]["event"] | {"replay": True}
    assert again["results"][6]["event"] == results[6]["event"] | {"replay": True}
    assert await balance(client, admin) == GRANT - charged
    assert len(await events(client, admin)) == 4


async def test_batch_repeat_matching_the_stored_event_is_a_duplicate(client, admin, finance, acme):
    """Inside a batch each copy is compared with the stored event: a wrong copy first does not turn a right
    copy after it into an error."""
    stored = await post(client, finance, event("s"))
    batch = [event("s", output_tokens=1), event("s")]
    results = (await client.post("/usage/batch", json={"events": batch}, headers=finance)).json()["results"]
    assert [r["status"] for r in results] == ["error", "duplicate"], results
    assert results[1]["event"] == stored.json() | {"replay": True}


async def test_batch_and_single_share_event_ids(client, admin, finance, acme):
    created = await client.post("/usage/batch", json={"events": [event("b1"), event("b2")]}, headers=finance)
    first = created.json()["results"][0]["event"]
    again = await post(client, finance, event("b1"))
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first | {"replay": True}
    assert_error(
        await post(client, finance, event("b2", input_tokens=1, cached_input_tokens=0)), 422, "idempotency_key_reused"
    )
    single = await post(client, finance, event("s1"))
    batch = await client.post(
        "/usage/batch", json={"events": [event("s1"), event("s1", output_tokens=2)]}, headers=finance
    )
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["duplicate", "error"]
    assert results[0]["event"] == single.json() | {"replay": True}
    assert results[1]["error"]["code"] == "idempotency_key_reused"
    assert await balance(client, admin) == GRANT - 3 * GPT4O_COST


async def test_a_busy_worker_closes_the_connection_of_a_batch_it_answers(client, admin, finance, acme, monkeypatch):
    """A worker answering a batch while it handles another closes that keep-alive connection, so the
    client's next batch goes to whichever worker accepts it first (see BatchesInFlight); a worker
    handling one batch at a time keeps its connections."""
    alone = await client.post("/usage/batch", json={"events": [event("alone")]}, headers=finance)
    assert alone.status_code == 200 and "connection" not in alone.headers
    monkeypatch.setattr(BATCHES, "count", 1)  # another batch in hand in this worker
    busy = await client.post("/usage/batch", json={"events": [event("busy")]}, headers=finance)
    assert busy.status_code == 200 and busy.headers["connection"] == "close"
    assert busy.json()["results"][0]["status"] == "created"
    assert BATCHES.count == 1

    # Counted out when it fails too: here the database goes away during the batch (a 503).
    async def unavailable(*args, **kwargs):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(service, "record", unavailable)
    failed = await client.post("/usage/batch", json={"events": [event("x")]}, headers=finance)
    assert_error(failed, 503, "database_unavailable")
    assert BATCHES.count == 1


async def test_batch_size_limits(client, admin, finance, acme):
    too_many = [event(f"e{i}", input_tokens=1, cached_input_tokens=0, output_tokens=0) for i in range(1001)]
    error = assert_error(
        await client.post("/usage/batch", json={"events": too_many}, headers=finance), 400, "validation_error"
    )
    assert "events" in error["message"] or error.get("param") == "events"
    assert_error(await client.post("/usage/batch", json={"events": []}, headers=finance), 400, "validation_error")
    assert_error(await client.post("/usage/batch", json={}, headers=finance), 400, "validation_error")
    assert_error(await client.post("/usage/batch", json={"events": "x"}, headers=finance), 400, "validation_error")
    assert await events(client, admin) == []
    # Exactly 1000 is accepted, in one transaction.
    response = await client.post("/usage/batch", json={"events": too_many[:1000]}, headers=finance)
    assert response.status_code == 200 and response.json()["created"] == 1000
    # 1 x 2.5 / 1e6 x 140 = 0.00035 each
    assert await balance(client, admin) == GRANT - 1000 * Decimal("0.00035")
    assert len(await events(client, admin)) == 1000
