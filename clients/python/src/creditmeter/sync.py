"""The blocking client: `Client`, its holds and its batcher thread."""

import atexit
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import httpx

from creditmeter._api import HoldBase, Operations, event_of
from creditmeter._batching import BatcherReport, Buffer, OnResult, report_results, results_of
from creditmeter._core import DEFAULT_TIMEOUT, Core, Program, Retry, drive
from creditmeter.errors import CreditmeterError
from creditmeter.models import UsageEventIn


class Client(Operations):
    """A client of the service. `base_url` as `http://127.0.0.1:8000`; `api_key` is sent as `X-API-Key`.
    Safe to share between threads; close it (or use it as a context manager) when done."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        retry: Retry | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._core = Core(base_url, api_key, retry=retry, headers=headers)
        self._http = http_client or httpx.Client(timeout=timeout)
        self._batchers: list[Batcher] = []

    def _run(self, program: Program) -> Any:
        return drive(program, self._http.send, time.sleep)

    def paginate(self, list_page: Callable[..., Any], /, **params: Any) -> Iterator[Any]:
        """Every item of a cursor-paginated list, fetching page after page as they are read:
        `for event in client.paginate(client.list_usage, account_id="acme")`."""
        cursor = None
        while True:
            page = list_page(cursor=cursor, **params)
            yield from page.data
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
    ) -> "Hold":
        """`with client.hold(...) as h:` holds the call's worst case; `h.settle(...)` charges the actual usage;
        an exception in the block, or leaving it without settling, releases the hold."""
        call = {"input_tokens": input_tokens, "max_output_tokens": max_output_tokens} | call
        return Hold(self, account_id, model, call)

    def batcher(
        self, max_events: int = 100, max_delay_ms: float = 1000, on_result: OnResult | None = None
    ) -> "Batcher":
        """A background thread sending `POST /usage/batch` every `max_events` events or `max_delay_ms`
        milliseconds, whichever comes first. `on_result(event, result)` is called for each event."""
        batcher = Batcher(self, max_events, max_delay_ms, on_result)
        self._batchers.append(batcher)
        return batcher

    def close(self) -> None:
        """Flushes the batchers, then closes the connections."""
        for batcher in self._batchers:
            batcher.close()
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hold(HoldBase):
    _client: Client

    def __enter__(self) -> Self:
        self._client._run(self._place())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.settled:
            return
        if exc is None:
            self.release()
            return
        try:
            self.release()
        except CreditmeterError as failure:
            # The block's own error is the one to see; the hold then expires at its ttl.
            exc.add_note(f"and the hold {self.id} could not be released: {failure}")

    def release(self) -> Any:
        return self._client._run(self._release())


class Batcher:
    """Buffers usage events and sends them in batches from a thread. `add` never blocks on the network.
    `flush()` sends what waits and waits for it; `close()` (also on leaving a `with` block, and at
    interpreter exit) flushes and stops. `report` counts the results; `report.rejected` holds every
    event not recorded, with the service's error."""

    def __init__(self, client: Client, max_events: int, max_delay_ms: float, on_result: OnResult | None) -> None:
        self._client = client
        self._buffer = Buffer(max_events, max_delay_ms)
        self._on_result = on_result
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="creditmeter-batcher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def report(self) -> BatcherReport:
        return self._buffer.report

    def add(self, event: UsageEventIn | dict[str, Any] | None = None, /, **fields: Any) -> str:
        """Queue a usage event (as `record_usage` takes it); returns its `event_id`."""
        event = event_of(event, fields)
        with self._changed:
            if self._closed:
                raise RuntimeError("The batcher is closed")
            event_id = self._buffer.add(event)
            self._changed.notify_all()
        return event_id

    def flush(self, timeout: float | None = None) -> BatcherReport:
        """Send every queued event now, and wait until they are answered."""
        with self._changed:
            self._buffer.flush()
            self._changed.notify_all()
            if not self._changed.wait_for(lambda: self._buffer.drained, timeout):
                raise TimeoutError("The batcher did not drain in time")
        return self.report

    def close(self, timeout: float | None = None) -> BatcherReport:
        with self._changed:
            if self._closed:
                return self.report
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout)
        atexit.unregister(self.close)
        return self.report

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        buffer = self._buffer
        while True:
            with self._changed:
                while not (buffer.due() or (self._closed and buffer.events)):
                    if self._closed:
                        return
                    self._changed.wait(buffer.wait())
                batch = buffer.take()
            try:
                outcome = self._client.record_batch(batch)
            except Exception as error:  # whatever it is, each event gets its error result, and the thread lives on
                outcome = error
            results = results_of(batch, outcome)
            report_results(self._on_result, batch, results)
            with self._changed:
                buffer.done(batch, results)
                self._changed.notify_all()
