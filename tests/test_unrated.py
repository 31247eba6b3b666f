"""Unrated usage: usage the catalog cannot price is recorded (202), listed, counted, and charged exactly
once when the catalog learns the model or its price, at the price in effect when the usage occurred."""

import asyncio
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.usage import rating
from tests.helpers import assert_error, assert_reconciled
from tests.test_cli import billing

GRANT = Decimal("100")
# A private model name, then priced by an operator alias at 2 / 8 USD per 1M:
# (1000 x 2 + 500 x 8) / 1e6 = 0.006 USD; x 1.4 x 100 = 0.84 credits
CALL = {"model": "acme-private-llm-v2", "input_tokens": 1000, "output_tokens": 500}
COST = "0.840000000"


@pytest.fixture
async def acme(client, admin) -> str:
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    grant = await client.post("/accounts/acme/grants", json={"amount": str(GRANT)}, headers=admin)
    assert grant.status_code == 201
    return "acme"


@pytest.fixture
async def finance(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("usage:write", "ledger:read")}


async def priced_model(client, admin, scratch: str, name: str = "m", **rates) -> str:
    model = f"{scratch}/{name}"
    response = await client.put(
        "/catalog/models", json={"provider": scratch, "name": name, "type": "language"}, headers=admin
    )
    assert response.status_code == 200, response.text
    price = await client.post(
        "/catalog/prices", json={"model": model, "input": "2", "output": "8", **rates}, headers=admin
    )
    assert price.status_code == 201, price.text
    return model


async def balance(client, admin) -> Decimal:
    return Decimal((await client.get("/accounts/acme/balance", headers=admin)).json()["balance"])


async def listed(client, headers, **params) -> list[dict]:
    response = await client.get("/usage", params={"limit": 1000, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def rate(client, catalog=None) -> rating.RatingResult:
    """A rating pass on the app's pool, which works only on the app's own event loop (the test client's portal)."""
    state = client.app.state
    call = client.blocking_portal.call
    return await asyncio.to_thread(call, rating.rate, state.pool, catalog or state.catalog.catalog, state.clock.now)


async def until_charged(client, headers, event_id: str, seconds: float = 15) -> dict:
    """The worker's rater charges waiting usage a moment after the catalog changes."""
    for _ in range(int(seconds * 10)):
        charged = [e for e in await listed(client, headers, status="charged") if e["event_id"] == event_id]
        if charged:
            return charged[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{event_id} was not rated")


async def test_unknown_model_is_kept_listed_counted_and_rated_once(
    client, admin, finance, acme, scratch, clock, conn_engine
):
    occurred = clock.now() - timedelta(hours=2)
    body = {"event_id": "e1", "account_id": "acme", "occurred_at": occurred.isoformat(), **CALL}
    first = await client.post("/usage", json=body, headers=finance)
    assert first.status_code == 202, first.text
    waiting = first.json()
    assert waiting["status"] == "unrated" and waiting["unrated_reason"] == "model_not_found"
    assert (waiting["model"], waiting["reported_model"]) == (CALL["model"], CALL["model"])
    assert waiting["cost"] is waiting["price_version"] is waiting["margin"] is waiting["balance_after"] is None
    assert await balance(client, admin) == GRANT  # unrated is not free: it waits

    # Listed, with its own filter; a retry answers the event as it stands.
    assert [e["event_id"] for e in await listed(client, admin, status="unrated")] == ["e1"]
    assert await listed(client, admin, status="charged") == []
    assert [e["status"] for e in await listed(client, admin)] == ["unrated"]
    retry = await client.post("/usage", json=body, headers=finance)
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == waiting | {"replay": True}
    changed = await client.post("/usage", json=body | {"output_tokens": 501}, headers=finance)
    assert_error(changed, 422, "idempotency_key_reused")

    # Its own line in reports, apart from the charged totals; counted in /metrics.
    report = (await client.get("/reports/usage", params={"group_by": "model"}, headers=admin)).json()
    assert report["rows"] == [] and report["totals"]["events"] == 0
    assert report["unrated"] == {
        "events": 1,
        "input_tokens": 1000,
        "output_tokens": 500,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    csv = await client.get("/reports/usage", params={"group_by": "model", "format": "csv"}, headers=admin)
    assert csv.text.splitlines()[-1].startswith("unrated,1,1000,500,")
    metrics = (await client.get("/metrics")).text
    assert 'billing_usage_events_total{outcome="unrated"}' in metrics

    # The operator names the model: the waiting event is charged, at the price in effect when it occurred.
    model = await priced_model(client, admin, scratch)
    alias = await client.post("/catalog/aliases", json={"alias": CALL["model"], "model": model}, headers=admin)
    assert alias.status_code == 201, alias.text
    assert alias.json() == {"alias": CALL["model"], "model": model, "provider": None, "source": "operator"}
    charged = await until_charged(client, admin, "e1")
    assert (charged["status"], charged["model"], charged["reported_model"]) == ("charged", model, CALL["model"])
    assert charged["cost"] == COST and charged["unrated_since"] == waiting["recorded_at"]
    assert charged["occurred_at"] == waiting["occurred_at"]
    assert await balance(client, admin) == GRANT - Decimal(COST)
    assert await listed(client, admin, status="unrated") == []
    assert "billing_unrated_events_rated_total" in (await client.get("/metrics")).text

    # Retries now replay the charge; another pass, or the same name again, charges nothing more.
    again = await client.post("/usage", json=body, headers=finance)
    assert again.status_code == 200 and again.json()["status"] == "charged" and again.json()["cost"] == COST
    via_id = await client.post("/usage", json=body | {"model": model}, headers=finance)
    assert via_id.status_code == 200 and via_id.json()["cost"] == COST  # the same model by its id
    assert (await rate(client)).rated == 0
    assert await balance(client, admin) == GRANT - Decimal(COST)
    report = (await client.get("/reports/usage", params={"group_by": "model"}, headers=admin)).json()
    assert report["unrated"]["events"] == 0 and report["totals"]["credits"] == COST
    await assert_reconciled(conn_engine)


async def test_unpriced_model_is_rated_when_its_price_arrives(client, admin, finance, acme, scratch, conn_engine):
    model = f"{scratch}/later"
    created = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "later", "type": "language"}, headers=admin
    )
    assert created.status_code == 200
    body = {"event_id": "p1", "account_id": "acme", "model": model, "input_tokens": 1000, "output_tokens": 500}
    response = await client.post("/usage", json=body, headers=finance)
    assert response.status_code == 202 and response.json()["unrated_reason"] == "model_unpriced"
    # Holds and estimates of an unpriced model are refused: they are priced before the call.
    call = {"model": model, "input_tokens": 1000, "output_tokens": 500}
    assert_error(await client.post("/estimate", json=call, headers=admin), 422, "model_unpriced")
    hold = {"model": model, "input_tokens": 10, "max_output_tokens": 10, "account_id": "acme"}
    assert_error(await client.post("/authorizations", json=hold, headers=admin), 422, "model_unpriced")

    price = await client.post("/catalog/prices", json={"model": model, "input": "2", "output": "8"}, headers=admin)
    assert price.status_code == 201
    charged = await until_charged(client, admin, "p1")
    assert charged["cost"] == COST and charged["price_version"] == price.json()["id"]
    assert await balance(client, admin) == GRANT - Decimal(COST)
    await assert_reconciled(conn_engine)


async def test_rated_once_while_retries_arrive(client, admin, finance, acme, scratch, conn_engine):
    """Passes of two workers and retries of the same events all at once: each event is charged once."""
    events = [{"event_id": f"c{i}", "account_id": "acme", **CALL, "model": "rival-private-llm"} for i in range(40)]
    batch = await client.post("/usage/batch", json={"events": events}, headers=finance)
    assert batch.json()["unrated"] == 40
    model = await priced_model(client, admin, scratch)
    alias = await client.post("/catalog/aliases", json={"alias": "rival-private-llm", "model": model}, headers=admin)
    assert alias.status_code == 201
    # This worker's rater wakes a moment later; these passes and retries start at once, and race it too.

    async def retry(event: dict) -> int:
        return (await client.post("/usage", json=event, headers=finance)).status_code

    results = await asyncio.gather(
        rate(client),
        rate(client),
        *(retry(event) for event in events),
        rate(client),
    )
    passes = [result for result in results if isinstance(result, rating.RatingResult)]
    statuses = [result for result in results if isinstance(result, int)]
    assert set(statuses) == {200}
    assert sum(result.rated for result in passes) <= 40
    for _ in range(100):  # this worker's rater may finish what the passes above left
        if not await listed(client, admin, status="unrated"):
            break
        await asyncio.sleep(0.1)
    charged = await listed(client, admin, status="charged")
    assert sorted(e["event_id"] for e in charged) == sorted(e["event_id"] for e in events)
    assert await balance(client, admin) == GRANT - 40 * Decimal(COST)
    await assert_reconciled(conn_engine)


async def test_one_hour_cache_writes_wait_for_their_rate(client, admin, finance, acme, scratch, clock, conn_engine):
    """A price without a 1-hour cache write rate cannot price such writes: those calls wait unrated."""
    model = await priced_model(client, admin, scratch, cache_write="2.5")
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 2000, "output_tokens": 100,
             "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500}}  # fmt: skip
    body = {"event_id": "h1", "account_id": "acme", "model": model, "usage": usage, "usage_format": "anthropic"}
    response = await client.post("/usage", json=body, headers=finance)
    assert response.status_code == 202, response.text
    event = response.json()
    assert (event["input_tokens"], event["cache_write_tokens"], event["cache_write_1h_tokens"]) == (2010, 2000, 500)
    assert event["unrated_reason"] == "model_unpriced" and event["usage"] == usage
    # With the rate: 10 x 2 + 1500 x 2.5 + 500 x 4 + 100 x 8 = 20 + 3750 + 2000 + 800 = 6570 -> 0.00657 USD
    # x 140 = 0.9198 credits. The new version starts after the call, at the app's (test) clock.
    clock.advance(seconds=1)
    again = await client.post(
        "/catalog/prices",
        json={"model": model, "input": "2", "output": "8", "cache_write": "2.5", "cache_write_1h": "4"},
        headers=admin,
    )
    assert again.status_code == 201
    # The version in effect when the call occurred cannot price it; the first later one in effect can.
    clock.advance(minutes=1)
    await rate(client)  # in case this worker's pass ran before the clock moved
    charged = await until_charged(client, admin, "h1")
    assert charged["price_version"] == again.json()["id"]
    assert charged["cost"] == "0.919800000" and charged["usage_format"] == "anthropic"
    await assert_reconciled(conn_engine)


async def test_settling_a_hold_needs_a_priced_model(client, admin, finance, acme):
    hold = await client.post(
        "/authorizations",
        json={"model": "gpt-4o", "input_tokens": 100, "max_output_tokens": 100, "account_id": "acme"},
        headers=admin,
    )
    assert hold.status_code == 201
    body = {"event_id": "s1", "account_id": "acme", **CALL, "authorization_id": hold.json()["id"]}
    assert_error(await client.post("/usage", json=body, headers=finance), 404, "model_not_found")
    assert await listed(client, admin) == []


async def test_billing_rate_lists_what_waits_and_rates_what_it_can(
    client, admin, finance, acme, scratch, database, conn_engine
):
    # This worker's rater looks away (its next pass an hour off), so only `billing rate` rates here.
    client.app.state.rater.delay = 3600
    events = [
        {"event_id": "w1", "account_id": "acme", **CALL, "model": "mystery-model"},
        {"event_id": "w2", "account_id": "acme", **CALL, "model": "mystery-model"},
        {"event_id": "w3", "account_id": "acme", **CALL, "model": "another-mystery", "provider": "azure"},
    ]
    assert (await client.post("/usage/batch", json={"events": events}, headers=finance)).json()["unrated"] == 3
    result = await billing(database, "rate")
    assert "Rated 0 waiting usage events; 3 still wait unrated." in result.stdout
    assert "2 mystery-model: model_not_found" in result.stdout
    assert "1 another-mystery (provider azure): model_not_found" in result.stdout

    # Named by plain SQL, as another process would.
    model = await priced_model(client, admin, scratch)
    async with conn_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO model_aliases (alias, model_id, source) VALUES ('mystery-model', :m, 'operator')"),
            {"m": model},
        )
    result = await billing(database, "rate")
    # (Rated 2, unless a worker's rater was first: in a loaded full run one sometimes is, though this one
    # looks away; either way each event is charged once.)
    assert re.search(r"Rated [02] waiting usage events; 1 still wait unrated\.", result.stdout), result.stdout
    assert "another-mystery" in result.stdout and "mystery-model:" not in result.stdout
    assert await balance(client, admin) == GRANT - 2 * Decimal(COST)
    assert {e["event_id"] for e in await listed(client, admin, status="unrated")} == {"w3"}
    await assert_reconciled(conn_engine)
