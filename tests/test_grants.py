"""Credit grants: validation, Idempotency-Key, consumption order, paying back debt, and expiry (lazy and swept)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.ledger.service import expire_due_grants
from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


@pytest.fixture(scope="module")
async def unit_model(engine) -> AsyncIterator[dict[str, str]]:
    """The module's `unit` model once made; removed at the end of the module, when the tests' usage charged
    with its price is gone."""
    made: dict[str, str] = {}
    yield made
    if made:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM margins WHERE target = :model"), made)
            await conn.execute(text("DELETE FROM prices WHERE model_id = :model"), made)
            await conn.execute(text("DELETE FROM models WHERE provider = :provider"), made)
            await conn.execute(text("DELETE FROM providers WHERE id = :provider"), made)


@pytest.fixture
async def unit(unit_model, client, admin, clock) -> str:
    """A model that costs exactly 1 credit per token (10000 USD per 1M tokens at margin 1), on a provider of
    this module's own; made by the first test that needs it, since every catalog write reloads the catalog."""
    if not unit_model:
        provider = f"t{uuid.uuid4().hex[:10]}"
        model = f"{provider}/unit"
        for method, path, body in (
            ("POST", "/catalog/providers", {"id": provider, "name": "Test"}),
            ("PUT", "/catalog/models", {"provider": provider, "name": "unit", "type": "language"}),
            ("POST", "/catalog/prices", {"model": model, "input": "10000", "output": "10000"}),
            ("PUT", "/catalog/margins", {"scope": "model", "target": model, "margin": "1"}),
        ):
            response = await client.request(method, path, json=body, headers=admin)
            assert response.status_code in (200, 201), response.text
        unit_model |= {"provider": provider, "model": model}
        clock.at = datetime.now(UTC)  # the price is in effect from now on
    return unit_model["model"]


class Account:
    """One customer account, driven over HTTP with an admin key."""

    def __init__(self, client, admin, account_id: str, model: str | None = None) -> None:
        self.client, self.admin, self.id, self.model = client, admin, account_id, model
        self.events = 0

    async def create(self, overdraft_limit: str = "0") -> "Account":
        body = {"id": self.id, "name": self.id, "overdraft_limit": overdraft_limit}
        response = await self.client.post("/accounts", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return self

    async def grant(self, amount, expires_at: datetime | None = None, **fields) -> dict:
        body = {"amount": str(amount), **fields}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        response = await self.client.post(f"/accounts/{self.id}/grants", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json()

    async def use(self, credits: int) -> dict:
        """Record usage costing exactly `credits`."""
        self.events += 1
        body = {"event_id": f"e{self.events}", "account_id": self.id, "model": self.model, "input_tokens": credits}
        response = await self.client.post("/usage", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        assert Decimal(response.json()["cost"]) == credits
        return response.json()

    async def balance(self) -> Decimal:
        response = await self.client.get(f"/accounts/{self.id}/balance", headers=self.admin)
        assert response.status_code == 200, response.text
        return Decimal(response.json()["balance"])

    async def remaining(self) -> list[Decimal]:
        """What is left of each grant, oldest first."""
        response = await self.client.get(f"/accounts/{self.id}/grants", headers=self.admin)
        assert response.status_code == 200, response.text
        return [Decimal(g["remaining"]) for g in response.json()["data"]]

    async def grants(self) -> list[dict]:
        return (await self.client.get(f"/accounts/{self.id}/grants", headers=self.admin)).json()["data"]

    async def ledger(self, **params) -> list[dict]:
        response = await self.client.get(
            f"/accounts/{self.id}/ledger", params={"limit": 1000, **params}, headers=self.admin
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]


async def sweep(client, at: datetime) -> int:
    """`expire_due_grants` on the app's pool. The test client runs the app on an event loop of its own (in a
    portal thread), and an asyncpg pool may only be used from its loop, so the call goes through the portal."""
    pool = client.app.state.pool
    return await asyncio.to_thread(client.blocking_portal.call, expire_due_grants, pool, at)


# Validation


async def test_invalid_grants_change_nothing(client, admin, clock):
    acme = await Account(client, admin, "acme").create()
    now = clock.now()
    cases = [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "0.0000000001"}, "amount"),
        ({"amount": "1.0000000001"}, "amount"),  # 10 decimal places
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"amount": "1e40"}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({}, "amount"),
        ({"amount": "5", "expires_at": (now - timedelta(seconds=1)).isoformat()}, "expires_at"),
        ({"amount": "5", "expires_at": now.isoformat()}, "expires_at"),
        ({"amount": "5", "expires_at": (now + timedelta(days=1)).replace(tzinfo=None).isoformat()}, "expires_at"),
        ({"amount": "5", "expires_at": "next week"}, "expires_at"),
        ({"amount": "5", "description": "x" * 501}, "description"),
        ({"amount": "5", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = await client.post("/accounts/acme/grants", json=body, headers=admin)
        error = assert_error(response, 400, "validation_error")
        assert error.get("param") == field or field in error["message"], (body, error)
    assert await acme.grants() == [] and await acme.ledger() == [] and await acme.balance() == 0

    error = assert_error(
        await client.post("/accounts/ghost/grants", json={"amount": "5"}, headers=admin), 404, "account_not_found"
    )
    assert "ghost" in error["message"]
    keyed = await client.post("/accounts/ghost/grants", json={"amount": "5"}, headers={**admin, "Idempotency-Key": "k"})
    assert_error(keyed, 404, "account_not_found")


async def test_grants_need_admin(client, make_key):
    await Account(client, {"X-API-Key": await make_key("admin")}, "acme").create()
    reader = {"X-API-Key": await make_key("ledger:read", "usage:write")}
    assert_error(
        await client.post("/accounts/acme/grants", json={"amount": "5"}, headers=reader), 403, "insufficient_scope"
    )


async def test_grant(client, admin, clock):
    acme = await Account(client, admin, "acme").create()
    expires = clock.now() + timedelta(days=30)
    body = await acme.grant("12.5", expires, description="welcome promo")
    assert body["account_id"] == "acme" and isinstance(body["id"], int)
    assert body["amount"] == body["remaining"] == body["balance_after"] == "12.500000000"
    assert body["description"] == "welcome promo" and body["expired_at"] is None
    assert datetime.fromisoformat(body["expires_at"]) == expires
    assert body.get("replay", False) is False
    assert await acme.balance() == Decimal("12.5")
    (entry,) = await acme.ledger()
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == ("grant", "12.500000000", "12.500000000")
    assert (entry["counterparty"], entry["grant_id"]) == ("system:grants", body["id"])
    # A grant without expiry, to the 9th decimal place.
    second = await acme.grant("0.000000001")
    assert second["expires_at"] is None and second["balance_after"] == "12.500000001"
    listed = await acme.grants()
    assert [g["id"] for g in listed] == [body["id"], second["id"]]
    assert listed[0] == {k: v for k, v in body.items() if k not in ("balance_after", "replay")}


# Idempotency-Key


async def test_grant_idempotency_key(client, admin, clock):
    acme = await Account(client, admin, "acme").create()
    other = await Account(client, admin, "other").create()
    expires = (clock.now() + timedelta(days=7)).isoformat()
    body = {"amount": "10", "description": "top-up", "expires_at": expires}
    keyed = {**admin, "Idempotency-Key": "grant-1"}

    first = await client.post("/accounts/acme/grants", json=body, headers=keyed)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = await client.post("/accounts/acme/grants", json=body, headers=keyed)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json() | {"replay": True}
    clock.advance(hours=1)
    assert (await client.post("/accounts/acme/grants", json=body, headers=keyed)).json()["id"] == first.json()["id"]

    for changes, field in (
        ({"amount": "11"}, "amount"),
        ({"description": "other"}, "description"),
        ({"expires_at": (clock.now() + timedelta(days=8)).isoformat()}, "expires_at"),
        ({"expires_at": None}, "expires_at"),
    ):
        changed = {k: v for k, v in (body | changes).items() if v is not None}
        error = assert_error(
            await client.post("/accounts/acme/grants", json=changed, headers=keyed), 422, "idempotency_key_reused"
        )
        assert field in error["message"] and error.get("param") == field, error
    assert len(await acme.grants()) == 1 and await acme.balance() == 10

    # The key belongs to the account: the same key elsewhere is another grant.
    elsewhere = await client.post("/accounts/other/grants", json=body, headers=keyed)
    assert elsewhere.status_code == 201 and elsewhere.json()["id"] != first.json()["id"]
    # Without a key, every request is a grant of its own.
    for _ in range(2):
        assert (await client.post("/accounts/acme/grants", json=body, headers=admin)).status_code == 201
    assert len(await acme.grants()) == 3 and await acme.balance() == 30
    assert await other.balance() == 10


async def test_overlong_idempotency_key_is_a_validation_error(client, admin):
    acme = await Account(client, admin, "acme").create()
    headers = {**admin, "Idempotency-Key": "k" * 201}
    error = assert_error(
        await client.post("/accounts/acme/grants", json={"amount": "1"}, headers=headers), 400, "validation_error"
    )
    assert error.get("param") == "Idempotency-Key"
    assert await acme.balance() == 0
    headers["Idempotency-Key"] = "k" * 200
    assert (await client.post("/accounts/acme/grants", json={"amount": "1"}, headers=headers)).status_code == 201


# Consumption and debt


async def test_usage_draws_from_the_earliest_expiring_grant_first(client, admin, clock, unit, conn_engine):
    acme = await Account(client, admin, "acme", unit).create()
    now = clock.now()
    await acme.grant(10)  # A: never expires, so drawn last
    await acme.grant(5, now + timedelta(days=10))  # B
    await acme.grant(3, now + timedelta(days=2))  # C: expires first
    await acme.grant(4, now + timedelta(days=2))  # D: expires with C, granted after it
    assert await acme.remaining() == [10, 5, 3, 4]

    await acme.use(2)
    assert await acme.remaining() == [10, 5, 1, 4]
    await acme.use(4)  # the last of C, then D
    assert await acme.remaining() == [10, 5, 0, 1]
    await acme.use(3)  # D, then B
    assert await acme.remaining() == [10, 3, 0, 0]
    await acme.use(8)  # B, then A
    assert await acme.remaining() == [5, 0, 0, 0]
    assert await acme.balance() == 5

    # Beyond every grant: the balance goes negative, no grant below zero.
    spent = await acme.use(7)
    assert spent["balance_after"] == "-2.000000000" and spent["overdrawn"] is True
    assert await acme.remaining() == [0, 0, 0, 0]
    await assert_reconciled(conn_engine)


async def test_a_grant_first_pays_the_debt(client, admin, clock, unit, conn_engine):
    acme = await Account(client, admin, "acme", unit).create(overdraft_limit="100")
    await acme.use(30)
    assert await acme.balance() == -30

    small = await acme.grant(20)  # all of it pays debt: nothing left to spend or to expire
    assert small["balance_after"] == "-10.000000000" and small["remaining"] == "0.000000000"
    expiring = await acme.grant(25, clock.now() + timedelta(days=1))  # 10 pays the debt, 15 is left
    assert expiring["balance_after"] == "15.000000000" and expiring["remaining"] == "15.000000000"
    assert await acme.remaining() == [0, 15]

    await acme.use(5)
    assert await acme.remaining() == [0, 10]
    # At expiry only what is left of it, 10, expires; the 10 that paid the debt stays paid.
    clock.advance(days=1)
    await sweep(client, clock.now())
    assert await acme.balance() == 0
    expiration = (await acme.ledger(kind="expiration"))[0]
    assert expiration["amount"] == "-10.000000000" and expiration["grant_id"] == expiring["id"]
    await assert_reconciled(conn_engine)


async def test_balances_beyond_28_digits_stay_exact(client, admin, clock, unit, conn_engine):
    """Amounts have up to 38 digits; a balance of 10^19 credits and more is still added up to the last one."""
    acme = await Account(client, admin, "acme", unit).create()
    body = await acme.grant("12345678901234567890.123456789")
    assert body["balance_after"] == "12345678901234567890.123456789"
    body = await acme.grant("0.000000001", clock.now() + timedelta(days=1))
    assert body["balance_after"] == "12345678901234567890.123456790"
    used = await acme.use(3)
    assert used["balance_after"] == "12345678901234567887.123456790"
    assert await acme.balance() == Decimal("12345678901234567887.123456790")
    hold = await client.post(
        "/authorizations",
        json={"account_id": "acme", "model": unit, "input_tokens": 1, "max_output_tokens": 1},
        headers=admin,
    )
    assert hold.status_code == 201, hold.text
    assert hold.json()["available"] == "12345678901234567885.123456790"
    account = (await client.get("/accounts/acme", headers=admin)).json()
    assert (account["balance"], account["available"]) == (
        "12345678901234567887.123456790",
        "12345678901234567885.123456790",
    )
    await assert_reconciled(conn_engine)


# Expiry


async def test_expiry_on_the_next_usage(client, admin, clock, unit, conn_engine):
    acme = await Account(client, admin, "acme", unit).create(overdraft_limit="50")
    expiring = await acme.grant(10, clock.now() + timedelta(days=1))
    lasting = await acme.grant(4)
    await acme.use(3)
    assert await acme.remaining() == [7, 4]

    clock.advance(days=1, seconds=1)
    after = await acme.use(2)  # expires the 7 left first, then charges: 14 - 3 - 7 - 2
    assert after["balance_after"] == "2.000000000"
    assert await acme.balance() == 2
    entries = await acme.ledger()
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("grant", "10.000000000", "10.000000000"),
        ("grant", "4.000000000", "14.000000000"),
        ("usage", "-3.000000000", "11.000000000"),
        ("expiration", "-7.000000000", "4.000000000"),
        ("usage", "-2.000000000", "2.000000000"),
    ]
    assert entries[3]["grant_id"] == expiring["id"] and entries[3]["counterparty"] == "system:expired"
    grants = {g["id"]: g for g in await acme.grants()}
    assert grants[expiring["id"]]["remaining"] == "0.000000000"
    assert datetime.fromisoformat(grants[expiring["id"]]["expired_at"]) == clock.now()
    assert grants[lasting["id"]]["remaining"] == "2.000000000" and grants[lasting["id"]]["expired_at"] is None
    await assert_reconciled(conn_engine)


async def test_expiry_on_a_grant(client, admin, clock):
    """A new grant is a write too: what expired goes first, and the new grant is not touched."""
    acme = await Account(client, admin, "acme").create()
    await acme.grant(6, clock.now() + timedelta(hours=1))
    clock.advance(hours=2)
    fresh = await acme.grant(5)
    assert fresh["balance_after"] == "5.000000000" and fresh["remaining"] == "5.000000000"
    assert [(e["kind"], e["amount"]) for e in await acme.ledger()] == [
        ("grant", "6.000000000"),
        ("expiration", "-6.000000000"),
        ("grant", "5.000000000"),
    ]


async def test_expiry_by_the_sweep(client, admin, clock, unit, conn_engine):
    acme = await Account(client, admin, "acme", unit).create()
    spent = await Account(client, admin, "spent", unit).create()
    now = clock.now()
    first = await acme.grant(10, now + timedelta(days=1))
    second = await acme.grant(5, now + timedelta(days=3))
    await acme.use(4)
    await spent.grant(6, now + timedelta(days=1))
    await spent.use(6)

    assert await sweep(client, clock.now()) == 0  # nothing is due yet
    assert await acme.balance() == 11 and await acme.ledger(kind="expiration") == []

    clock.at = now + timedelta(days=1)  # exactly at expires_at: due
    await sweep(client, clock.now())
    assert await acme.balance() == 5  # dropped by exactly the 6 left of the first grant
    (expiration,) = await acme.ledger(kind="expiration")
    assert (expiration["amount"], expiration["balance_after"], expiration["grant_id"]) == (
        "-6.000000000",
        "5.000000000",
        first["id"],
    )
    assert await acme.remaining() == [0, 5]
    # A grant used up has nothing left to expire: no entry.
    assert await spent.ledger(kind="expiration") == [] and await spent.balance() == 0

    # Sweeping again changes nothing.
    await sweep(client, clock.now())
    assert len(await acme.ledger()) == 4 and await acme.balance() == 5

    clock.advance(days=2)
    await sweep(client, clock.now())
    assert await acme.balance() == 0 and await acme.remaining() == [0, 0]
    expirations = await acme.ledger(kind="expiration")
    assert [(e["grant_id"], e["amount"]) for e in expirations] == [
        (first["id"], "-6.000000000"),
        (second["id"], "-5.000000000"),
    ]
    await assert_reconciled(conn_engine)


async def test_sweep_covers_many_accounts(client, admin, clock, conn_engine):
    """Accounts nobody writes to are swept too, each by exactly its own remainder."""
    now = clock.now()
    accounts = [await Account(client, admin, f"idle-{i}").create() for i in range(5)]
    for i, account in enumerate(accounts):
        await account.grant(i + 1, now + timedelta(minutes=10 * (i + 1)))
        await account.grant("0.5")
    clock.at = now + timedelta(minutes=25)  # the first two are due
    await sweep(client, clock.now())
    assert [await a.balance() for a in accounts] == [
        Decimal("0.5"),
        Decimal("0.5"),
        Decimal("3.5"),
        Decimal("4.5"),
        Decimal("5.5"),
    ]
    clock.advance(hours=1)
    await sweep(client, clock.now())
    assert [await a.balance() for a in accounts] == [Decimal("0.5")] * 5
    await assert_reconciled(conn_engine)
