"""Rating: unrated usage is charged once the catalog can price it.

An unrated event waits in `unrated_usage` with everything it was reported with. A rating pass looks
at the distinct (model string, provider) pairs waiting, resolves each against the current catalog,
and charges the events whose model now resolves and is priced for their usage, at the price version
and margin in effect at their `occurred_at`. Each chunk of events is one transaction that locks
their accounts (in id order, like every writer), deletes the events from `unrated_usage` and records
them through `service.record`, the path every charge takes. Only the transaction whose DELETE
returned an event charges it, so two passes (two workers, or a worker and `billing rate`) can run at
once and an event is still charged exactly once; a retry of the event waits on the account lock and
then finds it charged.

Passes run in each worker when its catalog changes (an alias, a model, a price, an import or a
sync, whichever worker or process made it), and shortly after the worker records unrated events (the
catalog may have learned their model while they were on their way); `billing rate` runs one on
demand.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg
import msgspec

from app import db
from app.catalog.model import Catalog
from app.catalog.store import CatalogStore
from app.clock import Clock
from app.ledger import repository as ledger_repository
from app.observability import RATED
from app.usage import repository, service
from app.usage.schemas import Prepared, UsageEvent

log = logging.getLogger("app.usage.rating")
CHUNK = 1000


class RatingResult(msgspec.Struct):
    rated: int
    waiting: int


async def rate(
    pool: asyncpg.Pool,
    catalog: Catalog,
    now: Callable[[], datetime],
    only: set[tuple[str, str | None]] | None = None,
) -> RatingResult:
    """Charge every waiting event the catalog can now price (or only those of the `only` pairs of
    model string and provider); how many were charged and how many still wait."""
    async with pool.acquire() as conn:
        pairs = await repository.unrated_pairs(conn)
    pairs = [pair for pair in pairs if only is None or pair in only]
    # Resolution is per pair; pricing is per event (a price may not cover, say, 1-hour cache writes).
    ready = [pair for pair in pairs if (model := catalog.resolve(*pair)) is not None and model.prices]
    rated = 0
    for pair in ready:
        after = 0
        while True:
            async with pool.acquire() as conn:
                rows = await repository.unrated_of(conn, pair, after, CHUNK)
            if not rows:
                break
            after = rows[-1]["id"]
            moment = now()
            events = [event for row in rows if (event := service.rerate(row, catalog, moment)) is not None]
            if events:
                rated += await db.transaction(pool, lambda conn, events=events: charge(conn, events, now()))
            if len(rows) < CHUNK:
                break
    async with pool.acquire() as conn:
        waiting = await repository.unrated_count(conn)
    if rated:
        RATED.inc(rated)
        log.info("rated %d waiting events; %d still wait", rated, waiting)
    return RatingResult(rated=rated, waiting=waiting)


async def charge(conn: asyncpg.Connection, events: list[Prepared], now: datetime) -> int:
    """Move waiting events into the books; those another pass took first are skipped."""
    await ledger_repository.lock_accounts(conn, [event.account_id for event in events])
    taken = {
        (row["account_id"], row["event_id"]): row["recorded_at"]
        for row in await repository.take_unrated(conn, [(event.account_id, event.event_id) for event in events])
    }
    events = [event for event in events if (event.account_id, event.event_id) in taken]
    if not events:
        return 0
    outcomes = await service.record(conn, events, now)
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome.status != "created":
            # Nothing else can hold the key (ingestion checks both tables under the account lock):
            # undo the whole chunk rather than drop an event.
            raise RuntimeError(f"rating event {event.event_id!r} of {event.account_id!r}: {outcome.status}")
    await repository.mark_rated(conn, list(taken.items()))
    return len(events)


class Rater:
    """This worker's rating passes: a full pass after each catalog change, and a pass over the pairs
    this worker recorded unrated, a moment after it did."""

    def __init__(self, pool: asyncpg.Pool, store: CatalogStore, clock: Clock, delay: float = 1.0) -> None:
        self.pool = pool
        self.store = store
        self.clock = clock
        self.delay = delay
        self.full = True  # at start: whatever waits from before
        self.pairs: set[tuple[str, str | None]] = set()
        self.wakeup = asyncio.Event()
        self.wakeup.set()

    def catalog_changed(self) -> None:
        self.full = True
        self.wakeup.set()

    def waiting(self, event: UsageEvent) -> None:
        self.pairs.add((event.reported_model, event.provider))
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            # Unrated events tend to come in runs, and catalog writes in series: one pass for each run.
            await asyncio.sleep(self.delay)
            self.wakeup.clear()
            full, pairs = self.full, self.pairs
            self.full, self.pairs = False, set()
            try:
                await rate(self.pool, self.store.catalog, self.clock.now, None if full else pairs)
            except Exception:  # the next change or event tries again; `billing rate` on demand
                log.warning("rating waiting usage failed", exc_info=True)
                self.full = True
