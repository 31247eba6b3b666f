"""Catalog sync: what upstream sources say now, diffed against the stored catalog.

New models are added. A changed price becomes a new version effective at the sync time: stored
versions are never edited, so past usage events keep the version they were charged by. A model that
vanished from a provider's complete listing is deprecated (dated), never deleted. A fallback list
only adds missing models. Upstream data that cannot be read leaves the catalog as it was.

Each source is planned and written in one transaction under an advisory lock, so two syncs (a
periodic one on another worker, an operator's) never interleave their plans and writes.
"""

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.catalog import entries, repository, sources
from app.catalog.importer import (
    ORIGIN_PROVIDERS,
    RATE_KINDS,
    VARIANT_CONDITIONS,
    catalog_time,
    model_row,
    plan_prices,
    price_row,
    same_rates,
)
from app.catalog.model import exact
from app.catalog.schemas import SourceSyncResult, SyncChange, SyncPrice, SyncResult, TierRates, VariantRates
from app.catalog.sources import SourceData, SourceError, Upstreams
from app.config import SYNC_SOURCES
from app.tables import providers

log = logging.getLogger("app.catalog.sync")

SYNC_LOCK = 7_301_002  # pg advisory lock key: one catalog sync at a time
LOCK_WAIT_SECONDS = 30.0  # how long a sync waits for one running elsewhere before giving up
# (source name, steps done, steps in all): drives the CLI's progress bar.
Progress = Callable[[str, int, int], None]


@dataclass
class Plan:
    result: SourceSyncResult
    providers: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    aliases: list[dict[str, str]] = field(default_factory=list)
    prices: list[dict[str, Any]] = field(default_factory=list)
    deprecate: list[str] = field(default_factory=list)


async def sync_catalog(
    conn: AsyncConnection,
    upstreams: Upstreams,
    names: Iterable[str],
    *,
    at: datetime,
    dry_run: bool = False,
    curated: bool = False,
    litellm: str | None = None,
    progress: Progress | None = None,
    lock_wait: float = LOCK_WAIT_SECONDS,
) -> SyncResult:
    """Sync each named source in turn, each in a transaction of its own on `conn`.

    `conn` must not be in a transaction: the network is read outside of one."""
    results = []
    async with sources.client(upstreams.limits) as http:
        for name in dict.fromkeys(names):
            if name not in SYNC_SOURCES:
                raise ValueError(f"unknown catalog source {name!r}")

            steps = Steps(name, progress)
            try:
                data = await read(name, http, upstreams, at=at, curated=curated, litellm=litellm, progress=steps)
            except SourceError as exc:
                log.warning("catalog sync: %s", exc.message)
                results.append(failure(name, exc.message, dry_run, litellm or upstreams.litellm))
                steps.finish()
                continue
            steps(steps.total - 1, steps.total)
            async with conn.begin() as transaction:
                if not dry_run and not await locked(conn, lock_wait):
                    message = f"{name}: another catalog sync is running; nothing was written, try again later"
                    results.append(failure(name, message, dry_run, litellm or upstreams.litellm))
                    steps.finish()
                    continue
                plan = await plan_source(conn, data, at=at, dry_run=dry_run)
                if dry_run:
                    await transaction.rollback()
                else:
                    await apply(conn, plan, at)
            results.append(plan.result)
            steps.finish()
    return SyncResult(synced_at=at, dry_run=dry_run, ok=not any(r.errors for r in results), results=results)


class Steps:
    """One source's progress: its reads (Ollama reads one answer per model), then the write."""

    def __init__(self, name: str, progress: Progress | None) -> None:
        self.name, self.progress, self.total = name, progress, 2
        self(0, 2)

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        if self.progress:
            self.progress(self.name, done, total)

    def finish(self) -> None:
        self(self.total, self.total)


async def read(
    name: str, http, upstreams: Upstreams, *, at: datetime, curated: bool, litellm: str | None, progress
) -> SourceData:
    if name == "openrouter":
        return await sources.read_openrouter(http, upstreams, curated=curated)
    if name == "ollama":
        return await sources.read_ollama(http, upstreams, progress)
    if name == "genai-prices":
        return await sources.read_genai_prices(upstreams, at)
    return await sources.read_litellm(http, upstreams, litellm)


def failure(name: str, error: str, dry_run: bool, litellm: str | None) -> SourceSyncResult:
    """A source whose data could not be used; its `source` says where the data was to come from."""
    source = {"openrouter": "api", "ollama": "ollama", "genai-prices": "package"}.get(name)
    if source is None:
        source = "url" if (litellm or "").startswith(("http://", "https://")) else "file"
    return SourceSyncResult(name=name, source=source, provider=None, dry_run=dry_run, errors=[error])


async def locked(conn: AsyncConnection, wait: float) -> bool:
    """The sync lock for this transaction, waiting at most `wait` seconds for a sync elsewhere.

    Polled rather than waited for in the server: a blocking wait would run into statement_timeout."""
    deadline = time.monotonic() + wait
    while not (await conn.execute(select(func.pg_try_advisory_xact_lock(SYNC_LOCK)))).scalar():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def sync_if_free(
    conn: AsyncConnection, upstreams: Upstreams, names: Iterable[str], *, at: datetime
) -> SyncResult | None:
    """The periodic sync: None when another worker holds the sync lock (it is syncing already).

    A session lock, held from before the fetch to after the writes, so that the other workers skip
    this round instead of fetching the same data and waiting to write it."""
    if not (await conn.execute(select(func.pg_try_advisory_lock(SYNC_LOCK)))).scalar():
        await conn.rollback()
        return None
    await conn.commit()
    try:
        return await sync_catalog(conn, upstreams, names, at=at)
    finally:
        await conn.execute(select(func.pg_advisory_unlock(SYNC_LOCK)))
        await conn.commit()


# Planning: a pure diff of the source's data against what is stored


async def plan_source(conn: AsyncConnection, data: SourceData, *, at: datetime, dry_run: bool) -> Plan:
    entries = data.models
    ids = [entry["id"] for entry in entries]
    stored = {row.id: row for row in await repository.models_by_ids(conn, ids)} if ids else {}
    history: dict[str, list[Row]] = {}
    for row in await repository.price_history(conn, ids) if ids else []:
        history.setdefault(row.model_id, []).append(row)
    known = set((await conn.execute(select(providers.c.id))).scalars())

    result = SourceSyncResult(
        name=data.name,
        source=data.source,
        provider=data.providers[0]["id"] if len(data.providers) == 1 else None,
        dry_run=dry_run,
        detail=data.detail,
        errors=list(data.errors),
    )
    plan = Plan(result)
    for entry in entries:
        model_id = entry["id"]
        # Sources give the current price undated: it takes effect at the sync time.
        quoted = [p | {"effective_from": p.get("effective_from") or at.isoformat()} for p in entry["prices"]]
        try:
            if model_id not in stored:
                added = [row for row in plan_prices(model_id, quoted, [], at) if not unpriced(row)]
                plan.models.append(model_row(entry))
                plan.prices += added
                plan.aliases += aliases_of(entry)
                result.models_added += 1
                current = [row for row in added if row["effective_from"] <= at]
                new = price_view(current[-1] if current else None)
                result.changes.append(SyncChange(id=model_id, change="added", new_price=new))
                continue
            if data.only_new:
                result.unchanged += 1
                continue
            old = stored[model_id]
            merged = merge(old, entry)
            fields = [name for name in repository.MODEL_FIELDS if merged[name] != getattr(old, name)]
            in_effect = [row for row in history.get(model_id, []) if row.effective_from <= at]
            price, ahead = new_prices(model_id, quoted, history.get(model_id, []), at)
        except (ValueError, ArithmeticError) as exc:  # rates the pricing module refuses
            result.errors.append(f"{data.name}: model '{entry['name']}' skipped: {exc}")
            continue
        if fields:
            plan.models.append(merged)
            result.models_updated += 1
            result.changes.append(SyncChange(id=model_id, change="updated", fields=fields))
        if price is not None:
            plan.prices.append(price)
            old_price = price_view(in_effect[-1]) if in_effect else None
            result.changes.append(
                SyncChange(id=model_id, change="price_changed", old_price=old_price, new_price=price_view(price))
            )
        for row in ahead:
            plan.prices.append(row)
            result.changes.append(SyncChange(id=model_id, change="price_changed", new_price=price_view(row)))
        if not fields and price is None and not ahead:
            result.unchanged += 1

    provider = data.complete_listing_of
    if provider and not data.only_new:
        if data.listed:
            on = at.date()
            for model_id in await repository.active_model_ids(conn, provider):
                if model_id not in data.listed:
                    plan.deprecate.append(model_id)
                    result.changes.append(SyncChange(id=model_id, change="deprecated", deprecation_date=on))
        else:  # an empty answer is more likely an upstream glitch than the end of every model
            result.detail = "the listing was empty: no model was deprecated"
    needed = {row["provider"] for row in plan.models}
    plan.providers = [p for p in data.providers if p["id"] in needed and p["id"] not in known]
    result.prices_added = len(plan.prices)
    result.models_deprecated = len(plan.deprecate)
    return plan


def merge(old: Row, entry: dict[str, Any]) -> dict[str, Any]:
    """The source's values over the stored ones; what the source does not say (null) is kept, so an
    operator's deprecation date or a capability known from another dataset survives a sync."""
    new = model_row(entry)
    merged = {name: getattr(old, name) if new[name] is None else new[name] for name in repository.MODEL_FIELDS}
    if not entry.get("display_name"):
        merged["display_name"] = old.display_name
    # A kept value keeps its source; a value the source gives is labelled with the source.
    merged["facts"] = dict(old.facts or {}) | new["facts"]
    return merged


def next_price(model_id: str, quoted: dict[str, Any] | None, in_effect: Row | None, at: datetime) -> dict | None:
    """The new version the source's current price calls for, effective `at`; None when the version
    in effect already says the same, or the source names no price (unknown is not a change)."""
    if quoted is None:
        return None
    row = price_row(model_id, quoted, at, quoted["source"])
    if in_effect is None:
        return None if unpriced(row) else row
    return None if same_rates(in_effect, row) else row


def new_prices(model_id: str, quoted: list[dict], stored: list[Row], at: datetime) -> tuple[dict | None, list[dict]]:
    """(the new version the source's price now calls for, or None; the versions it dates after the sync
    that are not stored yet). genai-prices knows some price changes ahead: they are added once, at their
    dates. The other sources' prices are all effective at the sync time."""
    current = [price for price in quoted if catalog_time(price["effective_from"]) <= at] or quoted[:1]
    in_effect = [row for row in stored if row.effective_from <= at]
    now = current[-1] if current else None
    if now is not None and in_effect:
        now = carry(now, in_effect[-1])
    latest = stored[-1].effective_from if stored else None
    later = [price for price in quoted if catalog_time(price["effective_from"]) > at]
    ahead = [price_row(model_id, price, catalog_time(price["effective_from"]), price["source"]) for price in later]
    ahead = [row for row in ahead if latest is None or row["effective_from"] > latest]
    return next_price(model_id, now, in_effect[-1] if in_effect else None, at), ahead


def carry(quoted: dict[str, Any], stored: Row) -> dict[str, Any]:
    """The source's price with what the stored one adds to it, where their base rates agree: tiers, cache
    rates and variants another dataset filled in (app/catalog/entries.py). What the source does not know
    is not a change: a genai-prices sync keeps the long-context tier LiteLLM gave a price."""
    known = {kind: exact(getattr(stored, kind)) for kind in RATE_KINDS} | {
        "per_request": exact(stored.per_request),
        "tiers": stored.tiers,
        "variants": stored.variants,
    }
    filled = copy.deepcopy(quoted)
    entries.fill_gaps(filled, known)
    return filled


def unpriced(row: dict[str, Any]) -> bool:
    return all(row[kind] is None for kind in RATE_KINDS) and not row["per_request"]


def aliases_of(entry: dict[str, Any]) -> list[dict[str, str]]:
    names = list(entry.get("aliases") or ())
    if entry["provider"] in ORIGIN_PROVIDERS:  # as the importer: `gpt-4o` means `openai/gpt-4o`
        names.append(entry["name"])
    return [{"alias": alias, "model_id": entry["id"]} for alias in names]


def price_view(price: Row | dict[str, Any] | None) -> SyncPrice | None:
    if price is None:
        return None
    get = price.__getitem__ if isinstance(price, dict) else lambda name: getattr(price, name)
    tiers = [
        TierRates(
            above_input_tokens=tier["above_input_tokens"],
            **{kind: None if tier.get(kind) is None else str(tier[kind]) for kind in RATE_KINDS},
        )
        for tier in get("tiers")
    ]
    variants = [
        VariantRates(
            **{key: variant.get(key) for key in VARIANT_CONDITIONS},
            **{kind: variant.get(kind) for kind in RATE_KINDS},
            per_request=variant.get("per_request") or "0",
            tiers=[TierRates(**tier) for tier in variant.get("tiers") or []],
        )
        for variant in get("variants") or []
    ]
    return SyncPrice(
        **{kind: exact(get(kind)) for kind in RATE_KINDS},
        per_request=exact(get("per_request")) or "0",
        tiers=tiers,
        effective_from=get("effective_from"),
        variants=variants,
    )


# Writing: additions only, and nothing at all when nothing changed (each write bumps the catalog
# version, and every worker then reloads the catalog)


async def apply(conn: AsyncConnection, plan: Plan, at: datetime) -> None:
    for provider in plan.providers:
        await repository.insert_provider(conn, provider_id=provider["id"], name=provider["name"], enabled=True)
    if plan.models:
        await repository.upsert_models(conn, plan.models, at)
    if plan.aliases:
        await repository.add_aliases(conn, plan.aliases)
    if plan.prices:
        await repository.insert_prices(conn, plan.prices)
    if plan.deprecate:
        await repository.deprecate_models(conn, plan.deprecate, at.date(), at)


def summary(result: SourceSyncResult) -> str:
    counts = (
        f"{result.models_added} added, {result.models_updated} updated, {result.prices_added} price versions "
        f"added, {result.models_deprecated} deprecated, {result.unchanged} unchanged"
    )
    text = f"{result.name} ({result.source}): {counts}"
    if result.detail:
        text += f" [{result.detail}]"
    if result.errors:
        text += f"; {len(result.errors)} error(s)"
    return text
