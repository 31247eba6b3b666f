"""The service behind PgBouncer in transaction pooling mode (BILLING_DATABASE_POOLER=pgbouncer): more clients
than the server lets in, through a few server connections, and nothing lost or doubled; LISTEN/NOTIFY over
the direct URL."""

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url, text

from app.asgi import create_app
from app.db import plain_dsn
from app.keys import repository as keys_repository
from app.keys.format import KEY_ID_LENGTH, KEY_PREFIX
from app.pgbouncer import PgBouncer, binary
from tests.helpers import assert_reconciled

pytestmark = pytest.mark.skipif(
    binary() is None, reason="pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)"
)

# The server lets the pooled role in this many times (CONNECTION LIMIT), and PgBouncer opens no more.
SERVER_CONNECTIONS = 3
CLIENTS = 24
ACCOUNTS = ["pool-a", "pool-b", "pool-c"]
GRANT = Decimal(1000)
NANO = Decimal("0.000000001")


@pytest.fixture
async def pooled_role(database: str) -> AsyncIterator[str]:
    """A role of the service's own that the server admits SERVER_CONNECTIONS times at once: not a superuser,
    whom connection limits do not bind."""
    role = f"billing_pooled_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(plain_dsn(database))
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {SERVER_CONNECTIONS}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        await conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        yield role
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
        await conn.close()


@pytest.fixture
async def bouncer(database, pooled_role) -> AsyncIterator[str]:
    """PgBouncer's URL for the pooled role."""
    bouncer = PgBouncer(database, server_connections=SERVER_CONNECTIONS, server_user=pooled_role)
    url = await asyncio.to_thread(bouncer.start)
    try:
        yield make_url(url).set(username=pooled_role).render_as_string(hide_password=False)
    finally:
        await asyncio.to_thread(bouncer.stop)


@pytest.fixture
async def pooled_client(settings, database, bouncer, conn_engine, clock) -> AsyncIterator[AsyncTestClient]:
    pooled = replace(
        settings, database_url=bouncer, direct_database_url=database, database_pooler="pgbouncer", db_pool_size=16
    )
    async with AsyncTestClient(create_app(pooled, clock)) as client:
        yield client


async def statements_left(bouncer: str) -> int:
    """Prepared statements on PgBouncer's server sessions: as many transactions at once as it has sessions,
    so each holds one of them."""
    conns = [await asyncpg.connect(plain_dsn(bouncer), statement_cache_size=0) for _ in range(SERVER_CONNECTIONS)]
    try:
        for conn in conns:
            await conn.execute("BEGIN")
        sessions = {await conn.fetchval("SELECT pg_backend_pid()") for conn in conns}
        assert len(sessions) == SERVER_CONNECTIONS
        return sum([await conn.fetchval("SELECT count(*) FROM pg_prepared_statements") for conn in conns])
    finally:
        for conn in conns:
            await conn.close()


def event(event_id: str, account: str, tokens: int, **extra) -> dict:
    body = {"event_id": event_id, "account_id": account, "model": "openai/gpt-4o-mini"}
    return body | {"input_tokens": tokens, "output_tokens": tokens // 3} | extra


async def one_client(http: httpx.AsyncClient, gateway: dict, n: int) -> list[tuple[str, int, dict]]:
    """Singles (one sent twice), a batch with one of them again, a hold captured and a hold voided."""
    account = ACCOUNTS[n % len(ACCOUNTS)]
    out = []
    singles = [event(f"c{n}-s{i}", account, 100 * n + i + 1) for i in range(3)]
    for body in [*singles, singles[0]]:
        response = await http.post("/usage", json=body, headers=gateway)
        out.append(("single", response.status_code, response.json()))
    batch = [event(f"c{n}-b{i}", account, 50 * n + i + 7) for i in range(4)] + [singles[1]]
    response = await http.post("/usage/batch", json={"events": batch}, headers=gateway)
    assert response.status_code == 200, response.text
    out += [("batch", 0, result) for result in response.json()["results"]]
    holds = []
    for _ in range(2):
        call = {"account_id": account, "model": "openai/gpt-4o", "input_tokens": 0, "max_output_tokens": 5000}
        response = await http.post("/authorizations", json=call, headers=gateway)
        assert response.status_code == 201, response.text
        holds.append(response.json())
    capture = event(f"c{n}-hold", account, 900, authorization_id=holds[0]["id"])
    response = await http.post("/usage", json=capture, headers=gateway)
    out.append(("capture", response.status_code, response.json()))
    response = await http.post(f"/authorizations/{holds[1]['id']}/release", headers=gateway)
    out.append(("void", response.status_code, response.json()))
    return out


async def test_through_pgbouncer_nothing_lost_or_doubled(pooled_client, bouncer, admin, make_key, conn_engine):
    client = pooled_client
    for account in ACCOUNTS:
        assert (await client.post("/accounts", json={"id": account, "name": account}, headers=admin)).status_code == 201
        grant = await client.post(f"/accounts/{account}/grants", json={"amount": str(GRANT)}, headers=admin)
        assert grant.status_code == 201, grant.text
    gateway = {"X-API-Key": await make_key("usage:write", "ledger:read")}

    async def load() -> list[list[tuple]]:
        # On the app's own event loop, through its ASGI interface: CLIENTS requests in flight at once.
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http:
            return await asyncio.gather(*(one_client(http, gateway, n) for n in range(CLIENTS)))

    outcomes = await asyncio.to_thread(client.blocking_portal.call, load)

    # More client connections than the server admits: PgBouncer shared its few among them.
    assert client.app.state.pool.get_size() > SERVER_CONNECTIONS

    created: dict[tuple[str, str], dict] = {}
    replays: dict[tuple[str, str], int] = defaultdict(int)
    for rows in outcomes:
        for kind, status, body in rows:
            if kind == "void":
                assert status == 200 and body["status"] == "released", body
                continue
            if kind == "batch":
                assert body["status"] in ("created", "duplicate"), body
                status, body = (201 if body["status"] == "created" else 200), body["event"]
            assert status in (200, 201), body
            key = (body["account_id"], body["event_id"])
            if status == 201:
                assert key not in created, key
                created[key] = body
            else:
                replays[key] += 1
    assert len(created) == CLIENTS * 8 and set(replays) <= set(created)
    assert sum(replays.values()) == 2 * CLIENTS  # the single sent again and the single in the batch

    for account in ACCOUNTS:
        spent = sum(Decimal(body["cost"]) for (owner, _), body in created.items() if owner == account)
        response = await client.get(f"/accounts/{account}/balance", headers=admin)
        balance = response.json()
        assert balance["balance"] == format((GRANT - spent).quantize(NANO), "f"), account
        assert Decimal(balance["pending"]) == 0  # each hold captured or voided
    async with conn_engine.connect() as conn:
        stored = (
            await conn.execute(text("SELECT count(*), count(DISTINCT (account_id, event_id)) FROM usage_events"))
        ).one()
    assert tuple(stored) == (len(created), len(created))
    await assert_reconciled(conn_engine)
    # No statement outlives its transaction: a server session serves every client and never forgets one.
    assert await statements_left(bouncer) == 0


async def test_a_missing_statement_timeout_is_reported(settings, database, bouncer, pooled_role, caplog):
    """Behind PgBouncer the service cannot send statement_timeout when connecting: it says so when the role
    has none, and not when the role has one."""
    pooled = replace(settings, database_url=bouncer, direct_database_url=database, database_pooler="pgbouncer")
    warning = "no statement_timeout behind PgBouncer"
    for setting, timeout in (("SET statement_timeout = '10s'", "10s"), ("RESET statement_timeout", "0")):
        await alter_role(database, pooled_role, setting)
        caplog.clear()
        app = create_app(pooled)
        logging.getLogger().addHandler(caplog.handler)  # create_app replaced the root logger's handlers
        async with AsyncTestClient(app) as client:
            show = client.app.state.pool.fetchval  # on the app's event loop
            assert await asyncio.to_thread(client.blocking_portal.call, show, "SHOW statement_timeout") == timeout
        assert (warning in caplog.text) == (timeout == "0")


async def alter_role(database: str, role: str, setting: str) -> None:
    """ALTER ROLE, then end the role's sessions, which PgBouncer keeps between clients, so its next ones
    start with the new setting."""
    conn = await asyncpg.connect(plain_dsn(database))
    try:
        await conn.execute(f"ALTER ROLE {role} {setting}")
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        for _ in range(100):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role):
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_revoked_key_is_refused_at_once_through_pgbouncer(pooled_client, make_key, database):
    """The key cache drops a key revoked by plain SQL on the notification alone: the listener's session is on
    the direct URL (through transaction pooling it would never hear it), and the cached key has a minute left."""
    client = pooled_client
    key = await make_key("ledger:read")
    headers = {"X-API-Key": key}
    cache = client.app.state.key_cache
    for _ in range(100):
        if cache.listening:
            break
        await asyncio.sleep(0.05)
    assert cache.listening
    assert (await client.get("/usage", headers=headers)).status_code == 200
    assert cache.rows  # cached

    conn = await asyncpg.connect(plain_dsn(database))
    try:
        listeners = await conn.fetch(
            "SELECT usename FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1", key[len(KEY_PREFIX) :][:KEY_ID_LENGTH]
        )
        await conn.execute(keys_repository.CHANGED)  # what every writer of api_keys runs
    finally:
        await conn.close()

    for _ in range(100):
        response = await client.get("/usage", headers=headers)
        if response.status_code == 401:
            break
        await asyncio.sleep(0.05)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["message"] == "API key has been revoked"
    assert listeners and {row["usename"] for row in listeners} == {make_url(database).username}
