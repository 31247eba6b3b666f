"""A restart of `billing serve` while a webhook is on its way loses nothing: the stopping server gives the
delivery back, and the next one sends it again at once, with the same `webhook-id`."""

import asyncio
import signal

import httpx
from sqlalchemy import text

from tests.test_serve import Server
from tests.test_webhooks import Receiver


async def delivery_rows(conn_engine) -> list:
    async with conn_engine.connect() as conn:
        query = text("SELECT status, attempts, next_attempt_at, now() AS db_now FROM webhook_deliveries")
        return list(await conn.execute(query))


async def test_a_restart_during_delivery_loses_nothing(database, conn_engine, make_key):
    admin = {"X-API-Key": await make_key("admin")}
    receiver = Receiver()
    receiver.start()
    receiver.hold.clear()  # the first delivery is kept waiting until the server has stopped
    env = {"DATABASE_URL": database, "BILLING_WEBHOOK_POLL_SECONDS": "0.1"}
    servers = []
    try:
        first = Server(env)
        servers.append(first)
        first.wait_until_serving()
        async with httpx.AsyncClient(base_url=first.base, headers=admin, timeout=10) as api:
            hook = (await api.post("/webhooks", json={"url": receiver.url, "events": ["balance.low"]})).json()
            assert (await api.post("/accounts", json={"id": "acme", "name": "Acme"})).status_code == 201
            # At a balance of 0, a threshold of 5 is already crossed: balance.low at once.
            assert (await api.patch("/accounts/acme", json={"low_balance_threshold": "5"})).status_code == 200
        for _ in range(600):
            if receiver.requests:
                break
            await asyncio.sleep(0.05)
        assert len(receiver.requests) == 1, "the delivery never reached the receiver"

        # After a graceful stop, it dies of the signal, as a supervisor expects.
        assert first.terminate() == -signal.SIGTERM
        [given_back] = await delivery_rows(conn_engine)
        assert (given_back.status, given_back.attempts) == ("pending", 1)
        assert given_back.next_attempt_at <= given_back.db_now, "the stopped server kept its claim"

        receiver.hold.set()
        second = Server(env)
        servers.append(second)
        second.wait_until_serving()
        async with httpx.AsyncClient(base_url=second.base, headers=admin, timeout=10) as api:
            for _ in range(300):
                [delivery] = (await api.get(f"/webhooks/{hook['id']}/deliveries")).json()["data"]
                if delivery["status"] == "succeeded":
                    break
                await asyncio.sleep(0.1)
        assert (delivery["status"], delivery["attempts"]) == ("succeeded", 2)
        async with conn_engine.connect() as conn:
            secret = (await conn.execute(text("SELECT secret FROM webhook_endpoints"))).scalar_one()
        sent = receiver.verified(secret)
        assert [message["type"] for message in sent] == ["balance.low", "balance.low"]
        assert len({headers["webhook-id"] for headers, _ in receiver.requests}) == 1
    finally:
        receiver.hold.set()
        for server in servers:
            if server.process.poll() is None:
                server.terminate()
        receiver.stop()
