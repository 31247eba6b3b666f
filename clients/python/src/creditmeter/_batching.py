"""What the thread batcher and the task batcher share: the buffer, when it is due, and the per-event
results of a batch (including a batch that could not be sent at all: each of its events gets an error
result, so nothing is dropped without a word)."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from creditmeter.errors import APIError, CreditmeterError
from creditmeter.models import MAX_BATCH, BatchOut, BatchResult, ErrorObject, UsageEventIn

log = logging.getLogger("creditmeter.batcher")
OnResult = Callable[[UsageEventIn, BatchResult], Any]


@dataclass(slots=True)
class Rejected:
    """An event the service refused (its `result.error` says why) or that could not be delivered."""

    event: UsageEventIn
    result: BatchResult


@dataclass(slots=True)
class BatcherReport:
    """Running totals of what a batcher sent; `rejected` keeps every event that was not recorded."""

    batches: int = 0
    created: int = 0
    unrated: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def recorded(self) -> int:
        return self.created + self.unrated + self.duplicates


class Buffer:
    """Events waiting to be sent; due when `max_events` wait or the oldest has waited `max_delay_ms`."""

    def __init__(self, max_events: int, max_delay_ms: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= max_events <= MAX_BATCH:
            raise ValueError(f"max_events must be between 1 and {MAX_BATCH}")
        if max_delay_ms <= 0:
            raise ValueError("max_delay_ms must be positive")
        self.max_events = max_events
        self.max_delay = max_delay_ms / 1000
        self.clock = clock
        self.events: list[UsageEventIn] = []
        self.since: float | None = None
        self.in_flight = 0
        self.flushing = False  # send what waits now, whatever its age
        self.report = BatcherReport()

    def add(self, event: UsageEventIn) -> str:
        if not self.events:
            self.since = self.clock()
        self.events.append(event)
        return event.event_id

    def flush(self) -> None:
        """Send what waits now, whatever its age (the events added later wait as usual)."""
        self.flushing = bool(self.events)

    def due(self) -> bool:
        if not self.events:
            return False
        return self.flushing or len(self.events) >= self.max_events or self.wait() <= 0

    def wait(self) -> float | None:
        """Seconds until the oldest event is due; None while nothing waits."""
        if self.since is None or not self.events:
            return None
        return max(0.0, self.since + self.max_delay - self.clock())

    def take(self) -> list[UsageEventIn]:
        batch, self.events = self.events[: self.max_events], self.events[self.max_events :]
        self.since = self.clock() if self.events else None
        if not self.events:
            self.flushing = False
        self.in_flight = len(batch)
        return batch

    @property
    def drained(self) -> bool:
        return not self.events and not self.in_flight

    def done(self, batch: list[UsageEventIn], results: list[BatchResult]) -> None:
        """Counts a sent batch's results in (`results_of`); the batch is no longer in flight."""
        self.in_flight = 0
        report = self.report
        report.batches += 1
        for event, result in zip(batch, results, strict=True):
            if result.status == "created":
                report.created += 1
            elif result.status == "unrated":
                report.unrated += 1
            elif result.status == "duplicate":
                report.duplicates += 1
            else:
                report.rejected.append(Rejected(event, result))
                error = result.error
                log.warning("usage event %s not recorded: %s %s", event.event_id, error.code, error.message)


def results_of(batch: list[UsageEventIn], outcome: BatchOut | Exception) -> list[BatchResult]:
    """A result per event, in the batch's order; when the batch failed as a whole, the same error for each."""
    if isinstance(outcome, BatchOut):
        return sorted(outcome.results, key=lambda result: result.index)
    if isinstance(outcome, APIError):
        error = outcome.error
    elif isinstance(outcome, CreditmeterError):
        error = ErrorObject(message=str(outcome), type="connection_error", code="connection_error")
    else:
        error = ErrorObject(message=repr(outcome), type="client_error", code="client_error")
    return [BatchResult(index=i, status="error", event_id=e.event_id, error=error) for i, e in enumerate(batch)]


def report_results(on_result: OnResult | None, batch: list[UsageEventIn], results: list[BatchResult]) -> None:
    if on_result is None:
        return
    for event, result in zip(batch, results, strict=True):
        try:
            on_result(event, result)
        except Exception:
            # A failing callback must not stop the batcher: later events still need sending.
            log.exception("on_result failed for event %s", event.event_id)
