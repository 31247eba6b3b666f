import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.keys import repository as keys_repository
from app.keys.auth import KeyCache, KeyChanges, LastUsed
from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


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


async def test_expired_key(client, make_key, clock):
    key = await make_key("ledger:read", expires_at=clock.now() + timedelta(minutes=1))
    await listening(client)
    assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    clock.advance(minutes=2)
    # Expiry is checked on every request, by the app's clock, also while the key is cached.
    error = assert_error(await client.get("/accounts", headers={"X-API-Key": key}), 401, "invalid_api_key")
    assert "expired" in error["message"]


async def listening(client) -> KeyCache:
    """The app's key cache, once it listens for key changes (it caches nothing before)."""
    cache: KeyCache = client.app.state.key_cache
    for _ in range(100):
        if cache.listening:
            return cache
        await asyncio.sleep(0.05)
    raise AssertionError("the key cache never started listening")


async def quietly(conn_engine, statement: str, key_id: str) -> None:
    """Change a key with the change trigger off, as if its notification were lost."""
    async with conn_engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(statement), {"id": key_id})


async def test_keys_are_cached_until_a_change_is_announced(client, make_key, conn_engine):
    key = await make_key("ledger:read")
    headers = {"X-API-Key": key}
    cache = await listening(client)
    assert (await client.get("/accounts", headers=headers)).status_code == 200
    assert key[4:16] in cache.rows
    await quietly(conn_engine, "UPDATE api_keys SET revoked_at = now() WHERE id = :id", key[4:16])
    # Served from the cache: the database was not asked, and nothing announced the change.
    assert (await client.get("/accounts", headers=headers)).status_code == 200
    # What the API and the CLI do after a revocation commits, for every process of this host.
    KeyChanges.for_database(client.app.state.engine.url.render_as_string(hide_password=False)).announce()
    error = assert_error(await client.get("/accounts", headers=headers), 401, "invalid_api_key")
    assert "revoked" in error["message"]


async def test_the_cache_still_checks_the_secret(client, make_key):
    key = await make_key("ledger:read")
    await listening(client)
    assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    forged = key[:16] + ("A" if key[16] != "A" else "B") + key[17:]
    assert_error(await client.get("/accounts", headers={"X-API-Key": forged}), 401, "invalid_api_key")


async def test_a_change_made_in_plain_sql_reaches_the_cache(client, make_key, conn_engine):
    key = await make_key("ledger:read")
    headers = {"X-API-Key": key}
    await listening(client)
    assert (await client.get("/accounts", headers=headers)).status_code == 200
    async with conn_engine.begin() as conn:  # the announcement reaches every listening worker at commit
        await conn.execute(text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": key[4:16]})
        await conn.execute(text(keys_repository.CHANGED))
    for _ in range(50):
        if (await client.get("/accounts", headers=headers)).status_code == 401:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the notification never reached the key cache")


async def test_recording_last_use_does_not_drop_the_cache(client, make_key, conn_engine):
    key = await make_key("ledger:read")
    cache = await listening(client)
    assert (await client.get("/accounts", headers={"X-API-Key": key})).status_code == 200
    await client.app.state.last_used.flush(conn_engine)
    await asyncio.sleep(0.2)  # time for a notification, were there one
    assert key[4:16] in cache.rows


async def test_nothing_is_cached_while_the_listener_is_down(client, make_key, conn_engine):
    key = await make_key("ledger:read")
    headers = {"X-API-Key": key}
    cache = await listening(client)
    async with conn_engine.begin() as conn:
        ended = await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query = 'LISTEN \"api_keys_changed\"'"
            )
        )
        assert ended.scalars().all() == [True]
    for _ in range(100):
        if not cache.listening:
            break
        await asyncio.sleep(0.01)
    assert not cache.listening
    assert (await client.get("/accounts", headers=headers)).status_code == 200
    if not cache.listening:  # (it reconnects after a second)
        assert key[4:16] not in cache.rows
    await listening(client)  # it comes back by itself
    assert (await client.get("/accounts", headers=headers)).status_code == 200
    assert key[4:16] in cache.rows


def test_key_changes_are_shared_through_a_file(tmp_path):
    path = tmp_path / "private" / "keys-test"
    ours, theirs = KeyChanges(path), KeyChanges(path)
    before = ours.read()
    # Another process of this host, as the CLI is.
    code = (
        "import sys; from pathlib import Path; from app.keys.auth import KeyChanges; "
        "KeyChanges(Path(sys.argv[1])).announce()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert ours.read() != before and ours.read() == theirs.read()
    assert os.stat(path.parent).st_mode & 0o777 == 0o700 and os.stat(path).st_mode & 0o777 == 0o600


def test_a_shared_folder_is_refused(tmp_path, caplog):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    changes = KeyChanges(folder / "keys-test")
    assert isinstance(changes.view, bytearray) and not (folder / "keys-test").exists()
    assert "stay within this process" in caplog.text
    before = changes.read()
    changes.announce()  # still works within the process
    assert changes.read() != before


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
