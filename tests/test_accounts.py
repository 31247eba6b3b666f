import pytest

from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


async def test_create_and_get(client, admin):
    response = await client.post(
        "/accounts", json={"id": "acme", "name": "Acme", "overdraft_limit": "25.5"}, headers=admin
    )
    assert response.status_code == 201
    account = response.json()
    assert account["id"] == "acme" and account["status"] == "active"
    assert account["overdraft_limit"] == "25.500000000"
    assert account["balance"] == account["pending"] == account["available"] == "0.000000000"
    assert (await client.get("/accounts/acme", headers=admin)).json() == account


async def test_generated_id(client, admin):
    account = (await client.post("/accounts", json={"name": "Anon"}, headers=admin)).json()
    assert account["id"].startswith("acct_")


async def test_duplicate_id_is_409(client, admin):
    await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)
    error = assert_error(
        await client.post("/accounts", json={"id": "acme", "name": "Again"}, headers=admin), 409, "account_exists"
    )
    assert error["param"] == "id"
    assert (await client.get("/accounts/acme", headers=admin)).json()["name"] == "Acme"


async def test_invalid_accounts_change_nothing(client, admin):
    async def create(body):
        return await client.post("/accounts", json=body, headers=admin)

    assert_error(await create({"name": "x", "id": "has space"}), 400, "validation_error")
    assert_error(await create({"name": "x", "id": "x" * 65}), 400, "validation_error")
    for bad in ("-1", "0.0000000001", "1e40", "NaN", "Infinity"):
        error = assert_error(await create({"name": "x", "overdraft_limit": bad}), 400, "validation_error")
        assert error.get("param") == "overdraft_limit" or "overdraft_limit" in error["message"], bad
    assert (await client.get("/accounts", headers=admin)).json()["data"] == []


async def test_unknown_account(client, admin):
    assert_error(await client.get("/accounts/nobody", headers=admin), 404, "account_not_found")


async def test_list_pages_by_id(client, admin):
    for name in ("c", "a", "b"):
        await client.post("/accounts", json={"id": name, "name": name}, headers=admin)
    first = (await client.get("/accounts", params={"limit": 2}, headers=admin)).json()
    assert [a["id"] for a in first["data"]] == ["a", "b"]
    rest = (await client.get("/accounts", params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)).json()
    assert [a["id"] for a in rest["data"]] == ["c"] and rest["next_cursor"] is None
