"""What handlers receive from the worker's state, each by its parameter name, typed with `NamedDependency`
(`clock: NamedDependency[Clock]`). app.state keeps the objects: the lifespan makes them and tests may
replace them; handlers read them only through these providers, once per request."""

import asyncpg
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncEngine

from app.catalog.listings import Listings
from app.catalog.model import Catalog
from app.catalog.sources import Upstreams
from app.catalog.store import CatalogStore
from app.clock import Clock
from app.keys.auth import KeyCache
from app.usage.coalescer import Coalescer
from app.usage.endpoints import Ingestion
from app.usage.rating import Rater


def provide_engine(state: State) -> AsyncEngine:
    return state.engine


def provide_read_engine(state: State) -> AsyncEngine:
    """The read replica's engine when one is configured (reports, lists, exports), else the primary's."""
    return state.read_engine


def provide_pool(state: State) -> asyncpg.Pool:
    return state.pool


def provide_clock(state: State) -> Clock:
    return state.clock


def provide_catalog(state: State) -> Catalog:
    """The catalog version in force when the request arrived: a refresh during the request leaves it be."""
    return state.catalog.catalog


def provide_catalog_store(state: State) -> CatalogStore:
    return state.catalog


def provide_upstreams(state: State) -> Upstreams:
    return state.upstreams


def provide_sync_sources(state: State) -> tuple[str, ...]:
    return state.sync_sources


def provide_listings(state: State) -> Listings:
    return state.listings


def provide_coalescer(state: State) -> Coalescer:
    return state.coalescer


def provide_rater(state: State) -> Rater:
    return state.rater


def provide_key_cache(state: State) -> KeyCache:
    return state.key_cache


def provide_ingestion(state: State) -> Ingestion:
    return Ingestion(state.catalog.catalog, state.clock, state.coalescer, state.rater, state.pool)


DEPENDENCIES = {
    "db": Provide(provide_engine, sync_to_thread=False),
    "read_db": Provide(provide_read_engine, sync_to_thread=False),
    "pool": Provide(provide_pool, sync_to_thread=False),
    "clock": Provide(provide_clock, sync_to_thread=False),
    "catalog": Provide(provide_catalog, sync_to_thread=False),
    "catalog_store": Provide(provide_catalog_store, sync_to_thread=False),
    "upstreams": Provide(provide_upstreams, sync_to_thread=False),
    "sync_sources": Provide(provide_sync_sources, sync_to_thread=False),
    "listings": Provide(provide_listings, sync_to_thread=False),
    "coalescer": Provide(provide_coalescer, sync_to_thread=False),
    "rater": Provide(provide_rater, sync_to_thread=False),
    "key_cache": Provide(provide_key_cache, sync_to_thread=False),
    "ingestion": Provide(provide_ingestion, sync_to_thread=False),
}
