"""The application factory: routes, auth, errors, OpenAPI and the per-worker lifespan."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from pathlib import Path

from litestar import Litestar, Router, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Response
from litestar.template.config import TemplateConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.bodies import JsonRequest
from app.catalog import sync
from app.catalog.endpoints import (
    CatalogAdminController,
    ModelController,
    ModelListingController,
    OpenAIModelController,
)
from app.catalog.listings import Listings
from app.catalog.sources import Upstreams
from app.catalog.store import CatalogStore
from app.clock import Clock
from app.config import Settings
from app.dashboard.endpoints import DashboardController
from app.dashboard.service import register_filters
from app.db import Db
from app.dependencies import DEPENDENCIES
from app.errors import EXCEPTION_HANDLERS, UNAVAILABLE, database_cause, error_body
from app.estimates.endpoints import EstimateController
from app.keys.auth import (
    ApiKeyMiddleware,
    KeyCache,
    KeyChanges,
    LastUsed,
    RateLimiter,
    last_used_tracking,
    require_scope,
)
from app.keys.endpoints import KeyController
from app.ledger.endpoints import AccountController, AuthorizationController
from app.ledger.service import expire_due_grants
from app.limits.endpoints import LimitController
from app.observability import RequestIdMiddleware, configure_logging, metrics
from app.openapi import document, errors, reference_ui
from app.reports.endpoints import ReportController
from app.reports.service import Spend
from app.schedules.endpoints import ScheduleController
from app.schedules.service import issue_due
from app.usage.coalescer import Coalescer
from app.usage.endpoints import UsageController
from app.usage.rating import Rater
from app.webhooks.endpoints import WebhookController
from app.webhooks.service import announce_expiries
from app.webhooks.worker import Deliverer

log = logging.getLogger("app")
# The dashboard signs its pages in with a session cookie of its own (app/dashboard/endpoints.py).
DASHBOARD_TEMPLATES = Path(__file__).parent / "dashboard" / "templates"
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/metrics$", "^/schema", "^/dashboard"]
POOL_CLOSE_SECONDS = 10


@get("/health", exclude_from_auth=True, tags=["service"])
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/ready", exclude_from_auth=True, tags=["service"], responses=errors(503))
async def ready(db: Db) -> Response[dict[str, str]]:
    """Readiness: the database answers; 503 when it does not."""
    try:
        async with db.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        log.warning("readiness check failed: database unreachable", exc_info=True)
        body = error_body(503, "database_unavailable", "The database is unreachable")
        return Response(body, status_code=503, headers={"Retry-After": "1"})
    return Response({"status": "ready"})


@contextlib.asynccontextmanager
async def background_tasks(jobs: list[Coroutine]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def sweep_expired_grants(state: State, interval: float, notice: timedelta) -> None:
    """Expires due grants, issues the recurring grants due, and announces grants about to expire and holds
    that expired unsettled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await expire_due_grants(state.pool, state.clock.now())
            await issue_due(state.pool, state.clock.now())
            await db.transaction(state.pool, lambda conn: announce_expiries(conn, state.clock.now(), notice))
        except Exception:  # the next round retries
            log.warning("expiring grants failed", exc_info=True)


async def sync_catalog_periodically(state: State, sources: tuple[str, ...], interval: float) -> None:
    """BILLING_SYNC_INTERVAL_SECONDS: one worker at a time syncs; the others skip the round."""
    while True:
        await asyncio.sleep(interval)
        try:
            # A session advisory lock: on the server itself, not through a transaction pooler.
            async with state.direct_engine.connect() as conn:
                result = await sync.sync_if_free(conn, state.upstreams, sources, at=state.clock.now())
            if result is not None:
                for source in result.results:
                    log.info("catalog sync: %s", sync.summary(source))
                await state.catalog.refresh()
        except Exception:  # the next round retries
            log.warning("catalog sync failed", exc_info=True)


async def wait_for_database(engine: AsyncEngine, patience: float = 60) -> None:
    """A worker started (or restarted by the server) while the database is down waits for it, rather
    than failing its start and, with it, the whole server. An outdated schema still fails at once."""
    deadline = asyncio.get_running_loop().time() + patience
    delay = 0.1
    while True:
        try:
            await db.check_schema(engine)
            return
        except db.SchemaOutdated:
            raise
        except Exception as exc:
            if not isinstance(database_cause(exc), UNAVAILABLE) or asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("database unavailable at start (%r); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    clock = clock or Clock()
    configure_logging(settings.log_level)
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL must be set for the app; `billing serve` sets it for the embedded server")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        size, timeout, pooled = settings.db_pool_size, settings.statement_timeout_ms, settings.pooled
        engine = db.create_engine(settings.database_url, size, timeout, pooled)
        # Connections open on demand: an engine nothing uses costs nothing.
        read_engine = (
            db.create_engine(settings.read_database_url, size, timeout, pooled)
            if settings.read_database_url
            else engine
        )
        direct_engine = (
            db.create_engine(settings.direct_url, 1, timeout)
            if settings.direct_url != settings.database_url
            else engine
        )
        state = app.state
        try:
            await wait_for_database(engine)
            if pooled and await db.statement_timeout(engine) == "0":
                log.warning(
                    "no statement_timeout behind PgBouncer: a runaway query holds a server connection; "
                    "set one on the role (ALTER ROLE ... SET statement_timeout, docs/scale-out.md)"
                )
            state.engine, state.read_engine, state.direct_engine = engine, read_engine, direct_engine
            state.pool = await db.create_pool(settings.database_url, size, timeout, pooled)
            state.rate_limiter = RateLimiter(settings.rate_limit)
            state.clock = clock
            state.credits_per_usd = settings.credits_per_usd
            state.last_used = LastUsed(clock)
            state.key_cache = KeyCache(KeyChanges.for_database(settings.direct_url))
            state.upstreams = Upstreams.from_settings(settings)
            state.sync_sources = settings.sync_sources
            state.listings = Listings()
            state.catalog = CatalogStore(engine, settings.default_margin, settings.credits_per_usd, clock)
            await state.catalog.refresh()
            state.coalescer = Coalescer(state.pool, clock)
            state.rater = Rater(state.pool, state.catalog, clock)
            state.spend = Spend()
            state.catalog.listeners.append(state.rater.catalog_changed)
            background = [
                # LISTEN needs a session of its own on the server: the direct URL.
                state.catalog.watch(settings.direct_url),
                state.key_cache.watch(settings.direct_url),
                state.coalescer.run(),
                sweep_expired_grants(
                    state, settings.expiry_sweep_seconds, timedelta(seconds=settings.grant_expiry_notice_seconds)
                ),
                state.rater.run(),
            ]
            if settings.webhook_poll_seconds:
                background.append(Deliverer(state.pool, clock, settings.webhook_poll_seconds).run())
            if settings.sync_interval_seconds:
                background.append(
                    sync_catalog_periodically(state, settings.sync_sources, settings.sync_interval_seconds)
                )
            async with background_tasks(background), last_used_tracking(engine, state.last_used):
                yield
        finally:
            if getattr(state, "pool", None) is not None:
                try:
                    # A connection never given back must not keep the worker from stopping.
                    await asyncio.wait_for(state.pool.close(), POOL_CLOSE_SECONDS)
                except TimeoutError:
                    log.warning("ledger pool not closed within %d s; terminating it", POOL_CLOSE_SECONDS)
                    state.pool.terminate()
            for each in {engine, read_engine, direct_engine}:
                await each.dispose()

    api = Router(
        path="/",
        route_handlers=[
            AccountController,
            LimitController,
            ScheduleController,
            KeyController,
            ModelController,
            OpenAIModelController,
            ModelListingController,
            CatalogAdminController,
            UsageController,
            AuthorizationController,
            EstimateController,
            ReportController,
            WebhookController,
        ],
        security=[{"ApiKey": []}, {"Bearer": []}],
    )
    reference, reference_assets = reference_ui()
    app = Litestar(
        route_handlers=[health, ready, metrics, api, reference_assets, DashboardController],
        template_config=TemplateConfig(
            directory=DASHBOARD_TEMPLATES, engine=JinjaTemplateEngine, engine_callback=register_filters
        ),
        guards=[require_scope],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        middleware=[DefineMiddleware(ApiKeyMiddleware, exclude=PUBLIC_PATHS)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JsonRequest,
        # Logging is `configure_logging`'s: JSON lines. Litestar's own config would replace that handler with
        # its plain-text one.
        logging_config=None,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Credit-metered LLM billing",
            version="0.1.0",
            path="/schema",
            use_handler_docstrings=True,
            render_plugins=[reference],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
                    "Bearer": SecurityScheme(type="http", scheme="bearer"),
                }
            ),
        ),
        debug=False,
    )
    document(app)
    # Outside Litestar's exception handling (as its OpenTelemetry plugin wraps it), so that every answer, an
    # error, a 401 from the key check or a 404 of routing included, carries its request id, is counted with its
    # real status and gets its access line.
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler, access=settings.access_log)
    return app
