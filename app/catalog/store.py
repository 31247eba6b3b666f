"""This worker's copy of the catalog: reloaded when the catalog version moves (LISTEN/NOTIFY, and a poll),
with the encoded bodies of its views cached per version."""

import asyncio
import contextlib
import gzip
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.catalog import repository
from app.catalog.model import Catalog, build_catalog
from app.catalog.views import ENCODER
from app.clock import Clock
from app.db import plain_dsn

log = logging.getLogger("app.catalog")


# Workers also poll the version this often, in case a notification was lost with its connection.
POLL_SECONDS = 10
# Smaller bodies are sent as they are: compressing them saves less than it costs.
GZIP_MIN_BYTES = 1400


class CatalogStore:
    """This worker's copy of the catalog, reloaded when the catalog version moves.

    Encoded bodies are cached per catalog version, so a catalog read is a dictionary lookup."""

    def __init__(
        self, engine: AsyncEngine, default_margin: Decimal, credits_per_usd: Decimal, clock: Clock | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock or Clock()
        self.default_margin = default_margin
        self.credits_per_usd = credits_per_usd
        self.catalog: Catalog | None = None
        self.bodies: dict[Any, tuple[bytes, str]] = {}
        # Bodies show the prices in effect now, so a scheduled price or margin ends their validity.
        self.valid_until: datetime | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        # Called with each new catalog version this worker loads (the rater's `catalog_changed`).
        self.listeners: list[Callable[[], None]] = []

    async def refresh(self, *, force: bool = False) -> Catalog:
        async with self._lock:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                version = await repository.current_version(conn)
                if force or self.catalog is None or version != self.catalog.version:
                    data = await repository.load_all(conn)
                    self.catalog = build_catalog(data, self.default_margin, self.credits_per_usd)
                    self._forget_bodies()
                    for listener in self.listeners:
                        listener()
            return self.catalog

    def _forget_bodies(self) -> None:
        self.bodies = {}
        moment = self.clock.now()
        upcoming = [
            p.effective_from for m in self.catalog.models.values() for p in m.prices if p.effective_from > moment
        ]
        upcoming += [when for history in self.catalog.margins.values() for when, _ in history if when > moment]
        self.valid_until = min(upcoming, default=None)

    def body(self, key: Any, render, *, gzipped: bool = False) -> tuple[bytes, str, bool]:
        """(encoded body, ETag, whether gzip-compressed) for a view of the current catalog, rendered
        once per version. With `gzipped`, a body worth compressing comes compressed (once too), with
        an ETag of its own: the list of models shrinks by more than ten times (BENCHMARKS.md)."""
        if self.valid_until is not None and self.clock.now() >= self.valid_until:
            self._forget_bodies()
        cached = self.bodies.get(key)
        if cached is None:
            body = ENCODER.encode(render(self.catalog))
            etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
            cached = self.bodies[key] = (body, etag, False)
        if not gzipped or len(cached[0]) < GZIP_MIN_BYTES:
            return cached
        compressed = self.bodies.get((key, "gzip"))
        if compressed is None:
            body = gzip.compress(cached[0], compresslevel=6, mtime=0)
            compressed = self.bodies[(key, "gzip")] = (body, cached[1][:-1] + '-gzip"', True)
        return compressed

    async def watch(self, url: str) -> None:
        """LISTEN for catalog changes; poll as well, in case a notification is lost."""
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(plain_dsn(url))
                await conn.add_listener("catalog_changed", lambda *_: self._changed.set())
                await self.refresh()  # changes made while we were not listening
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)
                    self._changed.clear()
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("catalog watch interrupted; retrying", exc_info=True)
                await asyncio.sleep(1)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
