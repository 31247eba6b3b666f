"""The asyncio client: `AsyncClient`, its holds and its batcher task. Every operation of `Client` is here
too, awaited (they are written once, in _api.py)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import httpx

from creditmeter._api import HoldBase, Operations, event_of
from creditmeter._batching import BatcherReport, Buffer, OnResult, report_results, results_of
from creditmeter._core import DEFAULT_TIMEOUT, Core, Program, Retry, Sleep
from creditmeter.errors import CreditmeterError
from creditmeter.models import UsageEventIn


async def drive(program: Program, http: httpx.AsyncClient) -> Any:
    """The async twin of `_core.drive`."""
    step = next(program)
    while True:
        try:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = program.send(None)
                continue
            try:
                response = await http.send(step.request)
            except httpx.TransportError as exc:
                step = program.throw(exc)
            else:
                step = program.send(response)
        except StopIteration as stop:
            return stop.value


class AsyncClient(Operations):
    """As `Client`, with every operation awaited: `await client.record_usage(...)`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        retry: Retry | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._core = Core(base_url, api_key, retry=retry, headers=headers)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._batchers: list[AsyncBatcher] = []

    def _run(self, program: Program) -> Any:
        return drive(program, self._http)

    async def paginate(self, list_page: Callable[..., Any], /, **params: Any) -> AsyncIterator[Any]:
        """As `Client.paginate`: `async for event in client.paginate(client.list_usage, account_id="acme")`."""
        cursor = None
        while True:
            page = await list_page(cursor=cursor, **params)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def hold(
        self,
        account_id: str | None,
        model: str,
        *,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
        **call: Any,
    ) -> "AsyncHold":
        """`async with client.hold(...) as h:` ... `await h.settle(...)`; released on an exception or
        when the block ends unsettled."""
        call = {"input_tokens": input_tokens, "max_output_tokens": max_output_tokens} | call
        return AsyncHold(self, account_id, model, call)

    def batcher(
        self, max_events: int = 100, max_delay_ms: float = 1000, on_result: OnResult | None = None
    ) -> "AsyncBatcher":
        """A task sending `POST /usage/batch` every `max_events` events or `max_delay_ms` milliseconds;
        use it as `async with client.batcher(...) as batcher:` (or `await batcher.close()`)."""
        batcher = AsyncBatcher(self, max_events, max_delay_ms, on_result)
        self._batchers.append(batcher)
        return batcher

    async def close(self) -> None:
        for batcher in self._batchers:
            await batcher.close()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncHold(HoldBase):
    _client: AsyncClient

    async def __aenter__(self) -> Self:
        await self._client._run(self._place())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.settled:
            return
        if exc is None:
            await self.release()
            return
        try:
            await self.release()
        except CreditmeterError as failure:
            exc.add_note(f"and the hold {self.id} could not be released: {failure}")

    async def release(self) -> Any:
        return await self._client._run(self._release())


class AsyncBatcher:
    """As the sync `Batcher`, in a task of the running event loop."""

    def __init__(self, client: AsyncClient, max_events: int, max_delay_ms: float, on_result: OnResult | None) -> None:
        self._client = client
        self._buffer = Buffer(max_events, max_delay_ms)
        self._on_result = on_result
        self._changed = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="creditmeter-batcher")

    @property
    def report(self) -> BatcherReport:
        return self._buffer.report

    def add(self, event: UsageEventIn | dict[str, Any] | None = None, /, **fields: Any) -> str:
        """Queue a usage event; returns its `event_id`. Does not wait."""
        if self._closed:
            raise RuntimeError("The batcher is closed")
        event_id = self._buffer.add(event_of(event, fields))
        self._drained.clear()
        self._changed.set()
        return event_id

    async def flush(self) -> BatcherReport:
        """Send every queued event now, and wait until they are answered."""
        self._buffer.flush()
        self._changed.set()
        await self._drained.wait()
        return self.report

    async def close(self) -> BatcherReport:
        if not self._closed:
            self._closed = True
            self._changed.set()
        await asyncio.shield(self._task)
        return self.report

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _loop(self) -> None:
        buffer = self._buffer
        while True:
            while not (buffer.due() or (self._closed and buffer.events)):
                if self._closed:
                    return
                if buffer.drained:
                    self._drained.set()
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), buffer.wait())
            batch = buffer.take()
            try:
                outcome = await self._client.record_batch(batch)
            except Exception as error:  # each event gets its error result, and the task lives on
                outcome = error
            results = results_of(batch, outcome)
            report_results(self._on_result, batch, results)
            buffer.done(batch, results)
            if buffer.drained:
                self._drained.set()
