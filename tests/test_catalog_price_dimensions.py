"""The bundled catalog's price dimensions, charged through the service with worked numbers: 1-hour
cache writes, a Bedrock long-context prompt, a Bedrock cross-region profile, DeepSeek in and out of
its off-peak hours, and OpenAI's flex and priority tiers. Margin 1.4 and 100 credits per USD: a
charge is its upstream USD x 140 credits."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


@pytest.fixture
async def writer(client, admin, make_key) -> dict[str, str]:
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    grant = await client.post("/accounts/acme/grants", json={"amount": "100000"}, headers=admin)
    assert grant.status_code == 201
    return {"X-API-Key": await make_key("usage:write", "ledger:read", "catalog:read")}


async def charge(client, headers, event_id: str, **fields) -> dict:
    body = {"event_id": event_id, "account_id": "acme", **fields}
    response = await client.post("/usage", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def estimate(client, headers, **fields) -> str:
    response = await client.post("/estimate", json=fields, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["credits"]


def yesterday_at(hour: int) -> str:
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


async def test_one_hour_cache_writes_of_claude_sonnet_4_5(client, writer, conn_engine):
    # 3 input, 3.75 5-minute writes, 6 1-hour writes, 15 output (USD per 1M). 10,000 input tokens of
    # which 4,000 written to the cache, 3,000 of them for an hour; 1,000 output:
    # (6,000 x 3 + 1,000 x 3.75 + 3,000 x 6 + 1,000 x 15) / 1e6 = 0.05475 USD -> 7.665 credits
    call = {
        "model": "claude-sonnet-4-5-20250929",
        "input_tokens": 10000,
        "cache_write_tokens": 4000,
        "cache_write_1h_tokens": 3000,
        "output_tokens": 1000,
    }
    event = await charge(client, writer, "c1", **call)
    assert (event["model"], event["cost"], event["upstream_cost_usd"]) == (
        "anthropic/claude-sonnet-4-5",
        "7.665000000",
        "0.054750000",
    )
    assert await estimate(client, writer, **call) == "7.665000000"
    # The same written for 5 minutes only: (6,000 x 3 + 4,000 x 3.75 + 1,000 x 15) / 1e6 = 0.048 USD
    five = await charge(client, writer, "c2", **call | {"cache_write_1h_tokens": 0})
    assert five["cost"] == "6.720000000"
    await assert_reconciled(conn_engine)


async def test_a_long_prompt_to_claude_sonnet_4_5_on_bedrock_crosses_its_200k_tier(client, writer, conn_engine):
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    # Up to 200k input tokens: 3.3 / 16.5 USD per 1M. 100,000 in, 1,000 out:
    # (100,000 x 3.3 + 1,000 x 16.5) / 1e6 = 0.3465 USD -> 48.51 credits
    short = await charge(
        client, writer, "b1", model=model, provider="bedrock", input_tokens=100_000, output_tokens=1000
    )
    assert (short["model"], short["cost"]) == (f"bedrock/{model}", "48.510000000")
    # Above 200k the whole request is at 6.6 / 24.75. 250,000 in, 1,000 out:
    # (250,000 x 6.6 + 1,000 x 24.75) / 1e6 = 1.67475 USD -> 234.465 credits (not 115.8 at the short rates)
    long = await charge(client, writer, "b2", model=model, provider="bedrock", input_tokens=250_000, output_tokens=1000)
    assert long["cost"] == "234.465000000"
    tier = await client.post(
        "/estimate", json={"model": f"bedrock/{model}", "input_tokens": 250_000, "output_tokens": 1000}, headers=writer
    )
    assert (tier.json()["credits"], tier.json()["tier"]) == ("234.465000000", 200000)
    await assert_reconciled(conn_engine)


async def test_a_bedrock_cross_region_profile_is_priced_as_its_region(client, writer, conn_engine):
    # Claude Mythos 5.1 on Bedrock: 10 / 50 USD per 1M, and 11 / 55 through the `us.` profile.
    # 1,000,000 in, 100,000 out: 10 + 5 = 15 USD -> 2100 credits; in the us: 11 + 5.5 = 16.5 USD -> 2310
    call = {"input_tokens": 1_000_000, "output_tokens": 100_000}
    base = await charge(client, writer, "g1", model="anthropic.claude-mythos-5-1", provider="bedrock", **call)
    us = await charge(client, writer, "g2", model="us.anthropic.claude-mythos-5-1", provider="bedrock", **call)
    assert (base["model"], base["cost"], base.get("region")) == (
        "bedrock/anthropic.claude-mythos-5-1",
        "2100.000000000",
        None,
    )
    assert (us["model"], us["cost"], us["region"]) == ("bedrock/anthropic.claude-mythos-5-1", "2310.000000000", "us")
    # A region said outright prices the same.
    said = await charge(
        client, writer, "g3", model="anthropic.claude-mythos-5-1", region="us", provider="bedrock", **call
    )
    assert said["cost"] == "2310.000000000"
    assert await estimate(client, writer, model="us.anthropic.claude-mythos-5-1", provider="bedrock", **call) == (
        "2310.000000000"
    )
    await assert_reconciled(conn_engine)


async def test_deepseek_in_and_out_of_its_off_peak_hours(client, writer, conn_engine):
    # deepseek-chat: 0.27 / 1.1 USD per 1M, and 0.135 / 0.55 from 16:30 to 00:30 UTC.
    # 1,000,000 in, 100,000 out: 0.27 + 0.11 = 0.38 USD -> 53.2 credits; off-peak 0.19 USD -> 26.6
    call = {"model": "deepseek-chat", "input_tokens": 1_000_000, "output_tokens": 100_000}
    peak = await charge(client, writer, "d1", occurred_at=yesterday_at(10), **call)
    off = await charge(client, writer, "d2", occurred_at=yesterday_at(17), **call)
    late = await charge(client, writer, "d3", occurred_at=yesterday_at(0), **call)  # 00:00, still off-peak
    assert (peak["model"], peak["cost"], off["cost"], late["cost"]) == (
        "deepseek/deepseek-chat",
        "53.200000000",
        "26.600000000",
        "26.600000000",
    )
    assert peak["price_version"] == off["price_version"]  # one price version, two rate sets
    await assert_reconciled(conn_engine)


async def test_gpt_5_on_the_flex_and_priority_tiers(client, writer, conn_engine):
    # gpt-5: 1.25 / 10 USD per 1M; flex 0.625 / 5; priority 2.5 / 20. 1,000,000 in, 100,000 out:
    # default 2.25 USD -> 315 credits; flex 1.125 USD -> 157.5; priority 4.5 USD -> 630
    call = {"model": "gpt-5", "input_tokens": 1_000_000, "output_tokens": 100_000}
    costs = {
        tier: (await charge(client, writer, f"t-{tier}", service_tier=tier, **call))["cost"]
        for tier in ("default", "flex", "priority", "batch")
    }
    assert costs == {
        "default": "315.000000000",
        "flex": "157.500000000",
        "priority": "630.000000000",
        "batch": "157.500000000",
    }
    assert await estimate(client, writer, service_tier="flex", **call) == "157.500000000"
    hold = {"model": "gpt-5", "account_id": "acme", "input_tokens": 1_000_000, "max_output_tokens": 100_000}
    flex = await client.post("/authorizations", json=hold | {"service_tier": "flex"}, headers=writer)
    assert (flex.status_code, flex.json()["amount"]) == (201, "157.500000000")
    await assert_reconciled(conn_engine)


async def test_a_tier_the_data_does_not_price_is_never_the_default_price(client, writer):
    # DeepSeek has no flex tier: the call waits unrated; an estimate says so.
    call = {"model": "deepseek-chat", "input_tokens": 1000, "output_tokens": 100, "service_tier": "flex"}
    response = await client.post("/usage", json={"event_id": "f1", "account_id": "acme", **call}, headers=writer)
    assert response.status_code == 202 and response.json()["unrated_reason"] == "model_unpriced"
    error = assert_error(await client.post("/estimate", json=call, headers=writer), 422, "model_unpriced")
    assert error["param"] == "service_tier"
