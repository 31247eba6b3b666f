"""`grant.expiring` (a set time before a grant with credits left expires) and `authorization.expired` (a
hold that expired neither settled nor released): announced once each by the sweep, under a controlled
clock, whatever the number of sweepers, and delivered signed to a real receiver."""

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from app import db
from app.config import Settings, SettingsError
from app.webhooks.service import announce_expiries
from app.webhooks.worker import Deliverer
from tests.test_webhooks import Receiver, create_webhook, deliver_all, events

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

NOTICE = timedelta(days=3)
HOLD = {"model": "openai/gpt-4o", "input_tokens": 1000, "max_output_tokens": 100, "ttl_seconds": 60}


@pytest.fixture
async def pool(settings):
    pool = await db.create_pool(settings.database_url, 4)
    yield pool
    await pool.close()


@pytest.fixture
async def acme(client, admin) -> str:
    await create_webhook(client, admin, "https://example.com/hooks")  # events are kept for a subscriber
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    return "acme"


async def sweep(pool, clock, notice: timedelta = NOTICE) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await announce_expiries(conn, clock.now(), notice)


async def grant(client, admin, amount: str, expires_in: timedelta | None, clock) -> dict:
    body = {"amount": amount}
    if expires_in is not None:
        body["expires_at"] = (clock.now() + expires_in).isoformat()
    response = await client.post("/accounts/acme/grants", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def test_grant_expiring_is_sent_once_within_the_notice(client, admin, acme, pool, clock, conn_engine):
    soon = await grant(client, admin, "10", timedelta(days=5), clock)
    await grant(client, admin, "20", None, clock)  # never expires: never announced
    assert await sweep(pool, clock) == 0  # five days ahead: not yet within three
    clock.advance(days=2, seconds=1)
    assert await sweep(pool, clock) == 1
    [(account, kind, data)] = await events(conn_engine)
    assert (account, kind) == ("acme", "grant.expiring")
    assert data == {
        "account_id": "acme",
        "grant_id": soon["id"],
        "remaining": "10.000000000",
        "expires_at": soon["expires_at"].replace("+00:00", "Z"),
    }
    clock.advance(hours=1)
    assert await sweep(pool, clock) == 0  # once per grant
    clock.advance(days=1)
    assert await sweep(pool, clock) == 0
    assert [kind for _, kind, _ in await events(conn_engine)] == ["grant.expiring"]


async def test_spent_expired_and_unnoticed_grants_are_not_announced(client, admin, acme, pool, clock, conn_engine):
    await grant(client, admin, "0.5", timedelta(days=1), clock)
    # Spent before the notice: nothing left to lose.
    body = {"event_id": "e1", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 1_000_000}
    assert (await client.post("/usage", json=body, headers=admin)).status_code == 201
    assert await sweep(pool, clock) == 0
    # With no notice asked for, none is sent; a grant past its expiry gets grant.expired, not this.
    await grant(client, admin, "5", timedelta(hours=1), clock)
    assert await sweep(pool, clock, timedelta(0)) == 0
    clock.advance(hours=2)
    assert await sweep(pool, clock) == 0
    assert "grant.expiring" not in [kind for _, kind, _ in await events(conn_engine)]


async def test_authorization_expired_is_sent_once_for_holds_left_open(client, admin, acme, pool, clock, conn_engine):
    await grant(client, admin, "100", None, clock)
    open_hold = (await client.post("/authorizations", json={"account_id": "acme", **HOLD}, headers=admin)).json()
    released = (await client.post("/authorizations", json={"account_id": "acme", **HOLD}, headers=admin)).json()
    settled = (await client.post("/authorizations", json={"account_id": "acme", **HOLD}, headers=admin)).json()
    assert (await client.post(f"/authorizations/{released['id']}/release", headers=admin)).status_code == 200
    usage = {"event_id": "s1", "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 1000,
             "output_tokens": 10, "authorization_id": settled["id"]}  # fmt: skip
    assert (await client.post("/usage", json=usage, headers=admin)).status_code == 201
    assert await sweep(pool, clock) == 0  # not expired yet
    clock.advance(seconds=61)
    assert await sweep(pool, clock) == 1
    assert await sweep(pool, clock) == 0
    [(account, _, data)] = [e for e in await events(conn_engine) if e[1] == "authorization.expired"]
    assert (account, data["authorization_id"], data["model"]) == ("acme", open_hold["id"], "openai/gpt-4o")
    assert data["amount"] == open_hold["amount"]
    assert data["expires_at"] == open_hold["expires_at"].replace("+00:00", "Z")


async def test_two_sweepers_announce_each_once(client, admin, acme, pool, clock, conn_engine):
    for _ in range(5):
        await grant(client, admin, "1", timedelta(days=1), clock)
        assert (await client.post("/authorizations", json={"account_id": "acme", **HOLD}, headers=admin)).status_code
    clock.advance(seconds=61)
    counts = await asyncio.gather(sweep(pool, clock), sweep(pool, clock))
    assert sum(counts) == 10
    kinds = [kind for _, kind, _ in await events(conn_engine)]
    assert (kinds.count("grant.expiring"), kinds.count("authorization.expired")) == (5, 5)
    async with conn_engine.connect() as conn:
        unmarked = await conn.execute(
            text(
                "SELECT (SELECT count(*) FROM grants WHERE expiry_announced_at IS NULL AND expires_at IS NOT NULL), "
                "(SELECT count(*) FROM authorizations WHERE expiry_announced_at IS NULL)"
            )
        )
        assert tuple(unmarked.one()) == (0, 0)


async def test_notices_are_delivered_signed(client, admin, pool, clock, conn_engine):
    receiver = Receiver()
    receiver.start()
    try:
        hook = await create_webhook(client, admin, receiver.url, ["grant.expiring", "authorization.expired"])
        assert (await client.post("/accounts", json={"id": "acme", "name": "A"}, headers=admin)).status_code == 201
        await grant(client, admin, "50", timedelta(days=2), clock)
        assert (await client.post("/authorizations", json={"account_id": "acme", **HOLD}, headers=admin)).status_code
        clock.advance(seconds=61)
        assert await sweep(pool, clock) == 2
        async with httpx.AsyncClient() as http:
            assert await deliver_all(Deliverer(pool, clock), http) == 2
        async with conn_engine.connect() as conn:
            secret = (
                await conn.execute(text("SELECT secret FROM webhook_endpoints WHERE id = :id"), {"id": hook["id"]})
            ).scalar_one()
        messages = receiver.verified(secret)
        assert sorted(m["type"] for m in messages) == ["authorization.expired", "grant.expiring"]
    finally:
        receiver.stop()


@pytest.mark.parametrize("value", ["-1", "x", str(367 * 86400)])
def test_the_notice_setting_is_checked(value):
    with pytest.raises(SettingsError, match="BILLING_GRANT_EXPIRY_NOTICE_SECONDS"):
        Settings.from_env({"BILLING_GRANT_EXPIRY_NOTICE_SECONDS": value})
    assert Settings.from_env({}).grant_expiry_notice_seconds == 3 * 86400
    assert Settings.from_env({"BILLING_GRANT_EXPIRY_NOTICE_SECONDS": "0"}).grant_expiry_notice_seconds == 0
