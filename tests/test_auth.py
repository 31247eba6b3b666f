from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.auth import LastUsed
from tests.helpers import assert_error


async def test_missing_key(client):
    error = assert_error(await client.get("/accounts"), 401, "invalid_api_key")
    assert "X-API-Key" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "nonsense"},
        {"X-API-Key": "cmk_000000000000" + "a" * 43},
        {"Authorization": "Bearer cmk_short"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
async def test_unknown_or_malformed_key(client, headers):
    assert_error(await client.get("/accounts", headers=headers), 401, "invalid_api_key")


async def test_right_id_wrong_secret(client, make_key):
    key = await make_key("admin")
    forged = key[:16] + ("A" if key[16] != "A" else "B") + key[17:]
    assert_error(await client.get("/accounts", headers={"X-API-Key": forged}), 401, "invalid_api_key")


async def test_both_header_forms(client, make_key):
    key = await make_key("ledger:read")
    assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    assert (await client.get("/accounts", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    assert (await client.get("/accounts", headers={"Authorization": f"bearer  {key} "})).status_code == 200


async def test_revoked_key_fails_at_once(client, make_key, admin):
    key = await make_key("ledger:read")
    key_id = key[4:16]
    assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    assert (await client.delete(f"/api-keys/{key_id}", headers=admin)).status_code == 200
    error = assert_error(await client.get("/accounts", headers={"X-API-Key": key}), 401, "invalid_api_key")
    assert "revoked" in error["message"]


async def test_expired_key(client, make_key, conn_engine):
    key = await make_key("ledger:read", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    async with conn_engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"), {"id": key[4:16]}
        )
    error = assert_error(await client.get("/accounts", headers={"X-API-Key": key}), 401, "invalid_api_key")
    assert "expired" in error["message"]


@pytest.mark.parametrize("scope", ["catalog:read", "usage:write"])
async def test_missing_scope(client, make_key, scope):
    key = await make_key(scope)
    error = assert_error(await client.get("/accounts", headers={"X-API-Key": key}), 403, "insufficient_scope")
    assert "ledger:read" in error["message"]


async def test_ledger_key_cannot_use_admin_endpoints(client, make_key):
    headers = {"X-API-Key": await make_key("ledger:read", "usage:write", "catalog:read")}
    assert_error(await client.post("/accounts", json={"name": "x"}, headers=headers), 403, "insufficient_scope")
    assert_error(await client.get("/api-keys", headers=headers), 403, "insufficient_scope")
    assert_error(await client.delete("/api-keys/abc", headers=headers), 403, "insufficient_scope")


async def test_admin_has_every_scope(client, admin):
    assert (await client.get("/accounts", headers=admin)).status_code == 200


async def test_account_bound_key_sees_only_its_account(client, admin, make_key):
    for account_id in ("alpha", "beta"):
        response = await client.post("/accounts", json={"id": account_id, "name": account_id}, headers=admin)
        assert response.status_code == 201
    own = {"X-API-Key": await make_key("ledger:read", account_id="alpha")}

    listed = (await client.get("/accounts", headers=own)).json()
    assert [account["id"] for account in listed["data"]] == ["alpha"]
    assert (await client.get("/accounts/alpha", headers=own)).json()["id"] == "alpha"
    # Another account answers exactly like an account that does not exist.
    other = assert_error(await client.get("/accounts/beta", headers=own), 404, "account_not_found")
    missing = assert_error(await client.get("/accounts/gamma", headers=own), 404, "account_not_found")
    assert other["message"].replace("beta", "?") == missing["message"].replace("gamma", "?")


async def test_last_use_is_recorded_in_bulk_not_per_request(client, make_key, conn_engine):
    key = await make_key("ledger:read")
    for _ in range(3):
        assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    query = text("SELECT last_used_at FROM api_keys WHERE id = :id")
    async with conn_engine.connect() as conn:
        assert (await conn.execute(query, {"id": key[4:16]})).scalar() is None
    tracker: LastUsed = client.app.state.last_used
    assert key[4:16] in tracker.pending
    await tracker.flush(conn_engine)
    async with conn_engine.connect() as conn:
        used = (await conn.execute(query, {"id": key[4:16]})).scalar()
    assert used is not None and datetime.now(UTC) - used < timedelta(minutes=1)
