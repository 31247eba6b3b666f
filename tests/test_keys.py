from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


async def test_create_shows_the_secret_once(client, admin, conn_engine):
    response = await client.post("/api-keys", json={"name": "gateway", "scopes": ["usage:write"]}, headers=admin)
    assert response.status_code == 201
    created = response.json()
    secret = created["key"]
    assert secret.startswith("cmk_") and created["prefix"] == "cmk_" + created["id"]
    assert created["scopes"] == ["usage:write"] and created["revoked_at"] is None

    listed = await client.get("/api-keys", headers=admin)
    assert secret not in listed.text and all("key" not in key for key in listed.json()["data"])
    assert created["id"] in {key["id"] for key in listed.json()["data"]}

    # Only a hash is stored: the plaintext appears nowhere in the table.
    async with conn_engine.connect() as conn:
        dump = (await conn.execute(text("SELECT string_agg(t::text, ' ') FROM api_keys t"))).scalar()
    assert secret not in dump and secret[16:] not in dump


async def test_bound_key(client, admin):
    await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)
    response = await client.post(
        "/api-keys", json={"name": "acme", "scopes": ["ledger:read"], "account_id": "acme"}, headers=admin
    )
    assert response.status_code == 201 and response.json()["account_id"] == "acme"
    listed = await client.get("/api-keys", params={"account_id": "acme"}, headers=admin)
    assert [key["account_id"] for key in listed.json()["data"]] == ["acme"]


async def test_create_rejects_bad_input(client, admin):
    async def create(body):
        return await client.post("/api-keys", json=body, headers=admin)

    assert_error(await create({"name": "x", "scopes": []}), 400, "validation_error")
    error = assert_error(await create({"name": "x", "scopes": ["root"]}), 400, "validation_error")
    assert "scopes" in error["message"]
    assert_error(await create({"name": "", "scopes": ["admin"]}), 400, "validation_error")
    assert_error(await create({"name": "x", "scopes": ["admin"], "account_id": "nope"}), 400, "validation_error")
    error = assert_error(
        await create({"name": "x", "scopes": ["ledger:read"], "account_id": "nope"}), 404, "account_not_found"
    )
    assert error["param"] == "account_id"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    error = assert_error(await create({"name": "x", "scopes": ["admin"], "expires_at": past}), 400, "validation_error")
    assert error["param"] == "expires_at"
    naive = "2099-01-01T00:00:00"
    assert_error(await create({"name": "x", "scopes": ["admin"], "expires_at": naive}), 400, "validation_error")
    listed = (await client.get("/api-keys", headers=admin)).json()["data"]
    assert len(listed) == 1  # only the admin key of the fixture


async def test_revoke(client, admin, make_key):
    key = await make_key("catalog:read")
    response = await client.delete(f"/api-keys/{key[4:16]}", headers=admin)
    assert response.status_code == 200 and response.json()["revoked_at"]
    again = await client.delete(f"/api-keys/{key[4:16]}", headers=admin)
    assert again.json()["revoked_at"] == response.json()["revoked_at"]
    assert_error(await client.delete("/api-keys/000000000000", headers=admin), 404, "api_key_not_found")


async def test_list_pages_with_a_cursor(client, admin, make_key):
    for n in range(4):
        await make_key("catalog:read", name=f"k{n}")
    first = (await client.get("/api-keys", params={"limit": 3}, headers=admin)).json()
    assert len(first["data"]) == 3 and first["next_cursor"]
    second = (await client.get("/api-keys", params={"limit": 3, "cursor": first["next_cursor"]}, headers=admin)).json()
    assert len(second["data"]) == 2 and second["next_cursor"] is None
    ids = [key["id"] for key in first["data"] + second["data"]]
    assert len(set(ids)) == 5
    assert_error(await client.get("/api-keys", params={"cursor": "garbage!"}, headers=admin), 400, "validation_error")
    assert_error(await client.get("/api-keys", params={"limit": 0}, headers=admin), 400, "validation_error")


async def test_key_creation_and_revocation_are_audited(client, admin, conn_engine):
    created = (await client.post("/api-keys", json={"name": "gw", "scopes": ["usage:write"]}, headers=admin)).json()
    await client.delete(f"/api-keys/{created['id']}", headers=admin)
    entries = (await client.get("/api-keys/audit", headers=admin)).json()["data"]
    actions = [(e["action"], e["target"]) for e in entries]
    assert ("api_key.created", f"api_key:{created['id']}") in actions
    assert ("api_key.revoked", f"api_key:{created['id']}") in actions
    actor = f"api_key:{admin['X-API-Key'][4:16]}"
    assert all(e["actor"] == actor for e in entries if e["target"] == f"api_key:{created['id']}")
    async with conn_engine.connect() as conn:
        dump = (await conn.execute(text("SELECT string_agg(t::text, ' ') FROM audit_log t"))).scalar()
    assert created["key"] not in dump and created["key"][16:] not in dump
