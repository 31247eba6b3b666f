"""Group commit for single-event requests: events reported at the same moment share one
transaction, and each request is answered only after that transaction has committed."""

import asyncio
import contextlib
import logging

import asyncpg

from app import db
from app.clock import Clock
from app.observability import BATCH_SIZE
from app.usage.schemas import Prepared
from app.usage.service import Outcome, record

log = logging.getLogger("app.usage")


class Coalescer:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, *, max_batch: int = 500, writers: int = 2) -> None:
        self.pool = pool
        self.clock = clock
        self.max_batch = max_batch
        self.writers = writers
        self.pending: list[tuple[Prepared, asyncio.Future]] = []
        self.wakeup = asyncio.Event()
        self.batch_sizes: list[int] = []  # recent sizes, for metrics and tests

    async def submit(self, event: Prepared) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((event, future))
        self.wakeup.set()
        return await future

    async def run(self) -> None:
        """`writers` loops, each taking whatever accumulated while the others were committing: no
        fixed delay, so an idle service answers at once and a busy one writes bigger batches."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.writers):
                group.create_task(self._writer())

    async def _writer(self) -> None:
        while True:
            await self.wakeup.wait()
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            if not self.pending:
                self.wakeup.clear()
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[tuple[Prepared, asyncio.Future]]) -> None:
        self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
        BATCH_SIZE.observe(len(batch))
        events = [event for event, _ in batch]
        try:
            outcomes = await db.transaction(self.pool, lambda conn: record(conn, events, self.clock.now()))
        except Exception as exc:
            if len(batch) == 1:
                settle(batch[0][1], error=exc)
                return
            # Something in the batch broke the transaction: write them one by one, so only the
            # event at fault fails.
            log.warning("batch of %d failed (%r); retrying its events one by one", len(batch), exc)
            for item in batch:
                await self._write([item])
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            settle(future, outcome=outcome)


def settle(future: asyncio.Future, *, outcome: Outcome | None = None, error: BaseException | None = None) -> None:
    # A client that hung up has a cancelled future; its event is recorded all the same.
    with contextlib.suppress(asyncio.InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)
