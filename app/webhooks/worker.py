"""The delivery worker: sends due webhook deliveries, signed as Standard Webhooks, and retries failures.

Every worker process runs one. A round claims due deliveries with FOR UPDATE SKIP LOCKED and leases
them (their `next_attempt_at` moves LEASE ahead) in a short transaction, sends them outside any
transaction, then records each outcome. Two workers never claim the same delivery at once; a worker
that dies mid-send leaves its deliveries due again when the lease lapses, so nothing is lost and a
receiver may see a message twice (at-least-once: the `webhook-id` is the same on every attempt, for
receivers to drop repeats). A worker that is stopped (a restart, a deploy) gives back what it has
claimed and not yet recorded, due at once, so a restart does not hold deliveries for a lease."""

import asyncio
import json
import logging
import math
import random
from datetime import datetime, timedelta

import asyncpg
import httpx
from standardwebhooks import Webhook

from app.clock import Clock
from app.webhooks import repository

log = logging.getLogger("app.webhooks")

TIMEOUT = httpx.Timeout(10.0)
# Longer than any send can take (TIMEOUT), so a live worker's claim never lapses under it.
LEASE = timedelta(seconds=60)
# Failed attempts are retried for at least this long, then the delivery is marked failed.
RETRY_WINDOW = timedelta(hours=24)
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY_DELAY = timedelta(hours=1)
BATCH = 20
POLL_SECONDS = 1.0
# How much of a receiver's answer is kept, for the deliveries listing.
EXCERPT_BYTES = 500


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: doubling from FIRST_RETRY up to MAX_RETRY_DELAY,
    less a random part of up to half, so receivers that failed together are not retried in step."""
    delay = min(MAX_RETRY_DELAY, FIRST_RETRY * 2 ** min(attempts - 1, 30))
    return delay * random.uniform(0.5, 1.0)


def signed_headers(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "creditmeter-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, poll_seconds: float = POLL_SECONDS) -> None:
        self.pool = pool
        self.clock = clock
        self.poll_seconds = poll_seconds

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            while True:
                try:
                    sent = await self.deliver_due(client)
                except Exception:  # the next round tries again; leased deliveries come back when it lapses
                    log.warning("delivering webhooks failed", exc_info=True)
                    sent = 0
                if sent < BATCH:
                    await asyncio.sleep(self.poll_seconds)

    async def deliver_due(self, client: httpx.AsyncClient, limit: int = BATCH) -> int:
        """One round: claim up to `limit` due deliveries, send them, record the outcomes; how many were sent."""
        now = self.clock.now()
        lease_until = now + LEASE
        async with self.pool.acquire() as conn, conn.transaction():
            claims = await repository.claim_due(conn, now, lease_until, limit)
        try:
            outcomes = await asyncio.gather(*(self.send(client, claim) for claim in claims), return_exceptions=True)
        except asyncio.CancelledError:
            if claims:
                await asyncio.shield(self.give_back(claims, lease_until))
            raise
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # not recorded: sent again when the lease lapses
                log.warning("recording a webhook delivery failed", exc_info=outcome)
        return len(claims)

    async def give_back(self, claims: list[asyncpg.Record], lease_until: datetime) -> None:
        """Make the claims this worker still holds due now; best effort, as the lease covers a failure."""
        try:
            async with self.pool.acquire() as conn:
                given = await repository.give_back(conn, claims, lease_until, self.clock.now())
            log.info("stopping: gave back %d webhook deliveries", given)
        except Exception:
            log.warning(
                "giving back webhook deliveries failed; they are due again when their lease lapses", exc_info=True
            )

    async def send(self, client: httpx.AsyncClient, claim: asyncpg.Record) -> None:
        body = json.dumps(claim["payload"], separators=(",", ":"))
        at = self.clock.now()
        headers = signed_headers(claim["secret"], claim["event_id"], at, body)
        status, excerpt, error = None, None, None
        try:
            async with client.stream("POST", claim["url"], content=body.encode(), headers=headers) as response:
                status, excerpt = response.status_code, await read_excerpt(response)
        except Exception as exc:  # whatever went wrong with this receiver is this attempt's failure, kept with it
            error = f"{type(exc).__name__}: {exc}"[:EXCERPT_BYTES]
        if status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        done = self.clock.now()
        if error is None:
            outcome, next_attempt_at = "succeeded", None
        elif done - claim["retry_since"] >= RETRY_WINDOW:
            outcome, next_attempt_at = "failed", None
        else:
            outcome, next_attempt_at = "pending", done + backoff(claim["attempts"])
        if error is not None:
            log.info("webhook delivery %s to %s: %s (%s)", claim["id"], claim["endpoint_id"], error, outcome)
        async with self.pool.acquire() as conn:
            await repository.record_attempt(
                conn,
                claim,
                status=outcome,
                next_attempt_at=next_attempt_at,
                at=at,
                response_status=status,
                response=excerpt,
                error=error,
            )


async def read_excerpt(response: httpx.Response) -> str:
    """The start of the answer; the rest is not read, however long it is."""
    excerpt = b""
    async for chunk in response.aiter_bytes():
        excerpt += chunk
        if len(excerpt) >= EXCERPT_BYTES:
            break
    # PostgreSQL text holds no NUL.
    return excerpt[:EXCERPT_BYTES].decode(errors="replace").replace("\x00", "")
