"""Request ids, structured logs and Prometheus metrics."""

import contextvars
import json
import logging
import os
import re
import secrets
import time
from typing import Any

import asyncpg
from litestar import MediaType, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy.ext.asyncio import AsyncEngine

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("app.access")
# A client may pass its own id (to follow a call across services); anything else gets a fresh one.
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

REQUESTS = Counter("billing_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "billing_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter("billing_usage_events_total", "Usage events by outcome", ["outcome"])
RATED = Counter("billing_unrated_events_rated_total", "Unrated usage events charged once the catalog could price them")
BATCH_SIZE = Histogram(
    "billing_coalesced_batch_size",
    "Events per group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
POOL_IN_USE = Gauge("billing_db_pool_in_use", "Ledger pool connections in use", multiprocess_mode="livesum")
POOL_SIZE = Gauge("billing_db_pool_size", "Ledger pool connections open", multiprocess_mode="livesum")


class RequestIdMiddleware:
    """Tags each request with an id (X-Request-ID, echoed back), counts and times it, and, unless
    BILLING_ACCESS_LOG=0, logs one access line for it."""

    def __init__(self, app: ASGIApp, access: bool = True) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode() for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = incoming if SANE_ID.match(incoming) else secrets.token_hex(8)
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        def observe() -> None:
            route = scope.get("path_template", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last byte leaves, so a client that has its answer sees it counted.
                observe()
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            if self.access:
                log_access(scope, status, time.perf_counter() - started)
            request_id.reset(token)


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """One line per request, after its last byte (or its failure). The key is named by its id, which
    the API-key middleware put in the scope once the key checked out; the secret never is, nor the query
    string, headers or body."""
    key_id = scope.get("auth")
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "api_key_id": key_id if isinstance(key_id, str) else None,
    }
    access_log.info("%s %s %d", fields["method"], fields["path"], status, extra={"access": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id; never the request body or headers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": request_id.get(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "access", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def registry() -> CollectorRegistry:
    """With several workers each keeps its own counters in PROMETHEUS_MULTIPROC_DIR; a scrape,
    answered by any worker, sums them all."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        from prometheus_client import REGISTRY

        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    return combined


@get("/metrics", exclude_from_auth=True, tags=["service"], include_in_schema=True, media_type=MediaType.TEXT)
async def metrics(
    state: State, pool: NamedDependency[asyncpg.Pool], read_db: NamedDependency[AsyncEngine]
) -> Response[bytes]:
    """Prometheus metrics: requests, latency, usage events, pool use, group-commit batch sizes, and spend
    (credits charged and reversed, upstream USD) by provider and model."""
    POOL_SIZE.set(pool.get_size())
    POOL_IN_USE.set(pool.get_size() - pool.get_idle_size())
    # Prometheus' text format; Litestar adds the charset.
    # Spend comes from the database (app/reports/service.py `Spend`), the same whichever worker answers.
    body = generate_latest(registry()) + await state.spend.exposition(read_db)
    return Response(body, media_type="text/plain; version=1.0.0")
