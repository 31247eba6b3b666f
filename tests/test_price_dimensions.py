"""Price dimensions beyond tokens: service tiers, regions and times of day (price variants), priced
alike by usage events, estimates, holds, rating and reconciliation, with worked numbers."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from app.catalog.resolve import bedrock_region
from app.pricing import ModelUnpriced, Rates, Variant, select_rates, variant_from
from tests.helpers import assert_error, assert_reconciled
from tests.test_unrated import balance, listed, rate

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

# The scratch model: 2 / 8 USD per 1M tokens, and
#   flex            1 / 4
#   batch           1 / 4, cached input 0.1
#   region eu       2.2 / 8.8
#   16:30-00:30 UTC 0.5 / 2
# A call of 1000 input and 500 output tokens, at margin 1.4 and 100 credits per USD:
#   base   (1000 x 2 + 500 x 8) / 1e6     = 0.006 USD  -> 0.84 credits
#   flex   (1000 x 1 + 500 x 4) / 1e6     = 0.003 USD  -> 0.42
#   eu     (1000 x 2.2 + 500 x 8.8) / 1e6 = 0.0066 USD -> 0.924
#   window (1000 x 0.5 + 500 x 2) / 1e6   = 0.0015 USD -> 0.21
CALL = {"input_tokens": 1000, "output_tokens": 500}
VARIANTS = [
    {"service_tier": "flex", "input": "1", "output": "4"},
    {"service_tier": "batch", "input": "1", "output": "4", "cached_input": "0.1"},
    {"region": "eu", "input": "2.2", "output": "8.8"},
    {"time_from": "16:30", "time_to": "00:30", "input": "0.5", "output": "2"},
]


@pytest.fixture
async def acme(client, admin) -> str:
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    grant = await client.post("/accounts/acme/grants", json={"amount": "100"}, headers=admin)
    assert grant.status_code == 201
    return "acme"


@pytest.fixture
async def writer(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("usage:write", "ledger:read", "catalog:read")}


@pytest.fixture
async def model(client, admin, scratch) -> str:
    put = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin
    )
    assert put.status_code == 200, put.text
    body = {"model": f"{scratch}/m", "input": "2", "output": "8", "variants": VARIANTS}
    price = await client.post("/catalog/prices", json=body, headers=admin)
    assert price.status_code == 201, price.text
    return f"{scratch}/m"


def day_at(clock, hour: int, minute: int = 0) -> str:
    """A time of day two days ago (before the price was set: its first version prices it)."""
    day = (clock.now() - timedelta(days=2)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).isoformat()


async def post_event(client, headers, event_id: str, model: str, **fields):
    body = {"event_id": event_id, "account_id": "acme", "model": model, **CALL, **fields}
    return await client.post("/usage", json=body, headers=headers)


# The rules, as a pure function


def rates(input_rate: str) -> Rates:
    return Rates(input=D(input_rate), output=D(1))


BASE = rates("2")
NOON = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_no_variant_and_default_tier_is_the_base():
    assert select_rates("m", BASE, (), NOON) == (None, BASE)
    assert select_rates("m", BASE, (), NOON, "default", "us") == (None, BASE)


def test_a_window_holds_from_its_start_to_before_its_end_and_may_wrap_midnight():
    night = Variant(rates("0.5"), window=(16 * 60 + 30, 30))  # 16:30-00:30
    for hour, minute, inside in [(16, 29, False), (16, 30, True), (23, 59, True), (0, 0, True), (0, 30, False)]:
        at = NOON.replace(hour=hour, minute=minute)
        assert select_rates("m", BASE, (night,), at)[0] == (0 if inside else None), (hour, minute)
    day = Variant(rates("3"), window=(60, 4 * 60))  # 01:00-04:00
    assert select_rates("m", BASE, (day,), NOON.replace(hour=3, minute=59))[0] == 0
    assert select_rates("m", BASE, (day,), NOON.replace(hour=4))[0] is None
    # Times are UTC whatever the zone they are given in.
    tokyo = NOON.replace(hour=1).astimezone(datetime.now().astimezone().tzinfo)
    assert select_rates("m", BASE, (day,), tokyo)[0] == 0


def test_the_variant_with_most_conditions_wins_and_a_tie_is_unpriced():
    us = Variant(rates("2.2"), region="us")
    batch = Variant(rates("1"), service_tier="batch")
    us_batch = Variant(rates("1.1"), service_tier="batch", region="us")
    assert select_rates("m", BASE, (us, batch, us_batch), NOON, "batch", "us") == (2, us_batch.rates)
    assert select_rates("m", BASE, (us, batch, us_batch), NOON, "batch", "eu") == (1, batch.rates)
    assert select_rates("m", BASE, (us, batch, us_batch), NOON, "default", "us") == (0, us.rates)
    with pytest.raises(ModelUnpriced):  # a batch call in us, and no price for that combination
        select_rates("m", BASE, (us, batch), NOON, "batch", "us")


def test_a_tier_without_rates_is_unpriced_never_the_default_price():
    eu = Variant(rates("2.2"), region="eu")
    with pytest.raises(ModelUnpriced, match="flex"):
        select_rates("m", BASE, (), NOON, "flex")
    with pytest.raises(ModelUnpriced, match="flex"):
        select_rates("m", BASE, (eu,), NOON, "flex", "eu")
    # No price at all stays for `quote` to refuse.
    assert select_rates("m", None, (), NOON, "flex") == (None, None)


def test_variants_refuse_malformed_data():
    for bad in (
        {"input": "1"},  # no condition
        {"service_tier": "default", "input": "1"},  # the base is not a variant
        {"service_tier": "turbo", "input": "1"},
        {"region": "US", "input": "1"},
        {"time_from": "16:30", "input": "1"},
        {"time_from": "24:00", "time_to": "01:00", "input": "1"},
        {"time_from": "01:00", "time_to": "01:00", "input": "1"},
        {"region": "eu", "input": "-1"},
    ):
        with pytest.raises(ValueError):
            variant_from(bad)


def test_bedrock_profile_ids_name_their_region():
    assert bedrock_region("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == "us"
    assert bedrock_region("us-gov.anthropic.claude-3-haiku-20240307-v1:0") == "us-gov"
    assert bedrock_region("Global.anthropic.claude-sonnet-4-5-20250929-v1:0") == "global"
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0"
    assert bedrock_region(arn) == "eu"
    for plain in ("anthropic.claude-3-haiku-20240307-v1:0", "gpt-4o", "us.gpt-4o", "eu"):
        assert bedrock_region(plain) is None


# Through the service


async def test_catalog_shows_variants_in_credits_and_upstream_in_usd(client, admin, model, make_key):
    reader = {"X-API-Key": await make_key("catalog:read")}
    pricing = (await client.get(f"/models/{model}", headers=reader)).json()
    flex = pricing["pricing"]["variants"][0]
    assert flex == {
        "service_tier": "flex",
        "region": None,
        "time_from": None,
        "time_to": None,
        "input": "140",
        "output": "560",
        "cached_input": None,
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": "0",
        "tiers": [],
    }
    assert "upstream" not in pricing
    night = (await client.get(f"/models/{model}", headers=admin)).json()["upstream"]["variants"][3]
    assert (night["time_from"], night["time_to"], night["input"], night["output"]) == ("16:30", "00:30", "0.5", "2")
    history = (await client.get("/catalog/prices", params={"model": model}, headers=admin)).json()
    assert [v["service_tier"] for v in history["data"][0]["variants"]] == ["flex", "batch", None, None]


async def test_events_are_priced_by_tier_region_and_time_of_day(client, writer, acme, model, clock, conn_engine):
    cases = [
        ("base", {"occurred_at": day_at(clock, 10)}, "0.840000000"),
        ("flex", {"occurred_at": day_at(clock, 10), "service_tier": "flex"}, "0.420000000"),
        ("eu", {"occurred_at": day_at(clock, 10), "region": "eu"}, "0.924000000"),
        ("us", {"occurred_at": day_at(clock, 10), "region": "us"}, "0.840000000"),  # not priced apart
        ("night", {"occurred_at": day_at(clock, 18)}, "0.210000000"),
        ("after-midnight", {"occurred_at": day_at(clock, 0, 15)}, "0.210000000"),
        ("window-end", {"occurred_at": day_at(clock, 0, 30)}, "0.840000000"),
        # A flex call at night: the flex rates (the only flex price), not the night's.
        ("flex-night", {"occurred_at": day_at(clock, 18), "service_tier": "flex"}, None),
    ]
    for event_id, fields, cost in cases:
        response = await post_event(client, writer, event_id, model, **fields)
        if cost is None:  # flex and the night window both hold, equally: no price for the pair
            assert response.status_code == 202, response.text
            assert response.json()["unrated_reason"] == "model_unpriced"
            continue
        assert response.status_code == 201, (event_id, response.text)
        event = response.json()
        assert event["cost"] == cost, (event_id, event)
        assert event["service_tier"] == fields.get("service_tier", "default")
        assert event.get("region") == fields.get("region")
    stored = {e["event_id"]: e for e in await listed(client, writer)}
    assert stored["flex"]["service_tier"] == "flex" and stored["eu"]["region"] == "eu"
    assert stored["flex-night"]["status"] == "unrated" and stored["flex-night"]["service_tier"] == "flex"
    await assert_reconciled(conn_engine)


async def test_a_tier_without_rates_waits_unrated_and_is_charged_when_priced(
    client, admin, writer, acme, model, clock, conn_engine
):
    response = await post_event(client, writer, "p1", model, service_tier="priority", occurred_at=day_at(clock, 10))
    assert response.status_code == 202, response.text
    assert response.json()["unrated_reason"] == "model_unpriced" and response.json()["service_tier"] == "priority"
    before = await balance(client, admin)
    assert (await rate(client)).rated == 0  # still no priority price
    # A new price version with priority rates (3.5 / 14): (1000 x 3.5 + 500 x 14) / 1e6 = 0.0105 USD -> 1.47
    body = {"model": model, "input": "2", "output": "8", "variants": [{"service_tier": "priority", "input": "3.5"}]}
    body["variants"][0]["output"] = "14"
    clock.advance(minutes=1)  # the new version starts after the call, at the app's (test) clock
    assert (await client.post("/catalog/prices", json=body, headers=admin)).status_code == 201
    await rate(client)  # (or the worker's rater, which the catalog change wakes, was first)
    charged = next(e for e in await listed(client, writer) if e["event_id"] == "p1")
    assert (charged["status"], charged["cost"], charged["service_tier"]) == ("charged", "1.470000000", "priority")
    assert await balance(client, admin) == before - D("1.47")
    await assert_reconciled(conn_engine)


async def test_a_replay_must_repeat_the_tier_and_region(client, writer, acme, model, clock):
    first = await post_event(client, writer, "r1", model, service_tier="flex", occurred_at=day_at(clock, 10))
    assert first.status_code == 201
    again = await post_event(client, writer, "r1", model, service_tier="flex", occurred_at=day_at(clock, 10))
    assert again.status_code == 200 and again.json()["replay"] is True
    other = await post_event(client, writer, "r1", model, occurred_at=day_at(clock, 10))
    assert "service_tier" in assert_error(other, 422, "idempotency_key_reused")["message"]
    region = await post_event(
        client, writer, "r1", model, service_tier="flex", region="eu", occurred_at=day_at(clock, 10)
    )
    assert "region" in assert_error(region, 422, "idempotency_key_reused")["message"]


async def test_estimates_and_holds_price_the_tier_and_refuse_one_without_rates(client, writer, acme, model, clock):
    clock.at = clock.now().replace(hour=10, minute=0)
    estimate = await client.post("/estimate", json={"model": model, **CALL, "service_tier": "flex"}, headers=writer)
    assert estimate.status_code == 200, estimate.text
    assert (estimate.json()["credits"], estimate.json()["service_tier"]) == ("0.420000000", "flex")
    eu = await client.post("/estimate", json={"model": model, **CALL, "region": "eu"}, headers=writer)
    assert (eu.json()["credits"], eu.json()["region"]) == ("0.924000000", "eu")
    clock.at = clock.now().replace(hour=18)
    night = await client.post("/estimate", json={"model": model, **CALL}, headers=writer)
    assert night.json()["credits"] == "0.210000000"
    clock.at = clock.now().replace(hour=10)

    priority = await client.post("/estimate", json={"model": model, **CALL, "service_tier": "priority"}, headers=writer)
    error = assert_error(priority, 422, "model_unpriced")
    assert error["param"] == "service_tier" and "priority" in error["message"]
    compared = await client.post(
        "/estimate", json={"models": [model], **CALL, "service_tier": "priority"}, headers=writer
    )
    assert compared.json()["unavailable"][0]["error"]["code"] == "model_unpriced"

    hold = {"model": model, "account_id": "acme", "input_tokens": 1000, "max_output_tokens": 500}
    flex = await client.post("/authorizations", json=hold | {"service_tier": "flex"}, headers=writer)
    assert flex.status_code == 201, flex.text
    assert (flex.json()["amount"], flex.json()["service_tier"]) == ("0.420000000", "flex")
    refused = await client.post("/authorizations", json=hold | {"service_tier": "priority"}, headers=writer)
    assert_error(refused, 422, "model_unpriced")
    settle = await post_event(client, writer, "h1", model, service_tier="flex", authorization_id=flex.json()["id"])
    assert settle.status_code == 201 and settle.json()["cost"] == "0.420000000"


async def test_malformed_tiers_regions_and_variants_are_refused(client, admin, writer, acme, model):
    for fields in ({"service_tier": "turbo"}, {"service_tier": None}, {"region": "EU"}, {"region": "x" * 40}):
        response = await post_event(client, writer, "bad", model, **fields)
        assert_error(response, 400, "validation_error")
    assert (await listed(client, writer)) == []
    estimate = await client.post("/estimate", json={"model": model, **CALL, "service_tier": "scale"}, headers=writer)
    assert_error(estimate, 400, "validation_error")

    for variants in (
        [{"input": "1", "output": "2"}],  # no condition
        [{"service_tier": "default", "input": "1"}],
        [{"time_from": "16:30", "input": "1"}],
        [{"time_from": "16:30", "time_to": "16:30", "input": "1"}],
        [{"time_from": "25:00", "time_to": "01:00", "input": "1"}],
        [{"region": "eu", "input": "-1"}],
        [{"region": "eu", "input": "1"}, {"region": "eu", "input": "2"}],  # the same conditions twice
        [{"region": "eu", "input": "1", "tiers": [{"above_input_tokens": 5, "input": "1"}] * 2}],
        [{"region": "eu", "input": "1", "colour": "red"}],
    ):
        body = {"model": model, "input": "2", "output": "8", "variants": variants}
        response = await client.post("/catalog/prices", json=body, headers=admin)
        assert_error(response, 400, "validation_error")
    history = (await client.get("/catalog/prices", params={"model": model}, headers=admin)).json()["data"]
    assert len(history) == 1  # nothing was written
