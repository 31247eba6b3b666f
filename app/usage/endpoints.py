from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.response import Response

from app import db
from app.catalog.model import Catalog
from app.clock import Clock
from app.db import ReadDb
from app.errors import AppError, InvalidRequest, error_object
from app.idempotency import Result, respond
from app.keys.schemas import Principal
from app.observability import EVENTS
from app.openapi import errors
from app.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page
from app.times import aware
from app.usage import reported, repository, service
from app.usage.coalescer import Coalescer
from app.usage.rating import Rater
from app.usage.schemas import BatchIn, BatchOut, BatchResult, Prepared, UsageEvent, UsageIn

AnyRequest = Request[Principal, str, Any]
UNRATED = {
    202: ResponseSpec(
        data_container=UsageEvent,
        description="Recorded unrated: the catalog cannot price the model yet; the event is charged once it can",
        generate_examples=False,
    )
}


class UsageController(Controller):
    path = "/usage"
    tags = ["usage"]

    @post("/", opt={"scope": "usage:write"}, status_code=201, responses=errors(404, 409, 422) | UNRATED)
    async def record_usage(
        self,
        request: AnyRequest,
        ingestion: NamedDependency["Ingestion"],
        data: JSONBody[UsageIn],
    ) -> Response[UsageEvent]:
        """Record one usage event and charge it (201), or keep it unrated when the catalog cannot price it yet
        (202); a retry with the same `event_id` answers the event as it stands now (200)."""
        reported.check_counts(await request.json())  # decoded once: Litestar keeps it
        prepared = service.prepare(data, request.user, ingestion.catalog, ingestion.clock.now())
        outcome = await ingestion.coalescer.submit(prepared)
        EVENTS.labels(outcome.status).inc()
        if outcome.status == "error":
            raise outcome.error
        event = service.for_audience(outcome.event, request.user.is_finance)
        if outcome.status == "unrated":
            ingestion.rater.waiting(outcome.event)
            return Response(event, status_code=202)
        return respond(Result(event, replayed=outcome.status == "duplicate"))

    @post("/batch", opt={"scope": "usage:write"}, status_code=200)
    async def record_batch(
        self,
        request: AnyRequest,
        ingestion: NamedDependency["Ingestion"],
        data: JSONBody[BatchIn],
    ) -> Response[BatchOut]:
        """Record up to 1000 events in one transaction, with a result per event (`created`, `duplicate` or `error`)."""
        BATCHES.started()
        try:
            body = await self._record_batch(request.user, ingestion, data)
        finally:
            busy = BATCHES.finished()
        return Response(body, status_code=200, headers=CLOSE if busy else None)

    @staticmethod
    async def _record_batch(principal: Principal, ingestion: "Ingestion", data: BatchIn) -> BatchOut:
        results: list[BatchResult | None] = [None] * len(data.events)
        ready: list[tuple[int, Prepared]] = []
        # One request, one moment and one catalog snapshot: events without an `occurred_at` all
        # happened when the batch arrived.
        now = ingestion.clock.now()
        for index, item in enumerate(data.events):
            try:
                ready.append((index, service.prepare(decode_event(item), principal, ingestion.catalog, now)))
            except AppError as error:
                event_id = item.get("event_id") if isinstance(item.get("event_id"), str) else None
                results[index] = BatchResult(index, "error", event_id, error=error_object(error))
        events = [event for _, event in ready]
        outcomes = await db.transaction(
            ingestion.pool, lambda conn: service.record(conn, events, ingestion.clock.now())
        )
        finance = principal.is_finance
        for (index, event), outcome in zip(ready, outcomes, strict=True):
            if outcome.status == "error":
                results[index] = BatchResult(index, "error", event.event_id, error=error_object(outcome.error))
            else:
                view = service.for_audience(outcome.event, finance)
                results[index] = BatchResult(index, outcome.status, event.event_id, event=view)
        counts = {status: 0 for status in ("created", "unrated", "duplicate", "error")}
        for result in results:
            counts[result.status] += 1
        for status, count in counts.items():
            EVENTS.labels(status).inc(count)
        if counts["unrated"]:
            for result in results:
                if result.status == "unrated":
                    ingestion.rater.waiting(result.event)
        return BatchOut(results, counts["created"], counts["duplicate"], counts["error"], counts["unrated"])

    @get("/", opt={"scope": "ledger:read"}, responses=errors(404))
    async def list_usage(
        self,
        request: AnyRequest,
        read_db: ReadDb,
        catalog: NamedDependency[Catalog],
        account_id: FromQuery[str | None] = None,
        model: FromQuery[str | None] = None,
        provider: FromQuery[str | None] = None,
        status: FromQuery[Literal["charged", "unrated"] | None] = None,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
    ) -> Page[UsageEvent]:
        """Usage events, charged and unrated, oldest first, filtered by account, model, provider, `status` and
        `occurred_at` range [from, to)."""
        after = decode_cursor(cursor, datetime, int)
        model_id = catalog.require(model).id if model else None
        async with read_db.connect() as conn:
            rows = await repository.list_events(
                conn,
                account_id=request.user.account(account_id),
                model_id=model_id,
                provider=provider,
                status=status,
                start=aware(from_, "from"),
                end=aware(to, "to"),
                after=after,
                limit=check_limit(limit) + 1,
            )
        finance = request.user.is_finance
        return page(
            rows,
            limit,
            lambda row: (row.occurred_at, row.id),
            lambda row: service.for_audience(service.stored_view(row._mapping), finance),
        )


@dataclass(frozen=True, slots=True)
class Ingestion:
    """What recording usage needs, as the one dependency of the handlers above (provided by
    app/dependencies.py). Litestar resolves two or more dependencies of a handler in a task group
    made for the request; on the single-event path that cost about 65 µs of a worker's CPU per event
    (BENCHMARKS.md, fifth round)."""

    catalog: Catalog  # the version in force when the request arrived
    clock: Clock
    coalescer: Coalescer
    rater: Rater
    pool: asyncpg.Pool


class BatchesInFlight:
    """The batches this worker process is handling at the moment, to tell when it is busy.

    Worker processes share one listening socket, and a keep-alive connection stays with the worker
    that accepted it: a few clients that each send batch after batch (the usual way to report usage
    in bulk) can end up unevenly on the workers, one core queueing batches while another idles. So a
    worker that is still busy with another batch when it answers one closes that connection
    (`Connection: close`). The client's next connection is accepted by whichever worker gets to it
    first, which is one that is not busy computing, so the load follows the free cores. A worker
    handling one batch at a time keeps its connections. A new connection per batch costs little next
    to the work in a batch (both measured in BENCHMARKS.md, "Measurements behind code choices")."""

    def __init__(self) -> None:
        self.count = 0

    def started(self) -> None:
        self.count += 1

    def finished(self) -> bool:
        """Counts the batch out; whether another one is still being handled."""
        self.count -= 1
        return self.count > 0


BATCHES = BatchesInFlight()  # one per worker process: the CPU it tracks is the process's own
CLOSE = {"Connection": "close"}


def decode_event(item: dict) -> UsageIn:
    reported.check_counts(item)
    try:
        # As lenient as the single-event endpoint (Litestar converts bodies with strict=False), so an
        # event is accepted or refused alike by both.
        return msgspec.convert(item, UsageIn, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.field`"; name the field the way the single-event endpoint does.
        message = str(exc)
        param = message.rsplit("`$.", 1)[1].rstrip("`").split("[")[0].split(".")[0] if "`$." in message else None
        raise InvalidRequest(f"Invalid event: {message}", param=param) from None
