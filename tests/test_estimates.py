"""POST /estimate: the cost of a call without recording it, equal to what POST /usage charges for it."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

NANO = Decimal("0.000000001")
SCALE = Decimal("140")  # default margin 1.4 x 100 credits per USD


def amount(value: Decimal | str) -> str:
    return format(Decimal(value).quantize(NANO), "f")


@pytest.fixture
async def catalog_key(make_key) -> dict[str, str]:
    """A front end's key: prices, no finance data."""
    return {"X-API-Key": await make_key("catalog:read")}


@pytest.fixture
async def finance(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read", "ledger:read")}


async def create_account(client, admin, account_id: str, grant: str | None = "1000") -> None:
    response = await client.post("/accounts", json={"id": account_id, "name": account_id}, headers=admin)
    assert response.status_code == 201, response.text
    if grant:
        response = await client.post(f"/accounts/{account_id}/grants", json={"amount": grant}, headers=admin)
        assert response.status_code == 201, response.text


async def estimate(client, headers, **body) -> dict:
    response = await client.post("/estimate", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# (usage, expected credits, expected tier): rates are upstream USD per 1M tokens, x 140 in credits.
CALLS = [
    # (86 x 2.5 + 1920 x 1.25 + 300 x 10) / 1e6 = 0.005615 USD
    ({"model": "openai/gpt-4o", "input_tokens": 2006, "cached_input_tokens": 1920, "output_tokens": 300},
     "0.786100000", None),
    # An alias; (7000 x 0.15 + 3000 x 0.075 + 900 x 0.6) / 1e6 = 0.001815 USD
    ({"model": "gpt-4o-mini", "input_tokens": 10_000, "cached_input_tokens": 3000, "output_tokens": 900},
     "0.254100000", None),
    # Cache writes and reasoning (billed as output): (5000 x 3 + 4000 x 0.3 + 3000 x 3.75 + 2000 x 15) / 1e6
    ({"model": "anthropic/claude-sonnet-4-5", "input_tokens": 12_000, "cached_input_tokens": 4000,
      "cache_write_tokens": 3000, "output_tokens": 2000, "reasoning_tokens": 1500}, "8.043000000", None),
    # At the 200k threshold: base rates. (150000 x 3 + 50000 x 0.3 + 1000 x 15) / 1e6 = 0.48 USD
    ({"model": "anthropic/claude-sonnet-4-5", "input_tokens": 200_000, "cached_input_tokens": 50_000,
      "output_tokens": 1000}, "67.200000000", None),
    # One above: the whole call at the tier's rates.
    # (140001 x 6 + 50000 x 0.6 + 10000 x 7.5 + 1000 x 22.5) / 1e6 = 0.967506 USD
    ({"model": "anthropic/claude-sonnet-4-5", "input_tokens": 200_001, "cached_input_tokens": 50_000,
      "cache_write_tokens": 10_000, "output_tokens": 1000}, "135.450840000", 200_000),
    # (200001 x 2.5 + 1000 x 15) / 1e6 = 0.5150025 USD
    ({"model": "google/gemini-2.5-pro", "input_tokens": 200_001, "output_tokens": 1000}, "72.100350000", 200_000),
    # Embedding models bill input only: 1000 x 0.02 / 1e6 = 0.00002 USD
    ({"model": "openai/text-embedding-3-small", "input_tokens": 1000}, "0.002800000", None),
    # A local model: an explicit price of 0.
    ({"model": "ollama/llama3", "input_tokens": 5000, "output_tokens": 700}, "0.000000000", None),
]  # fmt: skip


def expected_lines(call: dict) -> list[tuple[str, int]]:
    inputs = call["input_tokens"] - call.get("cached_input_tokens", 0) - call.get("cache_write_tokens", 0)
    lines = [
        ("input", inputs),
        ("cached_input", call.get("cached_input_tokens", 0)),
        ("cache_write", call.get("cache_write_tokens", 0)),
        ("output", call.get("output_tokens", 0)),
    ]
    return [(kind, tokens) for kind, tokens in lines if tokens]


async def test_estimate_equals_the_charge(client, admin, catalog_key, finance, conn_engine):
    await create_account(client, admin, "acme")
    for index, (call, credits, tier) in enumerate(CALLS):
        quoted = await estimate(client, admin, **call)
        assert quoted["credits"] == credits, call
        assert quoted["tier"] == tier, call
        model = await client.get(f"/models/{call['model']}", headers=admin)
        assert quoted["model"] == model.json().get("root", model.json()["id"])
        assert quoted["price_version"] == model.json()["pricing"]["price_version"]
        assert datetime.fromisoformat(quoted["effective_from"]) == datetime.fromisoformat(
            model.json()["pricing"]["effective_from"]
        )
        # A line per token kind, each priced at its credit rate; the total is the rounded exact sum.
        assert [(line["kind"], line["tokens"]) for line in quoted["breakdown"]] == expected_lines(call), call
        for line in quoted["breakdown"]:
            assert amount(Decimal(line["tokens"]) * Decimal(line["rate_per_1m"]) / 1_000_000) == line["credits"]
        lines_total = sum(Decimal(line["credits"]) for line in quoted["breakdown"])
        assert abs(lines_total - Decimal(credits)) <= NANO * len(quoted["breakdown"])
        # Finance data for finance keys only.
        assert quoted["margin"] == "1.4"
        assert Decimal(quoted["upstream_cost_usd"]) * SCALE == Decimal(credits)
        plain = await estimate(client, catalog_key, **call)
        assert "upstream_cost_usd" not in plain and "margin" not in plain
        assert plain == {k: v for k, v in quoted.items() if k not in ("upstream_cost_usd", "margin")}
        assert await estimate(client, finance, **call) == quoted
        # `max_output_tokens` in place of `output_tokens` quotes the same (embedding models have no output).
        if "output_tokens" in call:
            capped = {k: v for k, v in call.items() if k != "output_tokens"}
            assert await estimate(client, admin, **capped, max_output_tokens=call["output_tokens"]) == quoted

        # The charge for the same usage is the same number, priced by the same version.
        charged = await client.post(
            "/usage", json={"event_id": f"e{index}", "account_id": "acme", **call}, headers=admin
        )
        assert charged.status_code == 201, charged.text
        event = charged.json()
        assert (event["cost"], event["price_version"], event["model"]) == (
            quoted["credits"],
            quoted["price_version"],
            quoted["model"],
        )
        assert (event["upstream_cost_usd"], event["margin"]) == (quoted["upstream_cost_usd"], quoted["margin"])
    await assert_reconciled(conn_engine)


async def test_estimate_of_a_model_with_its_own_rates(client, admin, clock, scratch, conn_engine):
    """A per-request fee, a long-context tier and a margin override of the model."""
    model = f"{scratch}/m"
    response = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin
    )
    assert response.status_code == 200, response.text
    price = {
        "model": model, "input": "1.1", "output": "3.3", "cached_input": "0.11", "per_request": "0.0007",
        "tiers": [{"above_input_tokens": 1000, "input": "2.2", "output": "6.6", "cached_input": "0.22"}],
    }  # fmt: skip
    response = await client.post("/catalog/prices", json=price, headers=admin)
    assert response.status_code == 201, response.text
    margin = await client.put(
        "/catalog/margins", json={"scope": "model", "target": model, "margin": "1.25"}, headers=admin
    )
    assert margin.status_code == 201, margin.text
    clock.at = datetime.now(UTC)  # the price and margin are in effect from now on
    await create_account(client, admin, "acme")
    # Below the tier: (700 x 1.1 + 300 x 0.11 + 50 x 3.3) / 1e6 + 0.0007 = 0.001668 USD; x 1.25 x 100
    below = {"model": model, "input_tokens": 1000, "cached_input_tokens": 300, "output_tokens": 50}
    # Above: (701 x 2.2 + 300 x 0.22 + 50 x 6.6) / 1e6 + 0.0007 = 0.0026382 USD
    above = below | {"input_tokens": 1001}
    for index, (call, credits, usd, tier) in enumerate(
        [(below, "0.208500000", "0.001668000", None), (above, "0.329775000", "0.002638200", 1000)]
    ):
        quoted = await estimate(client, admin, **call)
        assert (quoted["credits"], quoted["upstream_cost_usd"], quoted["margin"], quoted["tier"]) == (
            credits,
            usd,
            "1.25",
            tier,
        )
        kinds = [(line["kind"], line["tokens"]) for line in quoted["breakdown"]]
        assert kinds == [
            ("input", call["input_tokens"] - 300),
            ("cached_input", 300),
            ("output", 50),
            ("request", None),
        ]
        assert quoted["breakdown"][-1]["credits"] == "0.087500000"  # 0.0007 USD x 125
        charged = await client.post(
            "/usage", json={"event_id": f"e{index}", "account_id": "acme", **call}, headers=admin
        )
        assert charged.status_code == 201, charged.text
        assert (charged.json()["cost"], charged.json()["upstream_cost_usd"]) == (credits, usd)
        assert charged.json()["price_version"] == quoted["price_version"] == response.json()["id"]
    await assert_reconciled(conn_engine)


async def test_compare_models_cheapest_first(client, admin, catalog_key, scratch):
    # A priced model whose provider is disabled cannot be quoted.
    await client.put("/catalog/models", json={"provider": scratch, "name": "off", "type": "language"}, headers=admin)
    price = await client.post(
        "/catalog/prices", json={"model": f"{scratch}/off", "input": "1", "output": "1"}, headers=admin
    )
    assert price.status_code == 201, price.text
    disabled = await client.patch(f"/catalog/providers/{scratch}", json={"enabled": False}, headers=admin)
    assert disabled.status_code == 200, disabled.text

    usage = {"input_tokens": 10_000, "cached_input_tokens": 2000, "output_tokens": 500}
    models = [
        "anthropic/claude-sonnet-4-5",
        "nobody/no-such-model",
        "openai/gpt-4o",
        "gpt-4o-mini",
        "google/gemini-exp-1114",  # listed without a price
        "ollama/llama3",
        "openai/text-embedding-3-small",
        f"{scratch}/off",
        "openai/gpt-4o",  # a repeat is quoted once
    ]
    for headers in (admin, catalog_key):
        result = await estimate(client, headers, models=models, **usage)
        assert set(result) == {"estimates", "unavailable"}
        quoted = result["estimates"]
        assert [e["model"] for e in quoted] == [
            "ollama/llama3",
            "openai/text-embedding-3-small",
            "openai/gpt-4o-mini",
            "openai/gpt-4o",
            "anthropic/claude-sonnet-4-5",
        ]
        costs = [Decimal(e["credits"]) for e in quoted]
        assert costs == sorted(costs) and costs[0] == 0
        # Each is the single-model estimate; an embedding model simply produces no output.
        for entry in quoted:
            single = dict(usage)
            if entry["model"] == "openai/text-embedding-3-small":
                single = {"input_tokens": usage["input_tokens"], "cached_input_tokens": 2000}
            assert entry == await estimate(client, headers, model=entry["model"], **single)
            assert ("upstream_cost_usd" in entry) == (headers is admin)
        unavailable = [(u["model"], u["error"]["code"]) for u in result["unavailable"]]
        assert unavailable == [
            ("nobody/no-such-model", "model_not_found"),
            ("google/gemini-exp-1114", "model_unpriced"),
            (f"{scratch}/off", "provider_not_configured"),
        ]
        for item in result["unavailable"]:
            assert item["error"]["message"] and item["error"]["type"]
    # Alone, each unavailable model is its error.
    assert_error(
        await client.post("/estimate", json={"model": "nobody/x", **usage}, headers=admin), 404, "model_not_found"
    )
    assert_error(
        await client.post("/estimate", json={"model": "google/gemini-exp-1114", **usage}, headers=admin),
        422,
        "model_unpriced",
    )
    assert_error(
        await client.post("/estimate", json={"model": f"{scratch}/off", **usage}, headers=admin),
        404,
        "provider_not_configured",
    )
    # Nothing is quotable: an empty list of estimates, not an error.
    result = await estimate(client, admin, models=["nobody/x"], input_tokens=1)
    assert result["estimates"] == [] and [u["model"] for u in result["unavailable"]] == ["nobody/x"]


async def test_estimate_with_an_account(client, admin, make_key):
    await create_account(client, admin, "acme", grant="10")
    await create_account(client, admin, "globex", grant=None)
    cheap = {"model": "openai/gpt-4o", "input_tokens": 10_000, "output_tokens": 1000}  # 0.035 USD = 4.9 credits
    dear = {"model": "openai/gpt-4o", "input_tokens": 20_000, "output_tokens": 2000}  # 9.8 credits
    too_dear = {"model": "openai/gpt-4o", "input_tokens": 30_000, "output_tokens": 2000}  # 12.25 credits
    result = await estimate(client, admin, account_id="acme", **cheap)
    assert result["credits"] == "4.900000000"
    assert result["account"] == {"account_id": "acme", "available": "10.000000000", "covered": True}
    assert (await estimate(client, admin, account_id="acme", **too_dear))["account"]["covered"] is False
    # Exactly the available credits are covered: 5000 output tokens of gpt-4o are 7 credits.
    await create_account(client, admin, "seven", grant="7")
    for tokens, covered in [(4999, True), (5000, True), (5001, False)]:
        body = {"model": "openai/gpt-4o", "input_tokens": 0, "output_tokens": tokens, "account_id": "seven"}
        assert (await estimate(client, admin, **body))["account"]["covered"] is covered, tokens
    # Without an account, no `account`.
    assert "account" not in await estimate(client, admin, **cheap)

    # Held credits are not available.
    hold = await client.post(
        "/authorizations",
        json={"account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 0, "max_output_tokens": 1000},
        headers=admin,
    )
    assert hold.status_code == 201 and hold.json()["amount"] == "1.400000000", hold.text
    result = await estimate(client, admin, account_id="acme", **dear)
    assert result["account"] == {"account_id": "acme", "available": "8.600000000", "covered": False}
    compared = await estimate(
        client,
        admin,
        account_id="acme",
        models=["openai/gpt-4o", "openai/gpt-4o-mini"],
        **{k: v for k, v in dear.items() if k != "model"},
    )
    assert [(e["model"], e["account"]["covered"]) for e in compared["estimates"]] == [
        ("openai/gpt-4o-mini", True),
        ("openai/gpt-4o", False),
    ]
    assert {e["account"]["available"] for e in compared["estimates"]} == {"8.600000000"}
    # An empty account covers only free calls.
    assert (await estimate(client, admin, account_id="globex", **cheap))["account"]["covered"] is False
    free = await estimate(client, admin, account_id="globex", model="ollama/llama3", input_tokens=10)
    assert free["account"] == {"account_id": "globex", "available": "0.000000000", "covered": True}

    # A key bound to an account gets its own account's funds, and never another's.
    bound = {"X-API-Key": await make_key("catalog:read", "usage:write", account_id="acme")}
    result = await estimate(client, bound, **cheap)
    assert result["account"]["account_id"] == "acme" and result["account"]["available"] == "8.600000000"
    assert "upstream_cost_usd" not in result
    assert (await estimate(client, bound, account_id="acme", **cheap))["account"]["account_id"] == "acme"
    error = assert_error(
        await client.post("/estimate", json={"account_id": "globex", **cheap}, headers=bound), 404, "account_not_found"
    )
    assert "globex" in error["message"]
    assert_error(
        await client.post("/estimate", json={"account_id": "ghost", **cheap}, headers=admin), 404, "account_not_found"
    )
    # A gateway's unbound key asks whether any account can afford a call.
    gateway = {"X-API-Key": await make_key("catalog:read", "usage:write")}
    assert (await estimate(client, gateway, account_id="acme", **cheap))["account"]["covered"] is True


async def test_account_funds_are_not_shown_to_catalog_only_keys(client, admin, make_key):
    """An unbound `catalog:read` key (a product front end) reads prices, not any account's balance:
    balances are `ledger:read` data, and gateways that gate calls hold `usage:write`."""
    await create_account(client, admin, "acme", grant="10")
    front_end = {"X-API-Key": await make_key("catalog:read")}
    call = {"model": "openai/gpt-4o", "input_tokens": 10, "output_tokens": 10}
    assert "account" not in await estimate(client, front_end, **call)
    response = await client.post("/estimate", json={"account_id": "acme", **call}, headers=front_end)
    assert_error(response, 403, "insufficient_scope")


async def test_estimate_validation(client, admin, make_key):
    call = {"model": "openai/gpt-4o", "input_tokens": 100, "output_tokens": 10}
    cases = [
        ({"models": ["openai/gpt-4o"]}, "model"),  # both
        ({"model": None}, "model"),  # neither
        ({"max_output_tokens": 10}, "max_output_tokens"),  # with output_tokens
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": -1}, "output_tokens"),
        ({"output_tokens": None, "max_output_tokens": -1}, "max_output_tokens"),
        ({"cached_input_tokens": -1}, "cached_input_tokens"),
        ({"cache_write_tokens": -3}, "cache_write_tokens"),
        ({"reasoning_tokens": -3}, "reasoning_tokens"),
        ({"cached_input_tokens": 101}, "cached_input_tokens"),
        ({"cached_input_tokens": 60, "cache_write_tokens": 41}, "cache_write_tokens"),
        ({"reasoning_tokens": 11}, "reasoning_tokens"),
        ({"output_tokens": None, "max_output_tokens": 5, "reasoning_tokens": 6}, "reasoning_tokens"),
        ({"input_tokens": 2**63}, "input_tokens"),
        ({"input_tokens": "many"}, "input_tokens"),
        ({"input_tokens": 1.5}, "input_tokens"),
        ({"input_tokens": None}, "input_tokens"),
        ({"colour": "red"}, "colour"),
        ({"model": "openai/text-embedding-3-small"}, "output_tokens"),  # embeddings have no output
        ({"model": None, "models": []}, "models"),
        ({"model": None, "models": [f"m{i}" for i in range(51)]}, "models"),
        ({"model": None, "models": ["openai/gpt-4o"], "input_tokens": -1}, "input_tokens"),
        ({"model": None, "models": ["openai/gpt-4o"], "cached_input_tokens": 101}, "cached_input_tokens"),
    ]
    wrong = []
    for change, param in cases:
        body = {k: v for k, v in (call | change).items() if v is not None}
        response = await client.post("/estimate", json=body, headers=admin)
        error = assert_error(response, 400, "validation_error")
        # The field is the error's `param`, or (for a missing or unknown field) named in its message.
        if error.get("param") != param and f"`{param}`" not in error["message"]:
            wrong.append((change, param, error))
    assert wrong == [], "errors naming another field than the one sent:\n" + "\n".join(map(str, wrong))
    # Zero tokens is a valid (free) question.
    assert (await estimate(client, admin, model="openai/gpt-4o", input_tokens=0))["credits"] == "0.000000000"
    # Scopes: catalog:read is needed.
    writer = {"X-API-Key": await make_key("usage:write")}
    assert_error(await client.post("/estimate", json=call, headers=writer), 403, "insufficient_scope")
    assert_error(await client.post("/estimate", json=call), 401, "invalid_api_key")
