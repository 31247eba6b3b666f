"""Credit holds: POST /authorizations, POST /authorizations/{id}/release, GET /authorizations/{id},
settlement by a usage event naming the hold, expiry, idempotency, and concurrent holds."""

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

NANO = Decimal("0.000000001")
# gpt-4o output is 10 USD per 1M tokens: 1.4 credits per 1000 output tokens at margin 1.4.
SEVEN = {"model": "openai/gpt-4o", "input_tokens": 0, "max_output_tokens": 5000}  # a hold of exactly 7 credits


def amount(value: Decimal | str) -> str:
    return format(Decimal(value).quantize(NANO), "f")


@pytest.fixture
async def writer(make_key) -> dict[str, str]:
    """A gateway's key: holds credits and records usage for any account."""
    return {"X-API-Key": await make_key("usage:write")}


async def create_account(client, admin, account_id: str, grant: str | None = "100") -> None:
    response = await client.post("/accounts", json={"id": account_id, "name": account_id}, headers=admin)
    assert response.status_code == 201, response.text
    if grant:
        response = await client.post(f"/accounts/{account_id}/grants", json={"amount": grant}, headers=admin)
        assert response.status_code == 201, response.text


async def hold(client, headers, account_id: str | None = "acme", **call):
    body = {**call, **({"account_id": account_id} if account_id else {})}
    return await client.post("/authorizations", json=body, headers=headers)


async def held(client, headers, account_id: str = "acme", **call) -> dict:
    response = await hold(client, headers, account_id, **call)
    assert response.status_code == 201, response.text
    return response.json()


async def funds(client, admin, account_id: str = "acme") -> tuple[str, str, str]:
    """(balance, pending, available), the same from the balance and the account endpoints."""
    response = await client.get(f"/accounts/{account_id}/balance", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    account = (await client.get(f"/accounts/{account_id}", headers=admin)).json()
    assert (account["balance"], account["pending"], account["available"]) == (
        body["balance"],
        body["pending"],
        body["available"],
    )
    assert Decimal(body["available"]) == Decimal(body["balance"]) - Decimal(body["pending"])
    return body["balance"], body["pending"], body["available"]


async def get_hold(client, headers, authorization_id: str) -> dict:
    response = await client.get(f"/authorizations/{authorization_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def usage_events(client, admin) -> list[dict]:
    response = await client.get("/usage", params={"limit": 1000}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_hold_is_the_worst_case_cost(client, admin, writer, clock):
    await create_account(client, admin, "acme")
    call = {
        "model": "anthropic/claude-sonnet-4-5",
        "input_tokens": 12_000,
        "cached_input_tokens": 4000,
        "cache_write_tokens": 3000,
        "max_output_tokens": 4000,
    }
    quoted = (await client.post("/estimate", json=call, headers=admin)).json()
    # (5000 x 3 + 4000 x 0.3 + 3000 x 3.75 + 4000 x 15) / 1e6 = 0.08745 USD, x 140
    assert quoted["credits"] == "12.243000000"
    body = await held(client, writer, **call)
    assert body["id"].startswith("auth_")
    assert (body["account_id"], body["model"], body["amount"], body["status"]) == (
        "acme",
        "anthropic/claude-sonnet-4-5",
        quoted["credits"],
        "pending",
    )
    assert (body["input_tokens"], body["max_output_tokens"], body["price_version"]) == (
        12_000,
        4000,
        quoted["price_version"],
    )
    assert datetime.fromisoformat(body["created_at"]) == clock.now()
    assert datetime.fromisoformat(body["expires_at"]) == clock.now() + timedelta(seconds=600)
    assert body["released_at"] is None and body["settled_at"] is None and body["settled_amount"] is None
    assert body["event_id"] is None
    assert body["available"] == "87.757000000"
    assert await funds(client, admin) == ("100.000000000", "12.243000000", "87.757000000")
    stored = await get_hold(client, writer, body["id"])
    assert {k: v for k, v in stored.items() if k != "available"} == {k: v for k, v in body.items() if k != "available"}

    # Across a long-context tier, and for an embedding model (which bills input only), the hold is the estimate too.
    tier = {"model": "google/gemini-2.5-pro", "input_tokens": 200_001, "max_output_tokens": 1000}
    quoted_tier = (await client.post("/estimate", json=tier, headers=admin)).json()
    assert quoted_tier["credits"] == "72.100350000" and quoted_tier["tier"] == 200_000
    assert (await held(client, writer, **tier))["amount"] == "72.100350000"
    embedding = {"model": "openai/text-embedding-3-small", "input_tokens": 1_000_000}
    quoted_embedding = (await client.post("/estimate", json=embedding, headers=admin)).json()
    assert (await held(client, writer, **embedding, max_output_tokens=0))["amount"] == quoted_embedding["credits"]
    pending = Decimal("12.243") + Decimal("72.10035") + Decimal(quoted_embedding["credits"])
    assert await funds(client, admin) == ("100.000000000", amount(pending), amount(100 - pending))
    # A hold posts nothing to the ledger.
    ledger = (await client.get("/accounts/acme/ledger", headers=admin)).json()["data"]
    assert [entry["kind"] for entry in ledger] == ["grant"]
    listed = (await client.get("/accounts", headers=admin)).json()["data"]
    assert [(a["id"], a["pending"]) for a in listed] == [("acme", amount(pending))]


async def test_insufficient_credits_holds_nothing(client, admin, writer):
    await create_account(client, admin, "acme", grant="14")
    first, second = await held(client, writer, **SEVEN), await held(client, writer, **SEVEN)
    assert (first["amount"], first["available"], second["available"]) == ("7.000000000", "7.000000000", "0.000000000")
    error = assert_error(await hold(client, writer, **SEVEN), 402, "insufficient_credits")
    assert "7.000000000" in error["message"]
    assert await funds(client, admin) == ("14.000000000", "14.000000000", "0.000000000")
    # A free call fits in nothing.
    free = await held(client, writer, model="ollama/llama3", input_tokens=100, max_output_tokens=100)
    assert free["amount"] == "0.000000000"
    # An account without credits, and one that does not exist.
    await create_account(client, admin, "empty", grant=None)
    assert_error(await hold(client, writer, "empty", **SEVEN), 402, "insufficient_credits")
    assert await funds(client, admin, "empty") == ("0.000000000", "0.000000000", "0.000000000")
    assert_error(await hold(client, writer, "ghost", **SEVEN), 404, "account_not_found")


async def test_a_usage_event_settles_its_hold(client, admin, writer, clock, conn_engine):
    await create_account(client, admin, "acme")
    worst = await held(client, writer, model="openai/gpt-4o", input_tokens=10_000, max_output_tokens=2000)
    assert worst["amount"] == "6.300000000"  # 3.5 for the input, 2.8 for 2000 output tokens
    clock.advance(seconds=30)
    event = {"event_id": "e1", "account_id": "acme", "model": "gpt-4o", "input_tokens": 10_000, "output_tokens": 700}
    response = await client.post("/usage", json=event | {"authorization_id": worst["id"]}, headers=writer)
    assert response.status_code == 201, response.text
    assert response.json()["cost"] == "4.480000000" and response.json()["authorization_id"] == worst["id"]
    # The actual cost is charged; the hold is released, nothing is pending.
    assert await funds(client, admin) == ("95.520000000", "0.000000000", "95.520000000")
    settled = await get_hold(client, writer, worst["id"])
    assert (settled["status"], settled["settled_amount"], settled["event_id"]) == ("settled", "4.480000000", "e1")
    assert datetime.fromisoformat(settled["settled_at"]) == clock.now() and settled["released_at"] is None

    # The same event again is a replay; another event naming the settled hold is refused, recording nothing.
    replay = await client.post("/usage", json=event | {"authorization_id": worst["id"]}, headers=writer)
    assert replay.status_code == 200 and replay.json()["replay"] is True, replay.text
    error = assert_error(
        await client.post("/usage", json=event | {"event_id": "e2", "authorization_id": worst["id"]}, headers=writer),
        409,
        "authorization_settled",
    )
    assert error.get("param") == "authorization_id"
    assert [e["event_id"] for e in await usage_events(client, admin)] == ["e1"]
    assert await funds(client, admin) == ("95.520000000", "0.000000000", "95.520000000")
    # A settled hold cannot be released.
    assert_error(
        await client.post(f"/authorizations/{worst['id']}/release", headers=writer), 409, "authorization_settled"
    )
    assert (await get_hold(client, writer, worst["id"]))["status"] == "settled"

    # In a batch: the first event naming a hold settles it, a second one naming it fails alone.
    batch_hold = await held(client, writer, **SEVEN)
    events = [
        {"event_id": "b1", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 100, "output_tokens": 100},
        {"event_id": "b2", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 1000, "output_tokens": 200},
        {"event_id": "b3", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 10, "output_tokens": 10},
    ]
    events[0]["authorization_id"] = events[1]["authorization_id"] = batch_hold["id"]
    response = await client.post("/usage/batch", json={"events": events}, headers=writer)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "error", "created"]
    assert results[1]["error"]["code"] == "authorization_settled"
    settled = await get_hold(client, writer, batch_hold["id"])
    assert (settled["status"], settled["event_id"], settled["settled_amount"]) == (
        "settled",
        "b1",
        results[0]["event"]["cost"],
    )

    # Usage above the hold is charged in full: usage already happened.
    small = await held(client, writer, model="openai/gpt-4o", input_tokens=0, max_output_tokens=10)
    over = {"event_id": "o1", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 0, "output_tokens": 5000}
    response = await client.post("/usage", json=over | {"authorization_id": small["id"]}, headers=writer)
    assert response.status_code == 201 and response.json()["cost"] == "7.000000000", response.text
    assert (await get_hold(client, writer, small["id"]))["settled_amount"] == "7.000000000"
    balance, pending, _ = await funds(client, admin)
    assert pending == "0.000000000"
    charged = sum(Decimal(e["cost"]) for e in await usage_events(client, admin))
    assert Decimal(balance) == 100 - charged
    await assert_reconciled(conn_engine)


async def test_concurrent_events_settle_a_hold_once(client, admin, writer, conn_engine):
    await create_account(client, admin, "acme")
    target = await held(client, writer, **SEVEN)
    events = [
        {"event_id": f"c{i}", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 0, "output_tokens": 1000,
         "authorization_id": target["id"]}
        for i in range(10)
    ]  # fmt: skip
    responses = await asyncio.gather(*(client.post("/usage", json=event, headers=writer) for event in events))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "authorization_settled")
    winner = next(r.json()["event_id"] for r in responses if r.status_code == 201)
    settled = await get_hold(client, writer, target["id"])
    assert (settled["status"], settled["event_id"], settled["settled_amount"]) == ("settled", winner, "1.400000000")
    assert [e["event_id"] for e in await usage_events(client, admin)] == [winner]
    assert await funds(client, admin) == ("98.600000000", "0.000000000", "98.600000000")
    await assert_reconciled(conn_engine)


async def test_holds_of_other_accounts(client, admin, writer, make_key):
    await create_account(client, admin, "acme")
    await create_account(client, admin, "globex")
    acme_hold = await held(client, writer, **SEVEN)
    # An event of another account naming the hold: not found, nothing recorded.
    event = {"event_id": "g1", "account_id": "globex", "model": "openai/gpt-4o", "input_tokens": 10}
    error = assert_error(
        await client.post("/usage", json=event | {"authorization_id": acme_hold["id"]}, headers=writer),
        404,
        "authorization_not_found",
    )
    assert error.get("param") == "authorization_id"
    assert_error(
        await client.post("/usage", json=event | {"authorization_id": "auth_nope"}, headers=writer),
        404,
        "authorization_not_found",
    )
    assert await usage_events(client, admin) == []
    assert (await get_hold(client, writer, acme_hold["id"]))["status"] == "pending"

    # A key bound to globex sees and releases no hold of acme's, and cannot hold acme's credits.
    globex = {"X-API-Key": await make_key("usage:write", account_id="globex")}
    assert_error(await client.get(f"/authorizations/{acme_hold['id']}", headers=globex), 404, "authorization_not_found")
    assert_error(
        await client.post(f"/authorizations/{acme_hold['id']}/release", headers=globex), 404, "authorization_not_found"
    )
    assert (await get_hold(client, writer, acme_hold["id"]))["status"] == "pending"
    assert_error(await hold(client, globex, "acme", **SEVEN), 404, "account_not_found")
    own = await held(client, globex, None, **SEVEN)  # the bound key's own account is implied
    assert own["account_id"] == "globex"
    assert (await get_hold(client, globex, own["id"]))["account_id"] == "globex"
    acme = {"X-API-Key": await make_key("usage:write", account_id="acme")}
    assert (await get_hold(client, acme, acme_hold["id"]))["id"] == acme_hold["id"]
    assert await funds(client, admin, "acme") == ("100.000000000", "7.000000000", "93.000000000")
    assert await funds(client, admin, "globex") == ("100.000000000", "7.000000000", "93.000000000")
    # Unknown holds.
    assert_error(await client.get("/authorizations/auth_nope", headers=writer), 404, "authorization_not_found")
    assert_error(await client.post("/authorizations/auth_nope/release", headers=writer), 404, "authorization_not_found")


async def test_release(client, admin, writer, clock):
    await create_account(client, admin, "acme")
    target = await held(client, writer, **SEVEN)
    other = await held(client, writer, **SEVEN)
    assert await funds(client, admin) == ("100.000000000", "14.000000000", "86.000000000")
    clock.advance(seconds=10)
    response = await client.post(f"/authorizations/{target['id']}/release", headers=writer)
    assert response.status_code == 200, response.text
    released = response.json()
    assert released["status"] == "released" and datetime.fromisoformat(released["released_at"]) == clock.now()
    assert released["settled_at"] is None and released["amount"] == "7.000000000"
    assert await funds(client, admin) == ("100.000000000", "7.000000000", "93.000000000")
    # Releasing again answers the same and changes nothing.
    clock.advance(seconds=10)
    again = await client.post(f"/authorizations/{target['id']}/release", headers=writer)
    assert again.status_code == 200 and again.json() == released
    assert await get_hold(client, writer, target["id"]) == released
    assert await funds(client, admin) == ("100.000000000", "7.000000000", "93.000000000")
    assert (await get_hold(client, writer, other["id"]))["status"] == "pending"
    # Nothing was posted to the ledger by holding and releasing.
    assert [e["kind"] for e in (await client.get("/accounts/acme/ledger", headers=admin)).json()["data"]] == ["grant"]


async def test_holds_expire_without_any_job(client, admin, writer, clock):
    await create_account(client, admin, "acme", grant="14")
    short = await held(client, writer, **SEVEN, ttl_seconds=60)
    await held(client, writer, **SEVEN, ttl_seconds=3600)
    assert datetime.fromisoformat(short["expires_at"]) == clock.now() + timedelta(seconds=60)
    assert_error(await hold(client, writer, **SEVEN), 402, "insufficient_credits")
    clock.advance(seconds=59)
    assert (await get_hold(client, writer, short["id"]))["status"] == "pending"
    assert await funds(client, admin) == ("14.000000000", "14.000000000", "0.000000000")
    clock.advance(seconds=1)  # expires_at is exclusive
    assert (await get_hold(client, writer, short["id"]))["status"] == "expired"
    assert await funds(client, admin) == ("14.000000000", "7.000000000", "7.000000000")
    # Releasing an expired hold changes nothing; its credits can be held again.
    released = await client.post(f"/authorizations/{short['id']}/release", headers=writer)
    assert released.status_code == 200 and released.json()["status"] == "expired", released.text
    assert released.json()["released_at"] is None
    again = await held(client, writer, **SEVEN)
    assert again["available"] == "0.000000000"
    assert_error(await hold(client, writer, **SEVEN), 402, "insufficient_credits")


async def test_idempotency_key(client, admin, writer):
    await create_account(client, admin, "acme")
    await create_account(client, admin, "globex")
    key = {**writer, "Idempotency-Key": "call-1"}
    first = await hold(client, key, **SEVEN)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers, first.text
    replay = await hold(client, key, **SEVEN)
    assert replay.status_code == 200, replay.text
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == first.json()["id"] and replay.json()["amount"] == first.json()["amount"]
    assert replay.json().get("replay") is True
    assert await funds(client, admin) == ("100.000000000", "7.000000000", "93.000000000")
    # The same key with another payload names the field that differs.
    error = assert_error(
        await hold(client, key, **(SEVEN | {"max_output_tokens": 6000})), 422, "idempotency_key_reused"
    )
    assert error.get("param") == "max_output_tokens" and "max_output_tokens" in error["message"]
    error = assert_error(await hold(client, key, **(SEVEN | {"ttl_seconds": 30})), 422, "idempotency_key_reused")
    assert error.get("param") == "ttl_seconds"
    assert await funds(client, admin) == ("100.000000000", "7.000000000", "93.000000000")
    # Keys are per account.
    assert (await hold(client, key, "globex", **SEVEN)).status_code == 201
    # Concurrent retries of one new key hold once.
    racing = {**writer, "Idempotency-Key": "call-3"}
    responses = await asyncio.gather(*(hold(client, racing, **SEVEN) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await funds(client, admin) == ("100.000000000", "14.000000000", "86.000000000")
    # A refused hold is not remembered: once credits arrive, the same key holds them.
    await create_account(client, admin, "poor", grant=None)
    assert_error(
        await hold(client, {**writer, "Idempotency-Key": "call-2"}, "poor", **SEVEN), 402, "insufficient_credits"
    )
    await client.post("/accounts/poor/grants", json={"amount": "10"}, headers=admin)
    retried = await hold(client, {**writer, "Idempotency-Key": "call-2"}, "poor", **SEVEN)
    assert retried.status_code == 201, retried.text
    too_long = await hold(client, {**writer, "Idempotency-Key": "x" * 201}, **SEVEN)
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "Idempotency-Key", too_long.text


async def test_authorization_validation(client, admin, writer, make_key):
    await create_account(client, admin, "acme")
    cases = [
        ({"model": "nobody/no-such-model"}, 404, "model_not_found", "model"),
        ({"model": "google/gemini-exp-1114"}, 422, "model_unpriced", "model"),
        ({"account_id": None}, 400, "validation_error", "account_id"),
        ({"input_tokens": -1}, 400, "validation_error", "input_tokens"),
        ({"max_output_tokens": -1}, 400, "validation_error", "max_output_tokens"),
        ({"max_output_tokens": None}, 400, "validation_error", "max_output_tokens"),
        ({"input_tokens": 100, "cached_input_tokens": 101}, 400, "validation_error", "cached_input_tokens"),
        ({"input_tokens": 100, "cached_input_tokens": 50, "cache_write_tokens": 51}, 400, "validation_error",
         "cache_write_tokens"),
        ({"ttl_seconds": 0}, 400, "validation_error", "ttl_seconds"),
        ({"ttl_seconds": 8 * 24 * 3600}, 400, "validation_error", "ttl_seconds"),
        ({"input_tokens": "many"}, 400, "validation_error", "input_tokens"),
        ({"colour": "red"}, 400, "validation_error", "colour"),
    ]  # fmt: skip
    wrong = []
    for change, status, code, param in cases:
        body = {k: v for k, v in ({"account_id": "acme", **SEVEN} | change).items() if v is not None}
        error = assert_error(await client.post("/authorizations", json=body, headers=writer), status, code)
        if error.get("param") != param and f"`{param}`" not in error["message"]:
            wrong.append((change, param, error))
    assert wrong == [], "errors naming another field than the one sent:\n" + "\n".join(map(str, wrong))
    assert await funds(client, admin) == ("100.000000000", "0.000000000", "100.000000000")
    # usage:write is needed to hold, release and read holds.
    reader = {"X-API-Key": await make_key("ledger:read", "catalog:read")}
    assert_error(await hold(client, reader, **SEVEN), 403, "insufficient_scope")
    target = await held(client, writer, **SEVEN)
    assert_error(await client.get(f"/authorizations/{target['id']}", headers=reader), 403, "insufficient_scope")
    assert_error(
        await client.post(f"/authorizations/{target['id']}/release", headers=reader), 403, "insufficient_scope"
    )
    assert_error(await hold(client, {}, **SEVEN), 401, "invalid_api_key")


async def test_concurrent_holds_never_exceed_the_available_credits(client, admin, writer, conn_engine):
    await create_account(client, admin, "acme", grant="100")
    responses = await asyncio.gather(*(hold(client, writer, **SEVEN) for _ in range(40)))
    created = [r.json() for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(created) == 100 // 7 == 14, [r.text for r in refused[:3]]
    assert len(created) * Decimal(7) <= 100
    for response in refused:
        assert_error(response, 402, "insufficient_credits")
    assert {h["amount"] for h in created} == {"7.000000000"}
    assert len({h["id"] for h in created}) == 14
    # Each answer's `available` is what was left after it: 93, 86, ... 2, each once.
    assert sorted(Decimal(h["available"]) for h in created) == [Decimal(100 - 7 * n) for n in range(14, 0, -1)]
    balance, pending, available = await funds(client, admin)
    assert pending == amount(sum(Decimal(h["amount"]) for h in created)) == "98.000000000"
    assert (balance, available) == ("100.000000000", "2.000000000")
    assert Decimal(available) >= 0
    await assert_reconciled(conn_engine)
