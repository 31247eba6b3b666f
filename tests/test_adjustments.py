"""POST /accounts/{id}/adjustments: an operator's correction, credited or debited as a ledger entry."""

import asyncio
from datetime import datetime
from decimal import Decimal

import pytest

from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


async def create_account(client, admin, account_id: str, grant: str | None = "100") -> None:
    response = await client.post("/accounts", json={"id": account_id, "name": account_id}, headers=admin)
    assert response.status_code == 201, response.text
    if grant:
        response = await client.post(f"/accounts/{account_id}/grants", json={"amount": grant}, headers=admin)
        assert response.status_code == 201, response.text


async def adjust(client, headers, account_id: str = "acme", **body):
    return await client.post(f"/accounts/{account_id}/adjustments", json=body, headers=headers)


async def balance(client, admin, account_id: str = "acme") -> str:
    response = await client.get(f"/accounts/{account_id}/balance", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["balance"]


async def entries(client, admin, account_id: str = "acme", **params) -> list[dict]:
    response = await client.get(f"/accounts/{account_id}/ledger", params={"limit": 1000, **params}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_credit_and_debit(client, admin, clock, conn_engine):
    await create_account(client, admin, "acme")
    response = await adjust(client, admin, amount="12.5", reason="goodwill for the outage")
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    credit = response.json()
    assert credit == {
        "account_id": "acme",
        "amount": "12.500000000",
        "reason": "goodwill for the outage",
        "balance_after": "112.500000000",
        "created_at": credit["created_at"],
    }
    assert datetime.fromisoformat(credit["created_at"]) == clock.now()

    clock.advance(minutes=1)
    response = await adjust(client, admin, amount="-20.000000001", reason="double credit")
    assert response.status_code == 201, response.text
    debit = response.json()
    assert (debit["amount"], debit["balance_after"]) == ("-20.000000001", "92.499999999")
    # A JSON number is read exactly too.
    response = await adjust(client, admin, amount=0.25, reason="number")
    assert response.status_code == 201 and response.json()["amount"] == "0.250000000", response.text
    assert await balance(client, admin) == "92.749999999"

    adjustments = await entries(client, admin, kind="adjustment")
    assert [(e["kind"], e["amount"], e["balance_after"], e["description"]) for e in adjustments] == [
        ("adjustment", "12.500000000", "112.500000000", "goodwill for the outage"),
        ("adjustment", "-20.000000001", "92.499999999", "double credit"),
        ("adjustment", "0.250000000", "92.749999999", "number"),
    ]
    assert {e["counterparty"] for e in adjustments} == {"system:adjustments"}
    assert [datetime.fromisoformat(e["created_at"]) for e in adjustments[:2]] == [
        datetime.fromisoformat(credit["created_at"]),
        datetime.fromisoformat(debit["created_at"]),
    ]
    # Every entry's balance_after continues the one before.
    running = Decimal(0)
    for entry in await entries(client, admin):
        running += Decimal(entry["amount"])
        assert Decimal(entry["balance_after"]) == running
    # A debit may take the balance below zero: it is a correction, not a purchase.
    response = await adjust(client, admin, amount="-100", reason="chargeback")
    assert response.status_code == 201 and response.json()["balance_after"] == "-7.250000001", response.text
    # And a credit brings it back.
    response = await adjust(client, admin, amount="10", reason="settled")
    assert response.status_code == 201 and response.json()["balance_after"] == "2.749999999", response.text
    assert await balance(client, admin) == "2.749999999"
    await assert_reconciled(conn_engine)


async def test_adjustment_validation(client, admin, make_key):
    await create_account(client, admin, "acme")
    cases = [
        ({"amount": "0", "reason": "x"}, "amount"),
        ({"amount": "-0.000", "reason": "x"}, "amount"),
        ({"amount": "1.0000000001", "reason": "x"}, "amount"),
        ({"amount": "-0.0000000001", "reason": "x"}, "amount"),
        ({"amount": "1e40", "reason": "x"}, "amount"),
        ({"amount": "NaN", "reason": "x"}, "amount"),
        ({"amount": "Infinity", "reason": "x"}, "amount"),
        ({"amount": "ten", "reason": "x"}, "amount"),
        ({"reason": "x"}, "amount"),
        ({"amount": "1"}, "reason"),
        ({"amount": "1", "reason": ""}, "reason"),
        ({"amount": "1", "reason": "x" * 501}, "reason"),
        ({"amount": "1", "reason": "x", "colour": "red"}, "colour"),
    ]
    wrong = []
    for body, param in cases:
        error = assert_error(await adjust(client, admin, **body), 400, "validation_error")
        if error.get("param") != param and f"`{param}`" not in error["message"]:
            wrong.append((body, param, error))
    assert wrong == [], "errors naming another field than the one sent:\n" + "\n".join(map(str, wrong))
    assert_error(await adjust(client, admin, "ghost", amount="1", reason="x"), 404, "account_not_found")
    # Only operators adjust: finance and gateway keys, even bound to the account, are refused.
    for scopes, account_id in [(("ledger:read", "usage:write", "catalog:read"), None), (("ledger:read",), "acme")]:
        other = {"X-API-Key": await make_key(*scopes, account_id=account_id)}
        assert_error(await adjust(client, other, amount="1", reason="x"), 403, "insufficient_scope")
    assert_error(await adjust(client, {}, amount="1", reason="x"), 401, "invalid_api_key")
    assert await balance(client, admin) == "100.000000000"
    assert [e["kind"] for e in await entries(client, admin)] == ["grant"]


async def test_idempotency_key(client, admin, conn_engine):
    await create_account(client, admin, "acme")
    await create_account(client, admin, "globex")
    keyed = {**admin, "Idempotency-Key": "fix-42"}
    first = await adjust(client, keyed, amount="-5.5", reason="refund correction")
    assert first.status_code == 201, first.text
    # The same key and body: the first answer, marked as a replay, credited once.
    for _ in range(2):
        replay = await adjust(client, keyed, amount="-5.500", reason="refund correction")
        assert replay.status_code == 200, replay.text
        assert replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json() == first.json() | {"replay": True}
    assert await balance(client, admin) == "94.500000000"
    assert len(await entries(client, admin, kind="adjustment")) == 1
    # The same key with another body names what differs, and changes nothing.
    error = assert_error(
        await adjust(client, keyed, amount="-6", reason="refund correction"), 422, "idempotency_key_reused"
    )
    assert error.get("param") == "amount"
    error = assert_error(await adjust(client, keyed, amount="-5.5", reason="other"), 422, "idempotency_key_reused")
    assert error.get("param") == "reason"
    assert await balance(client, admin) == "94.500000000"
    # Concurrent retries of one new key adjust once.
    racing = {**admin, "Idempotency-Key": "fix-43"}
    responses = await asyncio.gather(*(adjust(client, racing, amount="1", reason="race") for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201], [r.text for r in responses]
    assert await balance(client, admin) == "95.500000000"
    # Keys belong to an account: the same key on another account is a new adjustment.
    other = await adjust(client, keyed, "globex", amount="-5.5", reason="refund correction")
    assert other.status_code == 201, other.text
    assert await balance(client, admin, "globex") == "94.500000000"
    # A refused request does not use up its key.
    assert_error(
        await adjust(client, {**admin, "Idempotency-Key": "k2"}, amount="0", reason="x"), 400, "validation_error"
    )
    assert (await adjust(client, {**admin, "Idempotency-Key": "k2"}, amount="1", reason="x")).status_code == 201
    # Without a key, each request is a new adjustment.
    for _ in range(2):
        assert (await adjust(client, admin, amount="1", reason="x")).status_code == 201
    assert await balance(client, admin) == "98.500000000"
    await assert_reconciled(conn_engine)


async def test_adjustments_appear_in_the_trial_balance(client, admin, clock):
    await create_account(client, admin, "acme")
    start = clock.advance(hours=1)
    await adjust(client, admin, amount="7.125", reason="a")
    await adjust(client, admin, amount="-2", reason="b")
    end = clock.advance(hours=1)
    await adjust(client, admin, amount="1", reason="later")
    response = await client.get(
        "/reports/trial-balance", params={"from": start.isoformat(), "to": end.isoformat()}, headers=admin
    )
    assert response.status_code == 200, response.text
    (row,) = response.json()["accounts"]
    assert (row["opening"], row["adjustments"], row["closing"]) == ("100.000000000", "5.125000000", "105.125000000")
    assert row["grants"] == row["usage"] == row["reversals"] == row["expirations"] == "0.000000000"
