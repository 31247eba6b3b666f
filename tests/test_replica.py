"""BILLING_READ_DATABASE_URL: reports, usage and ledger lists and CSV exports read from a streaming replica;
writes, their answers, idempotent replays and balances stay on the primary.

A private primary (an embedded server: its pg_hba lets replication in over its socket, which the test
server's need not) and a replica of it made with `pg_basebackup -R`. Replay is paused on the replica, so a
fresh write is on the primary only: the endpoints that read the replica miss it, the others see it."""

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url

from app import db
from app.asgi import create_app
from app.catalog.importer import import_catalog, read_catalog
from app.config import Settings
from app.embedded import BIN_DIR, ROOT_RUNS_AS, EmbeddedPostgres
from app.keys import service as key_service
from app.keys.schemas import KeyCreate
from tests.helpers import migrate

NANO = Decimal("0.000000001")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """(primary URL, replica URL) of the `billing` database, migrated, with the default catalog."""
    folder = Path(tempfile.mkdtemp(prefix="billing-replica-"))
    primary, standby = EmbeddedPostgres(folder / "primary"), EmbeddedPostgres(folder / "replica")
    try:
        primary_url = primary.start()
        asyncio.run(prepare(primary_url))
        (folder / "replica").mkdir()
        base_backup(make_url(primary_url).query["host"], folder / "replica")
        replica_url = standby.start()
        yield with_database(primary_url), with_database(replica_url)
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


def with_database(url: str) -> str:
    return make_url(url).set(database="billing").render_as_string(hide_password=False)


async def prepare(server: str) -> None:
    conn = await asyncpg.connect(db.plain_dsn(server))
    try:
        await conn.execute("CREATE DATABASE billing")
    finally:
        await conn.close()
    url = with_database(server)
    await migrate(url)
    engine = db.create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await import_catalog(conn, read_catalog(), at=datetime.now(UTC), label="default")
    finally:
        await engine.dispose()


def base_backup(socket_dir: str, folder: Path) -> None:
    """The primary's files in folder/pgdata with standby.signal and primary_conninfo (-R), as the server's user."""
    as_user = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(ROOT_RUNS_AS)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    source = ["-h", socket_dir, "-p", "5432", "-U", "postgres", "-c", "fast"]
    done = subprocess.run(
        [str(BIN_DIR / "pg_basebackup"), "-D", str(folder / "pgdata"), "-R", "-X", "stream", *source],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        check=False,
        **as_user,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
async def replica_client(servers) -> AsyncIterator[tuple[AsyncTestClient, dict]]:
    primary, replica = servers
    engine = db.create_engine(primary, pool_size=1)
    try:
        async with engine.begin() as conn:
            created = await key_service.create(
                conn, KeyCreate(name="admin", scopes=["admin"]), actor="test", now=datetime.now(UTC)
            )
    finally:
        await engine.dispose()
    settings = replace(Settings.from_env({}), database_url=primary, read_database_url=replica)
    async with AsyncTestClient(create_app(settings)) as client:
        yield client, {"X-API-Key": created.key}


async def replayed(replica: str, primary: str) -> None:
    """Wait until the replica has replayed everything the primary has written."""
    source, target = await asyncpg.connect(db.plain_dsn(primary)), await asyncpg.connect(db.plain_dsn(replica))
    try:
        lsn = await source.fetchval("SELECT pg_current_wal_lsn()")
        for _ in range(200):
            if await target.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", lsn):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the replica did not catch up within 10 s")
    finally:
        await source.close()
        await target.close()


async def replay(replica: str, action: str) -> None:
    conn = await asyncpg.connect(db.plain_dsn(replica))
    try:
        await conn.execute(f"SELECT pg_wal_replay_{action}()")
    finally:
        await conn.close()


def usage(event_id: str, tokens: int) -> dict:
    return {"event_id": event_id, "account_id": "acme", "model": "openai/gpt-4o-mini"} | {
        "input_tokens": tokens,
        "output_tokens": tokens // 2,
    }


async def test_reads_come_from_the_replica_writes_and_balances_from_the_primary(replica_client, servers):
    client, admin = replica_client
    primary, replica = servers
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    assert (await client.post("/accounts/acme/grants", json={"amount": "100"}, headers=admin)).status_code == 201
    first = await client.post("/usage", json=usage("e1", 1000), headers=admin)
    assert first.status_code == 201, first.text
    await replayed(replica, primary)

    await replay(replica, "pause")
    try:
        second = await client.post("/usage", json=usage("e2", 3000), headers=admin)
        assert second.status_code == 201, second.text
        costs = Decimal(first.json()["cost"]) + Decimal(second.json()["cost"])
        after = format((Decimal(100) - costs).quantize(NANO), "f")
        # The write's own answer, its replay and the balance: the primary's.
        assert second.json()["balance_after"] == after
        again = await client.post("/usage", json=usage("e2", 3000), headers=admin)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert (await client.get("/accounts/acme/balance", headers=admin)).json()["balance"] == after
        # Reports, lists and exports: the replica's, which has not replayed the second event yet.
        await assert_reads(client, admin, events=["e1"], spent=Decimal(first.json()["cost"]))
    finally:
        await replay(replica, "resume")
    await replayed(replica, primary)
    await assert_reads(client, admin, events=["e1", "e2"], spent=costs)


async def assert_reads(client, admin, events: list[str], spent: Decimal) -> None:
    listed = (await client.get("/usage", params={"account_id": "acme"}, headers=admin)).json()["data"]
    assert [event["event_id"] for event in listed] == events
    report = (await client.get("/reports/usage", params={"account_id": "acme"}, headers=admin)).json()
    assert report["totals"]["events"] == len(events)
    trial = (await client.get("/reports/trial-balance", params={"account_id": "acme"}, headers=admin)).json()
    assert [row["usage"] for row in trial["accounts"]] == [format((-spent).quantize(NANO), "f")]
    ledger = (await client.get("/accounts/acme/ledger", headers=admin)).json()["data"]
    assert [entry["kind"] for entry in ledger] == ["grant", *["usage"] * len(events)]
    csv = await client.get("/accounts/acme/ledger", params={"format": "csv"}, headers=admin)
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == 2 + len(events)
