"""Webhooks: admin endpoints, events written with the change that raises them (balance crossings, unrated
usage), and delivery to a real HTTP receiver, signed and verified with `standardwebhooks`, retried with
backoff for a day, by any number of workers, across a worker's death."""

import asyncio
import base64
import contextlib
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from standardwebhooks import Webhook

from app import db
from app.asgi import create_app
from app.clock import FixedClock
from app.ledger.service import expire_due_grants, open_books
from app.webhooks import worker
from app.webhooks.worker import Deliverer
from tests.helpers import assert_error, assert_reconciled

# A call in `use`: openai/gpt-4o at 2.5 USD per 1M input tokens, 1000 x 2.5 / 1e6 x 1.4 x 100 = 0.35 credits.


@pytest.fixture(scope="module")
async def webhook_client(settings, shared_clock):
    """One app for the module, with no delivery worker of its own: tests run theirs, on this loop."""
    app = create_app(replace(settings, expiry_sweep_seconds=3600, webhook_poll_seconds=0), shared_clock)
    async with AsyncTestClient(app) as client:
        yield client


@pytest.fixture
def clock(shared_clock, conn_engine) -> FixedClock:
    shared_clock.at = datetime.now(UTC)
    return shared_clock


@pytest.fixture
def client(webhook_client, clock) -> AsyncTestClient:
    return webhook_client


@pytest.fixture
async def pool(settings):
    pool = await db.create_pool(settings.database_url, 4)
    yield pool
    await pool.close()


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=worker.TIMEOUT) as client:
        yield client


class Receiver:
    """A real HTTP server on 127.0.0.1 (in a thread): keeps every request and answers `status`; while
    `hold` is clear it keeps the sender waiting. It can be stopped and started again on its port."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.answer: bytes | None = None  # instead of the short default answer
        self.hold = threading.Event()
        self.hold.set()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.hold.wait(30)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(receiver.answer or (b"got it" if receiver.status < 300 else b"try later"))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def verified(self, secret: str) -> list[dict]:
        """Every body received, each checked with the receiving side's library (which also checks the
        timestamp is within 5 minutes of the real time)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.requests]


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.hold.set()
    if receiver.server is not None:
        receiver.stop()


async def create_webhook(client, admin, url: str, events=("*",), **fields) -> dict:
    response = await client.post("/webhooks", json={"url": url, "events": list(events), **fields}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def create_account(client, admin, account_id: str = "acme", overdraft_limit: str = "0") -> str:
    body = {"id": account_id, "name": account_id, "overdraft_limit": overdraft_limit}
    assert (await client.post("/accounts", json=body, headers=admin)).status_code == 201
    return account_id


async def grant(client, admin, account_id: str, amount: str) -> None:
    client.app.state.clock.advance(seconds=1)
    response = await client.post(f"/accounts/{account_id}/grants", json={"amount": amount}, headers=admin)
    assert response.status_code == 201, response.text


async def adjust(client, admin, account_id: str, amount: str) -> None:
    client.app.state.clock.advance(seconds=1)
    body = {"amount": amount, "reason": "test"}
    response = await client.post(f"/accounts/{account_id}/adjustments", json=body, headers=admin)
    assert response.status_code == 201, response.text


async def use(client, admin, account_id: str, *event_ids: str) -> str:
    """One batch of calls of 0.35 credits each; the balance after them."""
    client.app.state.clock.advance(seconds=1)
    body = [
        {"event_id": e, "account_id": account_id, "model": "openai/gpt-4o", "input_tokens": 1000} for e in event_ids
    ]
    if len(body) == 1:
        response = await client.post("/usage", json=body[0], headers=admin)
        assert response.status_code == 201, response.text
    else:
        response = await client.post("/usage/batch", json={"events": body}, headers=admin)
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} == {"created"}, response.text
    return (await client.get(f"/accounts/{account_id}/balance", headers=admin)).json()["balance"]


async def set_threshold(client, admin, account_id: str, threshold: str | None) -> dict:
    client.app.state.clock.advance(seconds=1)
    body = {"low_balance_threshold": threshold}
    response = await client.patch(f"/accounts/{account_id}", json=body, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


async def events(conn_engine) -> list[tuple[str, str, dict]]:
    """The outbox in the order written (the helpers that change balances move the clock on a second
    first), and by type within a change: (account, type, data)."""
    async with conn_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT account_id, type, payload FROM webhook_events ORDER BY created_at, type")
        )
        return [(row.account_id, row.type, row.payload["data"]) for row in rows]


async def deliveries(client, admin, endpoint_id: str, **params) -> list[dict]:
    response = await client.get(f"/webhooks/{endpoint_id}/deliveries", params=params, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def deliver_all(deliverer: Deliverer, http: httpx.AsyncClient) -> int:
    sent = 0
    while count := await deliverer.deliver_due(http):
        sent += count
    return sent


# The admin endpoints


async def test_create_list_get_update_delete(client, admin, clock):
    created = await create_webhook(client, admin, "https://example.com/hooks", ["balance.low"], description="ops")
    assert created["id"].startswith("whep_")
    assert created["events"] == ["balance.low"] and created["description"] == "ops" and created["disabled"] is False
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    Webhook(secret)  # the receiving side's library takes it as it is

    # The secret is never shown again.
    listed = (await client.get("/webhooks", headers=admin)).json()
    assert listed == {"data": [created], "next_cursor": None}
    assert (await client.get(f"/webhooks/{created['id']}", headers=admin)).json() == created

    changes = {"url": "http://hooks.internal:8080/x", "events": ["*"], "description": None, "disabled": True}
    updated = await client.patch(f"/webhooks/{created['id']}", json=changes, headers=admin)
    assert updated.status_code == 200, updated.text
    assert updated.json() | {"updated_at": None} == created | changes | {"updated_at": None}
    # A field left out stays as it was.
    partial = await client.patch(f"/webhooks/{created['id']}", json={"disabled": False}, headers=admin)
    assert partial.json()["url"] == changes["url"] and partial.json()["disabled"] is False

    clock.advance(seconds=1)
    second = await create_webhook(client, admin, "https://example.com/2")
    first_page = (await client.get("/webhooks", params={"limit": 1}, headers=admin)).json()
    assert [w["id"] for w in first_page["data"]] == [created["id"]]
    rest = await client.get("/webhooks", params={"cursor": first_page["next_cursor"]}, headers=admin)
    assert [w["id"] for w in rest.json()["data"]] == [second["id"]]

    deleted = await client.delete(f"/webhooks/{created['id']}", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"]
    assert_error(await client.get(f"/webhooks/{created['id']}", headers=admin), 404, "webhook_not_found")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://", "events": ["*"]}, "url"),
        ({"url": "example.com/hooks", "events": ["*"]}, "url"),
        ({"url": "http://[::1/x", "events": ["*"]}, "url"),
        ({"url": "http://example.com:port/x", "events": ["*"]}, "url"),
        ({"url": "", "events": ["*"]}, "url"),
        ({"url": "https://example.com/" + "x" * 2000, "events": ["*"]}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["balance.lowest"]}, "events"),
        ({"url": "https://example.com/x", "events": ["balance.low", "balance.low"]}, "events"),
        ({"url": "https://example.com/x", "events": "balance.low"}, "events"),
        ({"url": "https://example.com/x"}, "data"),
        ({"events": ["*"]}, "data"),
        ({"url": "https://example.com/x", "events": ["*"], "description": "x" * 501}, "description"),
        ({"url": "https://example.com/x", "events": ["*"], "secret": "whsec_mine"}, "data"),
    ],
)
async def test_create_refuses_bad_input(client, admin, body, param):
    error = assert_error(await client.post("/webhooks", json=body, headers=admin), 400, "validation_error")
    assert error.get("param") == param, error
    assert (await client.get("/webhooks", headers=admin)).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "mailto:ops@example.com"}, "url"),
        ({"events": ["grant.made"]}, "events"),
        ({"events": []}, "events"),
        ({"disabled": "yes"}, "disabled"),
        ({"colour": "blue"}, "data"),
    ],
)
async def test_update_refuses_bad_input(client, admin, body, param):
    created = await create_webhook(client, admin, "https://example.com/x", ["balance.low"])
    response = await client.patch(f"/webhooks/{created['id']}", json=body, headers=admin)
    assert assert_error(response, 400, "validation_error").get("param") == param
    unchanged = (await client.get(f"/webhooks/{created['id']}", headers=admin)).json()
    assert unchanged["url"] == created["url"] and unchanged["events"] == created["events"]


async def test_unknown_endpoints_and_deliveries(client, admin, receiver, pool, http, conn_engine):
    for response in [
        await client.get("/webhooks/whep_nope", headers=admin),
        await client.patch("/webhooks/whep_nope", json={"disabled": True}, headers=admin),
        await client.delete("/webhooks/whep_nope", headers=admin),
        await client.get("/webhooks/whep_nope/deliveries", headers=admin),
        await client.post("/webhooks/whep_nope/deliveries/1/retry", headers=admin),
    ]:
        assert_error(response, 404, "webhook_not_found")
    hook = await create_webhook(client, admin, receiver.url)
    assert_error(
        await client.post(f"/webhooks/{hook['id']}/deliveries/99/retry", headers=admin), 404, "delivery_not_found"
    )
    bad = await client.post(f"/webhooks/{hook['id']}/deliveries/x/retry", headers=admin)
    assert bad.status_code in (400, 404), bad.text
    assert_error(
        await client.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "lost"}, headers=admin),
        400,
        "validation_error",
    )
    assert_error(
        await client.get(f"/webhooks/{hook['id']}/deliveries", params={"cursor": "!!"}, headers=admin),
        400,
        "validation_error",
    )
    assert_error(await client.get("/webhooks", params={"limit": 0}, headers=admin), 400, "validation_error")

    # Only a failed delivery is retried: a pending or a delivered one is a conflict.
    await create_account(client, admin)
    await set_threshold(client, admin, "acme", "5")  # at 0, already below: balance.low at once
    [pending] = await deliveries(client, admin, hook["id"])
    retry = f"/webhooks/{hook['id']}/deliveries/{pending['id']}/retry"
    assert_error(await client.post(retry, headers=admin), 409, "delivery_not_failed")
    await deliver_all(Deliverer(pool, client.app.state.clock), http)
    assert_error(await client.post(retry, headers=admin), 409, "delivery_not_failed")


async def test_admin_only(client, admin, make_key):
    hook = await create_webhook(client, admin, "https://example.com/x")
    await create_account(client, admin)
    reader = {"X-API-Key": await make_key("ledger:read", "usage:write", "catalog:read")}
    requests = [
        ("POST", "/webhooks", {"url": "https://example.com/y", "events": ["*"]}),
        ("GET", "/webhooks", None),
        ("GET", f"/webhooks/{hook['id']}", None),
        ("PATCH", f"/webhooks/{hook['id']}", {"disabled": True}),
        ("DELETE", f"/webhooks/{hook['id']}", None),
        ("GET", f"/webhooks/{hook['id']}/deliveries", None),
        ("POST", f"/webhooks/{hook['id']}/deliveries/1/retry", None),
    ]
    for method, path, body in requests:
        assert_error(await client.request(method, path, json=body), 401, "invalid_api_key")
        assert_error(await client.request(method, path, json=body, headers=reader), 403, "insufficient_scope")
    assert (await client.get(f"/webhooks/{hook['id']}", headers=admin)).json()["disabled"] is False
    patch = await client.patch("/accounts/acme", json={"low_balance_threshold": "1"}, headers=reader)
    assert_error(patch, 403, "insufficient_scope")
    assert_error(await client.patch("/accounts/acme", json={"low_balance_threshold": "1"}), 401, "invalid_api_key")


# Events: written with the change, on crossings only


async def test_balance_low_fires_once_per_crossing_and_rearms(client, admin, receiver, pool, http, conn_engine):
    hook = await create_webhook(client, admin, receiver.url, ["balance.low"])
    await create_account(client, admin, overdraft_limit="10")
    await grant(client, admin, "acme", "1")
    account = await set_threshold(client, admin, "acme", "0.5")
    assert account["low_balance_threshold"] == "0.500000000"
    assert await events(conn_engine) == []  # 1 is above the line: armed, nothing to say yet

    assert await use(client, admin, "acme", "e1") == "0.650000000"
    assert await events(conn_engine) == []
    assert await use(client, admin, "acme", "e2") == "0.300000000"  # crosses 0.5
    low = (
        "acme",
        "balance.low",
        {"account_id": "acme", "balance": "0.300000000", "low_balance_threshold": "0.500000000"},
    )
    assert await events(conn_engine) == [low]
    # Below the line, further charges (one at a time or in a batch) raise nothing more.
    await use(client, admin, "acme", "e3")
    await use(client, admin, "acme", "e4", "e5")
    assert await events(conn_engine) == [low]

    # Back above the line re-arms it; the next fall fires again, once even within one batch.
    await grant(client, admin, "acme", "2")  # -0.75 + 2 = 1.25
    assert len(await events(conn_engine)) == 1
    assert await use(client, admin, "acme", "e6", "e7", "e8") == "0.200000000"
    second = (
        "acme",
        "balance.low",
        {"account_id": "acme", "balance": "0.200000000", "low_balance_threshold": "0.500000000"},
    )
    assert await events(conn_engine) == [low, second]

    # Delivered, signed as Standard Webhooks, verified by the receiver's library.
    assert await deliver_all(Deliverer(pool, client.app.state.clock), http) == 2
    bodies = receiver.verified(await endpoint_secret(conn_engine, hook["id"]))
    # Sent at once, so they may arrive in either order.
    assert sorted((b["type"], b["data"]["balance"]) for b in bodies) == [
        ("balance.low", "0.200000000"),
        ("balance.low", "0.300000000"),
    ]
    assert all(set(b) == {"type", "timestamp", "data"} for b in bodies)
    assert [d["status"] for d in await deliveries(client, admin, hook["id"])] == ["succeeded", "succeeded"]
    await assert_reconciled(conn_engine)


async def endpoint_secret(conn_engine, endpoint_id: str) -> str:
    async with conn_engine.connect() as conn:
        return (
            await conn.execute(text("SELECT secret FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id})
        ).scalar_one()


async def test_threshold_set_below_the_balance_fires_at_once(client, admin, conn_engine):
    await create_webhook(client, admin, "https://example.com/x", ["balance.low"])
    await create_account(client, admin)
    await grant(client, admin, "acme", "3")
    await set_threshold(client, admin, "acme", "5")
    assert await events(conn_engine) == [
        (
            "acme",
            "balance.low",
            {"account_id": "acme", "balance": "3.000000000", "low_balance_threshold": "5.000000000"},
        )
    ]
    await adjust(client, admin, "acme", "-1")
    assert len(await events(conn_engine)) == 1
    # null turns it off: nothing below any line any more, and the account says so.
    assert (await set_threshold(client, admin, "acme", None))["low_balance_threshold"] is None
    await adjust(client, admin, "acme", "-1")
    assert len(await events(conn_engine)) == 1
    # An empty PATCH changes nothing.
    response = await client.patch("/accounts/acme", json={}, headers=admin)
    assert response.status_code == 200 and response.json()["low_balance_threshold"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"low_balance_threshold": "0.0000000001"}, 400, "validation_error"),
        ({"low_balance_threshold": "1e40"}, 400, "validation_error"),
        ({"low_balance_threshold": "NaN"}, 400, "validation_error"),
        ({"low_balance_threshold": "lots"}, 400, "validation_error"),
        ({"low_balance_threshold": [1]}, 400, "validation_error"),
        ({"balance": "100"}, 400, "validation_error"),
    ],
)
async def test_account_threshold_refuses_bad_input(client, admin, body, status, code):
    await create_account(client, admin)
    error = assert_error(await client.patch("/accounts/acme", json=body, headers=admin), status, code)
    assert error.get("param") in ("low_balance_threshold", "data")
    assert (await client.get("/accounts/acme", headers=admin)).json()["low_balance_threshold"] is None


async def test_account_threshold_of_an_unknown_account(client, admin):
    response = await client.patch("/accounts/ghost", json={"low_balance_threshold": "1"}, headers=admin)
    assert_error(response, 404, "account_not_found")


async def test_depleted_and_overdrawn_fire_on_their_crossings(client, admin, conn_engine):
    await create_webhook(client, admin, "https://example.com/x", ["balance.depleted", "account.overdrawn"])
    await create_account(client, admin, overdraft_limit="0.5")
    await grant(client, admin, "acme", "0.7")
    await use(client, admin, "acme", "e1")  # 0.35
    assert await events(conn_engine) == []
    await use(client, admin, "acme", "e2")  # 0: depleted, within the overdraft
    depleted = ("acme", "balance.depleted", {"account_id": "acme", "balance": "0.000000000"})
    assert await events(conn_engine) == [depleted]
    await use(client, admin, "acme", "e3")  # -0.35: still within
    assert await events(conn_engine) == [depleted]
    await use(client, admin, "acme", "e4", "e5")  # -1.05: past the limit, once for the batch
    overdrawn = (
        "acme",
        "account.overdrawn",
        {"account_id": "acme", "balance": "-1.050000000", "overdraft_limit": "0.500000000"},
    )
    assert await events(conn_engine) == [depleted, overdrawn]
    await use(client, admin, "acme", "e6")
    assert len(await events(conn_engine)) == 2

    # Paid back, then spent again: each crossing fires once more. An adjustment moves the balance too.
    await grant(client, admin, "acme", "2")  # 0.6
    await adjust(client, admin, "acme", "-2")  # -1.4: depleted and overdrawn in one move
    assert [(t, d["balance"]) for _, t, d in await events(conn_engine)][2:] == [
        ("account.overdrawn", "-1.400000000"),
        ("balance.depleted", "-1.400000000"),
    ]
    await assert_reconciled(conn_engine)


async def test_expiring_credits_are_announced_and_can_cross_a_line(client, admin, clock, pool, conn_engine):
    await create_webhook(client, admin, "https://example.com/x", ["balance.depleted", "grant.expired"])
    for account in ("acme", "idle"):
        await create_account(client, admin, account)
        expires = clock.now() + timedelta(hours=1)
        body = {"amount": "5", "expires_at": expires.isoformat()}
        assert (await client.post(f"/accounts/{account}/grants", json=body, headers=admin)).status_code == 201
    clock.advance(hours=2)
    # A busy account's grants expire on its next write: the grant first (to 0: depleted), then the call.
    await use(client, admin, "acme", "e1")
    [depleted, expired] = await events(conn_engine)
    assert depleted == ("acme", "balance.depleted", {"account_id": "acme", "balance": "0.000000000"})
    assert expired[:2] == ("acme", "grant.expired")
    assert expired[2] | {"grant_id": None} == {
        "account_id": "acme",
        "grant_id": None,
        "expired": "5.000000000",
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
    }
    # An idle account's, by the sweeper.
    assert await expire_due_grants(pool, clock.advance(seconds=1)) == 1
    assert [(a, t) for a, t, _ in await events(conn_engine)][2:] == [
        ("idle", "balance.depleted"),
        ("idle", "grant.expired"),
    ]
    await assert_reconciled(conn_engine)


async def test_unrated_usage_is_announced(client, admin, receiver, pool, http, conn_engine):
    hook = await create_webhook(client, admin, receiver.url, ["usage.unrated"])
    await create_account(client, admin)
    body = {"event_id": "u1", "account_id": "acme", "model": "acme-private-llm", "provider": "acme", "input_tokens": 5}
    assert (await client.post("/usage", json=body, headers=admin)).status_code == 202
    assert (await client.post("/usage", json=body, headers=admin)).status_code == 200  # a retry: nothing new
    await deliver_all(Deliverer(pool, client.app.state.clock), http)
    [message] = receiver.verified(await endpoint_secret(conn_engine, hook["id"]))
    occurred = message["data"].pop("occurred_at")
    assert datetime.fromisoformat(occurred).tzinfo is not None
    assert message["type"] == "usage.unrated"
    assert message["data"] == {
        "account_id": "acme",
        "event_id": "u1",
        "model": "acme-private-llm",
        "provider": "acme",
        "reason": "model_not_found",
    }


async def test_only_subscribed_enabled_endpoints_get_events(client, admin, conn_engine):
    await create_account(client, admin)
    unrated = {"event_id": "u1", "account_id": "acme", "model": "acme-private-llm", "input_tokens": 5}
    # Nobody listens: nothing is kept.
    assert (await client.post("/usage", json=unrated, headers=admin)).status_code == 202
    assert await events(conn_engine) == []

    low = await create_webhook(client, admin, "https://example.com/low", ["balance.low"])
    every = await create_webhook(client, admin, "https://example.com/all", ["*"])
    paused = await create_webhook(client, admin, "https://example.com/paused", ["*"])
    await client.patch(f"/webhooks/{paused['id']}", json={"disabled": True}, headers=admin)
    assert (await client.post("/usage", json=unrated | {"event_id": "u2"}, headers=admin)).status_code == 202
    await set_threshold(client, admin, "acme", "1")
    assert [d["event_type"] for d in await deliveries(client, admin, low["id"])] == ["balance.low"]
    assert [d["event_type"] for d in await deliveries(client, admin, every["id"])] == ["usage.unrated", "balance.low"]
    assert await deliveries(client, admin, paused["id"]) == []
    # One event, one webhook-id, whatever the number of endpoints.
    assert (await deliveries(client, admin, low["id"]))[0]["event_id"] == (
        await deliveries(client, admin, every["id"])
    )[1]["event_id"]

    # Removing an endpoint removes its deliveries; the others keep theirs.
    assert (await client.delete(f"/webhooks/{every['id']}", headers=admin)).status_code == 200
    async with conn_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar_one() == 1


async def test_events_roll_back_with_their_change(client, admin, conn_engine):
    """The crossing's events are written by the statement that moves the balance: rolled back with it."""
    await create_webhook(client, admin, "https://example.com/x")
    await create_account(client, admin)
    await grant(client, admin, "acme", "1")
    await set_threshold(client, admin, "acme", "0.5")
    state = client.app.state

    async def cross_then_roll_back() -> list[str]:
        async with state.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            books = await open_books(conn, ["acme"], state.clock.now())
            books.post("acme", "adjustment", Decimal("-2"), "system:adjustments", description="x")
            await books.close(conn, state.clock.now())
            written = [row["type"] for row in await conn.fetch("SELECT type FROM webhook_events ORDER BY type")]
            await transaction.rollback()
            return written

    # On the app's own pool, which works only on its event loop (the test client's portal).
    written = await asyncio.to_thread(client.blocking_portal.call, cross_then_roll_back)
    assert written == ["account.overdrawn", "balance.depleted", "balance.low"]
    assert await events(conn_engine) == []
    # Still armed: the next real crossing fires.
    await adjust(client, admin, "acme", "-0.75")
    assert [t for _, t, _ in await events(conn_engine)] == ["balance.low"]


# Delivery


async def test_receiver_down_then_up_loses_nothing(client, admin, receiver, pool, http, clock, conn_engine):
    hook = await create_webhook(client, admin, receiver.url)
    secret = await endpoint_secret(conn_engine, hook["id"])
    await create_account(client, admin)
    receiver.stop()
    await set_threshold(client, admin, "acme", "1")
    deliverer = Deliverer(pool, clock)
    assert await deliverer.deliver_due(http) == 1
    [failed] = await deliveries(client, admin, hook["id"])
    assert failed["status"] == "pending" and failed["attempts"] == 1
    assert failed["last_status"] is None and "ConnectError" in failed["last_error"]
    retry_at = datetime.fromisoformat(failed["next_attempt_at"])
    assert clock.now() + worker.FIRST_RETRY / 2 <= retry_at <= clock.now() + worker.FIRST_RETRY
    assert await deliverer.deliver_due(http) == 0  # not due yet

    # Up again, answering 503: another attempt, kept with the answer.
    receiver.status = 503
    receiver.start()
    clock.at = retry_at
    assert await deliverer.deliver_due(http) == 1
    [second] = await deliveries(client, admin, hook["id"])
    assert (second["attempts"], second["last_status"], second["last_response"]) == (2, 503, "try later")
    assert second["status"] == "pending" and second["last_error"] == "HTTP 503"

    receiver.status = 200
    clock.at = datetime.fromisoformat(second["next_attempt_at"])
    assert await deliverer.deliver_due(http) == 1
    [done] = await deliveries(client, admin, hook["id"])
    assert (done["status"], done["attempts"], done["last_status"], done["last_error"]) == ("succeeded", 3, 200, None)
    assert done["next_attempt_at"] is None
    # The same message each time: one webhook-id, each attempt signed anew and verified.
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {done["event_id"]} and len(receiver.requests) == 2
    assert [m["type"] for m in receiver.verified(secret)] == ["balance.low", "balance.low"]
    assert await deliverer.deliver_due(http) == 0


async def test_two_workers_deliver_each_once(client, admin, receiver, pool, http, conn_engine):
    hooks = [await create_webhook(client, admin, receiver.url) for _ in range(3)]
    accounts = [await create_account(client, admin, f"a{i}") for i in range(10)]
    for account in accounts:
        await set_threshold(client, admin, account, "1")  # balance.low for each, to each endpoint
    clock = client.app.state.clock
    first, second = Deliverer(pool, clock), Deliverer(pool, clock)
    counts: list[int] = []
    while True:
        # Both claim at the same moment, small rounds, until nothing is due.
        sent = await asyncio.gather(first.deliver_due(http, limit=4), second.deliver_due(http, limit=4))
        counts += sent
        if not any(sent):
            break
    assert sum(counts) == 30
    received = [(headers["webhook-id"], headers["webhook-signature"]) for headers, _ in receiver.requests]
    assert len(received) == 30
    # Each event reached each endpoint once: three deliveries of one webhook-id, each with its own signature.
    by_id: dict[str, set[str]] = {}
    for message_id, signature in received:
        by_id.setdefault(message_id, set()).add(signature)
    assert len(by_id) == 10 and all(len(signatures) == 3 for signatures in by_id.values())
    for hook in hooks:
        assert {d["status"] for d in await deliveries(client, admin, hook["id"])} == {"succeeded"}


async def test_a_worker_dying_mid_send_loses_nothing(client, admin, receiver, pool, http, clock, conn_engine):
    hook = await create_webhook(client, admin, receiver.url)
    secret = await endpoint_secret(conn_engine, hook["id"])
    await create_account(client, admin)
    await set_threshold(client, admin, "acme", "1")
    receiver.hold.clear()  # the receiver keeps the first sender waiting
    killed = Deliverer(pool, clock)

    async def runs_nothing_more(*args) -> None:
        """A process killed outright (SIGKILL, a lost machine) does not give its claims back as a stopped one does."""

    killed.give_back = runs_nothing_more
    dying = asyncio.create_task(killed.deliver_due(http))
    for _ in range(100):
        if receiver.requests:
            break
        await asyncio.sleep(0.05)
    assert len(receiver.requests) == 1
    dying.cancel()  # the worker stops mid-send, its outcome never recorded
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    receiver.hold.set()

    # Its claim holds off the others until it lapses; then another worker sends it again.
    other = Deliverer(pool, clock)
    assert await other.deliver_due(http) == 0
    [claimed] = await deliveries(client, admin, hook["id"])
    assert claimed["status"] == "pending" and claimed["attempts"] == 1
    clock.advance(seconds=worker.LEASE.total_seconds())
    assert await other.deliver_due(http) == 1
    [done] = await deliveries(client, admin, hook["id"])
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert [headers["webhook-id"] for headers, _ in receiver.requests] == [done["event_id"]] * 2
    assert len(receiver.verified(secret)) == 2


async def test_retries_for_a_day_then_fails_and_can_be_retried(client, admin, receiver, pool, http, clock, conn_engine):
    hook = await create_webhook(client, admin, receiver.url)
    secret = await endpoint_secret(conn_engine, hook["id"])
    await create_account(client, admin)
    await set_threshold(client, admin, "acme", "1")
    receiver.status = 500
    deliverer = Deliverer(pool, clock)
    start, waits = clock.now(), []
    while True:
        assert await deliverer.deliver_due(http) == 1
        [delivery] = await deliveries(client, admin, hook["id"])
        if delivery["status"] != "pending":
            break
        due = datetime.fromisoformat(delivery["next_attempt_at"])
        waits.append(due - clock.now())
        clock.at = due
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None
    # Backing off, doubling from seconds up to the cap (each less up to half, at random), for a day.
    assert clock.now() - start >= worker.RETRY_WINDOW
    assert all(w <= worker.MAX_RETRY_DELAY for w in waits) and max(waits) >= worker.MAX_RETRY_DELAY / 2
    assert waits[0] <= worker.FIRST_RETRY and waits[5] >= worker.FIRST_RETRY * 2**5 / 2
    assert delivery["attempts"] == len(waits) + 1 < 60
    assert await deliverer.deliver_due(http) == 0

    # Retried by hand: due at once, with the same webhook-id, and delivered.
    receiver.status = 200
    retried = await client.post(f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/retry", headers=admin)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending" and retried.json()["next_attempt_at"] is not None
    assert [d["id"] for d in await deliveries(client, admin, hook["id"], status="pending")] == [delivery["id"]]
    assert await deliverer.deliver_due(http) == 1
    [done] = await deliveries(client, admin, hook["id"])
    assert done["status"] == "succeeded" and done["attempts"] == delivery["attempts"] + 1
    headers, body = receiver.requests[-1]
    assert headers["webhook-id"] == delivery["event_id"]
    # Business time is a day ahead of the real time here, past the library's 5-minute window for
    # live messages; the signature is checked as it computes it.
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    assert at == clock.now().replace(microsecond=0)
    assert headers["webhook-signature"] == Webhook(secret).sign(headers["webhook-id"], at, body.decode())
    assert json.loads(body)["type"] == "balance.low"
    assert await deliveries(client, admin, hook["id"], status="failed") == []


async def test_only_the_start_of_an_answer_is_kept(client, admin, receiver, pool, http, clock):
    hook = await create_webhook(client, admin, receiver.url)
    await create_account(client, admin)
    await set_threshold(client, admin, "acme", "1")
    receiver.status, receiver.answer = 400, b"\x00no" + "é".encode() * 100_000
    assert await Deliverer(pool, clock).deliver_due(http) == 1
    [delivery] = await deliveries(client, admin, hook["id"])
    assert (delivery["status"], delivery["last_status"], delivery["last_error"]) == ("pending", 400, "HTTP 400")
    # The first 500 bytes (a character they cut in two shows as U+FFFD), without the NUL PostgreSQL cannot store.
    assert delivery["last_response"] == "no" + "é" * 248 + "\ufffd"


def test_backoff_doubles_with_jitter_up_to_a_cap():
    for attempts in range(1, 40):
        ceiling = min(worker.MAX_RETRY_DELAY, worker.FIRST_RETRY * 2 ** (attempts - 1))
        waits = {worker.backoff(attempts) for _ in range(20)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered


async def test_the_app_runs_a_delivery_worker(settings, conn_engine, receiver, make_key):
    """Started with the app, as the other background workers: an event is delivered with nobody asking."""
    app = create_app(replace(settings, webhook_poll_seconds=0.05), FixedClock(datetime.now(UTC)))
    admin = {"X-API-Key": await make_key("admin")}
    async with AsyncTestClient(app) as client:
        hook = await create_webhook(client, admin, receiver.url, ["balance.low"])
        await create_account(client, admin)
        await set_threshold(client, admin, "acme", "1")
        for _ in range(100):
            if [d["status"] for d in await deliveries(client, admin, hook["id"])] == ["succeeded"]:
                break
            await asyncio.sleep(0.05)
        [delivery] = await deliveries(client, admin, hook["id"])
        assert delivery["status"] == "succeeded"
    [message] = receiver.verified(await endpoint_secret(conn_engine, hook["id"]))
    assert message["type"] == "balance.low" and message["data"]["account_id"] == "acme"
