"""The catalog in memory: an immutable snapshot per catalog version, and the views served from it."""

import asyncio
import bisect
import calendar
import contextlib
import gzip
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Context, Decimal
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.catalog import repository
from app.catalog.importer import price_row
from app.catalog.resolve import AliasEntry, Entry, Resolution, Resolver
from app.catalog.schemas import (
    AliasCreate,
    AliasOut,
    Capabilities,
    CatalogModel,
    MarginOut,
    MarginSet,
    ModelUpsert,
    OpenAIModel,
    PriceCreate,
    PriceVersionOut,
    Pricing,
    Provider,
    ProviderCreate,
    ProviderList,
    ProviderUpdate,
    TierRates,
    Upstream,
    VariantIn,
    VariantRates,
)
from app.clock import Clock
from app.db import plain_dsn
from app.errors import Conflict, InvalidRequest, NotFound
from app.pricing import (
    RATE_KINDS,
    ModelUnpriced,
    Quote,
    Rates,
    Tariff,
    Usage,
    Variant,
    credit_rate,
    rates_from,
    select_rates,
    time_of,
    validate_usage,
    variant_from,
)
from app.pricing import quote as pricing_quote
from app.times import utc

log = logging.getLogger("app.catalog")

THOUSAND = Decimal(1000)
# Workers also poll the version this often, in case a notification was lost with its connection.
POLL_SECONDS = 10


def exact(value: Decimal | None) -> str | None:
    """A rate as its shortest exact decimal string: "350", "0.35", never "3.5E+2"."""
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def number(value: Decimal | None) -> Decimal | None:
    """The same digits as `exact`, for fields encoded as JSON numbers."""
    return None if value is None else Decimal(exact(value))


@dataclass(frozen=True, slots=True)
class PriceVersion:
    id: int
    effective_from: datetime
    rates: Rates
    source: str
    variants: tuple[Variant, ...] = ()  # rates for service tiers, regions, times of day

    def rates_for(
        self, model_id: str, at: datetime, service_tier: str, region: str | None
    ) -> tuple[int | None, Rates | None]:
        """(which variant, or None for the base; the rates) that price a call (pricing.select_rates)."""
        return select_rates(model_id, self.rates, self.variants, at, service_tier, region)


@dataclass(frozen=True, slots=True)
class Model:
    row: Row
    aliases: tuple[str, ...]
    prices: tuple[PriceVersion, ...]  # ascending effective_from
    # Read on every event priced, so taken out of the row (and the price list) once.
    id: str = field(init=False)
    embedding: bool = field(init=False)
    provider: str = field(init=False)
    starts: tuple[datetime, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.row.id)
        object.__setattr__(self, "embedding", self.row.type == "embedding")
        object.__setattr__(self, "provider", self.row.provider)
        object.__setattr__(self, "starts", tuple(p.effective_from for p in self.prices))

    def price_at(self, at: datetime) -> PriceVersion | None:
        """The version in effect at `at`. Usage from before the first known price is priced with that
        first price: a dataset dates a price from when it was recorded, not from when it began."""
        index = bisect.bisect_right(self.starts, at)
        return self.prices[max(index, 1) - 1] if self.prices else None


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    default_margin: Decimal
    credits_per_usd: Decimal
    providers: dict[str, Row]
    models: dict[str, Model]
    aliases: dict[str, str]
    # (scope, target) -> ascending [(effective_from, margin or None)]
    margins: dict[tuple[str, str], list[tuple[datetime, Decimal | None]]]
    resolver: Resolver
    # (scope, target) -> the effective_from times of `margins`, for bisecting.
    margin_starts: dict[tuple[str, str], list[datetime]] = field(init=False, repr=False)
    # (model id, price version id, margin) -> its Tariff, made on first use; dropped with the snapshot.
    tariffs: dict[tuple[str, int | None, Decimal], Tariff] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starts = {key: [when for when, _ in history] for key, history in self.margins.items()}
        object.__setattr__(self, "margin_starts", starts)
        object.__setattr__(self, "tariffs", {})

    def resolve(self, name: str, provider: str | None = None) -> Model | None:
        """The model a reported string names (app/catalog/resolve.py), given who served the call."""
        resolution = self.resolver.resolve(name, provider)
        return self.models[resolution.model_id] if resolution is not None else None

    def require(self, name: str, provider: str | None = None) -> Model:
        model = self.resolve(name, provider)
        if model is None:
            raise NotFound(f"Model '{name}' not found", code="model_not_found", param="model")
        return model

    def resolution(self, name: str, provider: str | None = None) -> Resolution:
        """How `name` resolves, and by which rule; model_not_found when it does not."""
        resolution = self.resolver.resolve(name, provider)
        if resolution is None:
            hint = f" served by '{provider}'" if provider else ""
            raise NotFound(f"Model '{name}'{hint} not found", code="model_not_found", param="model")
        return resolution

    def require_available(self, name: str, provider: str | None = None) -> Model:
        model = self.require(name, provider)
        if not self.providers[model.row.provider].enabled:
            raise NotFound(
                f"Provider not configured for model '{model.id}'", code="provider_not_configured", param="model"
            )
        return model

    def quote(
        self, model: Model, usage: Usage, at: datetime, service_tier: str = "default", region: str | None = None
    ) -> tuple[Quote, PriceVersion, Decimal]:
        """How a charge, an estimate and a hold are all priced: with the price version and margin in
        effect at `at`, and the rates of that version for the call's service tier, region and time
        of day. Raises model_unpriced when no price is known."""
        price = model.price_at(at)
        margin = self.margin_at(model, at)
        validate_usage(usage, embedding=model.embedding)  # bad usage is refused before it is priced
        rates = price.rates_for(model.id, at, service_tier, region)[1] if price else None
        quote = pricing_quote(
            model.id, rates, usage, embedding=model.embedding, margin=margin, credits_per_usd=self.credits_per_usd
        )
        return quote, price, margin

    def charge(
        self,
        model: Model,
        usage: Usage,
        at: datetime,
        price: PriceVersion | None = None,
        service_tier: str = "default",
        region: str | None = None,
    ) -> tuple[Decimal, Decimal, PriceVersion, Decimal]:
        """(upstream USD, credits, price version, margin): the totals `quote` gives for the same
        arguments (and the same errors), through the Tariff of that price version, variant and
        margin. The price version is the one in effect at `at` unless one is given."""
        price = price or model.price_at(at)
        margin = self.margin_at(model, at)
        variant, rates = None, None if price is None else price.rates
        if price is not None and (price.variants or service_tier != "default"):
            validate_usage(usage, embedding=model.embedding)  # bad usage is refused before it is priced
            variant, rates = price.rates_for(model.id, at, service_tier, region)
        key = (model.id, price.id if price else None, margin, variant)
        tariff = self.tariffs.get(key)
        if tariff is None:
            tariff = self.tariffs[key] = Tariff(
                model.id, rates, embedding=model.embedding, margin=margin, credits_per_usd=self.credits_per_usd
            )
        upstream_usd, credits = tariff.charge(usage)
        return upstream_usd, credits, price, margin

    def charge_waiting(
        self,
        model: Model,
        usage: Usage,
        at: datetime,
        now: datetime,
        service_tier: str = "default",
        region: str | None = None,
    ) -> tuple[Decimal, Decimal, PriceVersion, Decimal]:
        """`charge` for usage that waited unrated. When the version in effect at `at` cannot price it
        (it has no 1-hour cache write rate, or no rates for the call's service tier, say), the first
        later version in effect by `now` that can does, as the first price known does for usage from
        before it; the margin is that of `at`."""
        try:
            return self.charge(model, usage, at, None, service_tier, region)
        except ModelUnpriced:
            later = [price for price in model.prices if at < price.effective_from <= now]
            for price in later:
                try:
                    return self.charge(model, usage, at, price, service_tier, region)
                except ModelUnpriced:
                    continue
            raise

    def margin_at(self, model: Model, at: datetime) -> Decimal:
        """Most specific wins: the model's override, then its provider's, then DEFAULT_MARGIN."""
        for key in (("model", model.id), ("provider", model.provider)):
            history = self.margins.get(key)
            if history:
                index = bisect.bisect_right(self.margin_starts[key], at)
                if index and history[index - 1][1] is not None:
                    return history[index - 1][1]
        return self.default_margin


def build_catalog(data: dict[str, list[Row]], default_margin: Decimal, credits_per_usd: Decimal) -> Catalog:
    aliases: dict[str, list[str]] = {}
    for row in data["aliases"]:
        if not row.provider:  # a provider-scoped alias is no name of the model's own
            aliases.setdefault(row.model_id, []).append(row.alias)
    versions: dict[str, list[PriceVersion]] = {}
    for row in data["prices"]:
        versions.setdefault(row.model_id, []).append(price_version(row))
    models = {
        row.id: Model(row, tuple(sorted(aliases.get(row.id, ()))), tuple(versions.get(row.id, ())))
        for row in data["models"]
    }
    margins: dict[tuple[str, str], list[tuple[datetime, Decimal | None]]] = {}
    for row in data["margins"]:
        margins.setdefault((row.scope, row.target), []).append((row.effective_from, row.margin))
    resolver = Resolver(
        [Entry(row.id, row.provider, row.name, row.match) for row in data["models"]],
        [AliasEntry(row.alias, row.model_id, row.provider) for row in data["aliases"]],
        [row.id for row in data["providers"]],
    )
    return Catalog(
        version=data["version"][0].version,
        default_margin=default_margin,
        credits_per_usd=credits_per_usd,
        providers={row.id: row for row in data["providers"]},
        models=models,
        aliases={alias: model_id for model_id, names in aliases.items() for alias in names},
        margins=margins,
        resolver=resolver,
    )


def price_version(row: Any) -> PriceVersion:
    rates = rates_from({kind: getattr(row, kind) for kind in (*RATE_KINDS, "per_request", "tiers")})
    variants = tuple(variant_from(variant) for variant in row.variants)
    return PriceVersion(id=row.id, effective_from=row.effective_from, rates=rates, source=row.source, variants=variants)


# Views


def _tiers(rates: Rates, scale) -> list[TierRates]:
    return [
        TierRates(
            above_input_tokens=tier.above_input_tokens,
            input=exact(scale(tier.input)),
            output=exact(scale(tier.output)),
            cached_input=exact(scale(tier.cached_input)),
            cache_write=exact(scale(tier.cache_write)),
            cache_write_1h=exact(scale(tier.cache_write_1h)),
        )
        for tier in sorted(rates.tiers, key=lambda t: t.above_input_tokens)
    ]


def _variants(variants: tuple[Variant, ...], scale) -> list[VariantRates]:
    return [
        VariantRates(
            service_tier=variant.service_tier,
            region=variant.region,
            time_from=None if variant.window is None else time_of(variant.window[0]),
            time_to=None if variant.window is None else time_of(variant.window[1]),
            input=exact(scale(variant.rates.input)),
            output=exact(scale(variant.rates.output)),
            cached_input=exact(scale(variant.rates.cached_input)),
            cache_write=exact(scale(variant.rates.cache_write)),
            cache_write_1h=exact(scale(variant.rates.cache_write_1h)),
            per_request=exact(scale(variant.rates.per_request)),
            tiers=_tiers(variant.rates, scale),
        )
        for variant in variants
    ]


def model_view(catalog: Catalog, model: Model, now: datetime, finance: bool) -> CatalogModel:
    row = model.row
    price = model.price_at(now)
    margin = catalog.margin_at(model, now)

    def credits(usd: Decimal | None) -> Decimal | None:
        return None if usd is None else credit_rate(usd, margin, catalog.credits_per_usd)

    pricing = upstream = None
    input_rate = output_rate = None
    if price is not None:
        rates = price.rates
        input_rate, output_rate = credits(rates.input), credits(rates.output)
        pricing = Pricing(
            currency="credits",
            unit="1M tokens",
            price_version=price.id,
            effective_from=price.effective_from,
            input=exact(input_rate),
            output=exact(output_rate),
            cached_input=exact(credits(rates.cached_input)),
            cache_write=exact(credits(rates.cache_write)),
            per_request=exact(credits(rates.per_request)),
            tiers=_tiers(rates, credits),
            cache_write_1h=exact(credits(rates.cache_write_1h)),
            variants=_variants(price.variants, credits),
        )
        if finance:
            upstream = Upstream(
                currency="USD",
                input=exact(rates.input),
                output=exact(rates.output),
                cached_input=exact(rates.cached_input),
                cache_write=exact(rates.cache_write),
                per_request=exact(rates.per_request),
                tiers=_tiers(rates, lambda usd: usd),
                source=price.source,
                cache_write_1h=exact(rates.cache_write_1h),
                variants=_variants(price.variants, lambda usd: usd),
            )
    priced = input_rate is not None and (model.embedding or output_rate is not None)
    return CatalogModel(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        provider=row.provider,
        type=row.type,
        context_window=row.context_window,
        context_limit=row.context_window,
        max_output_tokens=row.max_output_tokens,
        max_input_tokens=row.max_input_tokens,
        dimensions=row.dimensions,
        supports_tools=row.supports_tools,
        supports_vision=row.supports_vision,
        supports_reasoning=row.supports_reasoning,
        supports_prompt_caching=row.supports_prompt_caching,
        supports_json_output=row.supports_json_output,
        input_modalities=row.input_modalities,
        output_modalities=row.output_modalities,
        aliases=list(model.aliases),
        created=created_timestamp(model),
        deprecation_date=row.deprecation_date,
        facts=row.facts,
        priced=priced,
        input_cost_per_1m_tokens=number(input_rate),
        output_cost_per_1m_tokens=number(output_rate),
        cost_per_1k_input=number(input_rate / THOUSAND) if input_rate is not None else None,
        cost_per_1k_output=number(output_rate / THOUSAND) if output_rate is not None else None,
        pricing=pricing,
        upstream=upstream if finance else msgspec.UNSET,
        margin=exact(margin) if finance else msgspec.UNSET,
    )


def created_timestamp(model: Model) -> int:
    """Unix time of the model's release (or first listing, or snapshot date: `facts["created"]` says
    which), else 0. Never a price's date: that is when the data was taken or imported, and would make
    a model look new with every import."""
    if model.row.created is not None:
        return calendar.timegm(model.row.created.timetuple())
    return 0


def openai_view(view: CatalogModel) -> OpenAIModel:
    return OpenAIModel(
        id=view.id,
        object="model",
        created=view.created,
        owned_by=view.provider,
        root=view.id,
        parent=None,
        permission=[],
        display_name=view.display_name,
        type=view.type,
        context_length=view.context_window,
        max_output_tokens=view.max_output_tokens,
        capabilities=Capabilities(
            vision=view.supports_vision,
            function_calling=view.supports_tools,
            reasoning=view.supports_reasoning,
            prompt_caching=view.supports_prompt_caching,
            structured_output=view.supports_json_output,
            input_modalities=view.input_modalities,
            output_modalities=view.output_modalities,
        ),
        facts=view.facts,
        pricing=view.pricing,
        upstream=view.upstream,
        margin=view.margin,
    )


def provider_list(catalog: Catalog) -> ProviderList:
    counts = Counter((m.row.provider, m.row.type) for m in catalog.models.values())
    return ProviderList(
        providers=[
            Provider(
                id=row.id,
                name=row.name,
                configured=row.enabled,
                model_count=counts[(row.id, "language")] + counts[(row.id, "embedding")],
                language_models=counts[(row.id, "language")],
                embedding_models=counts[(row.id, "embedding")],
            )
            for row in catalog.providers.values()
        ]
    )


# Smaller bodies are sent as they are: compressing them saves less than it costs.
GZIP_MIN_BYTES = 1400
# The encoder for catalog bodies: Decimal rates as JSON numbers, digit for digit (never via float).
ENCODER = msgspec.json.Encoder(decimal_format="number")


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
        an ETag of its own: the list of models is 1.8 MB of JSON and 0.1 MB gzipped."""
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


# Admin writes. Each runs in the caller's transaction; the trigger on the catalog tables bumps the
# version and notifies every worker.

SKEW = timedelta(minutes=1)


def _effective_from(requested: datetime | None, latest: datetime | None, moment: datetime) -> datetime:
    """History is append-only: a new version starts now or later, after every stored one."""
    requested = moment if requested is None else utc(requested, "effective_from")
    if requested < moment - SKEW:
        raise InvalidRequest(
            "`effective_from` cannot be in the past: history is never rewritten", param="effective_from"
        )
    if latest is not None and requested <= latest:
        raise Conflict(
            f"`effective_from` must be after the latest version ({latest.isoformat()})",
            code="price_history_conflict",
            param="effective_from",
        )
    return requested


async def create_provider(conn: AsyncConnection, data: ProviderCreate) -> Row:
    row = await repository.insert_provider(conn, provider_id=data.id, name=data.name, enabled=data.enabled)
    if row is None:
        raise Conflict(f"Provider '{data.id}' already exists", code="provider_exists", param="id")
    return row


async def update_provider(conn: AsyncConnection, provider_id: str, data: ProviderUpdate) -> Row:
    values = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
    if not values:
        raise InvalidRequest("Nothing to change: give `name` or `enabled`", param="enabled")
    row = await repository.update_provider(conn, provider_id, values)
    if row is None:
        raise NotFound(f"Provider '{provider_id}' not found", code="provider_not_found")
    return row


# ModelUpsert's fields by the names facts use (the capabilities of catalog files).
OPERATOR_FACTS = {
    "supports_tools": "tools",
    "supports_vision": "vision",
    "supports_reasoning": "reasoning",
    "supports_prompt_caching": "prompt_caching",
    "supports_json_output": "json_output",
    "supports_audio_input": "audio_input",
}


async def upsert_model(conn: AsyncConnection, catalog: Catalog, data: ModelUpsert) -> str:
    if data.provider not in catalog.providers:
        raise NotFound(f"Provider '{data.provider}' not found", code="provider_not_found", param="provider")
    model_id = f"{data.provider}/{data.name}"
    for alias in data.aliases:
        owner = catalog.resolve(alias)
        if alias == model_id or (owner is not None and owner.id != model_id and alias in catalog.aliases):
            raise Conflict(f"Alias '{alias}' already names model '{owner.id}'", code="alias_taken", param="aliases")
    fields = msgspec.structs.asdict(data)
    aliases = fields.pop("aliases")
    fields["display_name"] = fields["display_name"] or data.name
    # Every fact the operator gives is the operator's (an upsert replaces the model's facts).
    fields["facts"] = {
        OPERATOR_FACTS.get(name, name): "operator"
        for name, value in fields.items()
        if value is not None and name not in ("provider", "name", "type", "display_name")
    }
    known = catalog.models.get(model_id)
    fields["match"] = None if known is None else known.row.match  # the data's rules are not the operator's to set
    await repository.upsert_models(conn, [{"id": model_id, **fields}])
    await repository.add_aliases(conn, [{"alias": alias, "model_id": model_id} for alias in aliases])
    return model_id


async def add_price(conn: AsyncConnection, catalog: Catalog, data: PriceCreate, now: datetime) -> PriceVersionOut:
    model = catalog.require(data.model)
    for kind in (*RATE_KINDS, "per_request"):
        if (value := getattr(data, kind)) is not None:
            check_rate(value, kind)
    for index, tier in enumerate(data.tiers):
        for kind in RATE_KINDS:
            if (value := getattr(tier, kind)) is not None:
                check_rate(value, f"tiers[{index}].{kind}")
    if len({tier.above_input_tokens for tier in data.tiers}) != len(data.tiers):
        raise InvalidRequest("Two tiers share one `above_input_tokens`", param="tiers")
    check_variants(data.variants)
    latest = model.prices[-1].effective_from if model.prices else None
    effective_from = _effective_from(data.effective_from, latest, now)
    entry = msgspec.structs.asdict(data) | {
        "tiers": [msgspec.structs.asdict(t) for t in data.tiers],
        "variants": [
            msgspec.structs.asdict(v) | {"tiers": [msgspec.structs.asdict(t) for t in v.tiers]} for v in data.variants
        ],
    }
    (row,) = await repository.insert_prices(conn, [price_row(model.id, entry, effective_from, data.source)])
    return price_out(row)


def check_variants(variants: list[VariantIn]) -> None:
    seen = set()
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        for kind in (*RATE_KINDS, "per_request"):
            if (value := getattr(variant, kind)) is not None:
                check_rate(value, f"{where}.{kind}")
        for number, tier in enumerate(variant.tiers):
            for kind in RATE_KINDS:
                if (value := getattr(tier, kind)) is not None:
                    check_rate(value, f"{where}.tiers[{number}].{kind}")
        if len({tier.above_input_tokens for tier in variant.tiers}) != len(variant.tiers):
            raise InvalidRequest(f"Two tiers of `{where}` share one `above_input_tokens`", param="variants")
        conditions = (variant.service_tier, variant.region, variant.time_from, variant.time_to)
        if conditions == (None, None, None, None):
            raise InvalidRequest(
                f"`{where}` needs a `service_tier`, a `region` or a `time_from`/`time_to` window", param="variants"
            )
        if (variant.time_from is None) != (variant.time_to is None) or (
            variant.time_from is not None and variant.time_from == variant.time_to
        ):
            raise InvalidRequest(f"`{where}` needs both ends of a non-empty time window", param="variants")
        if conditions in seen:
            raise InvalidRequest(f"`{where}` repeats the conditions of another variant", param="variants")
        seen.add(conditions)


def check_rate(value: Decimal, field: str) -> None:
    if not value.is_finite() or value < 0:
        raise InvalidRequest(f"`{field}` must be a finite, non-negative number", param=field)
    if len(value.as_tuple().digits) > 30:
        raise InvalidRequest(f"`{field}` has too many digits", param=field)


def price_out(row: Row) -> PriceVersionOut:
    version = price_version(row)
    return PriceVersionOut(
        id=row.id,
        model_id=row.model_id,
        effective_from=row.effective_from,
        input=exact(row.input),
        output=exact(row.output),
        cached_input=exact(row.cached_input),
        cache_write=exact(row.cache_write),
        per_request=exact(row.per_request),
        tiers=_tiers(version.rates, lambda usd: usd),
        source=row.source,
        cache_write_1h=exact(row.cache_write_1h),
        variants=_variants(version.variants, lambda usd: usd),
    )


# A margin multiplies upstream prices. At least 0.01 (selling at 1% of cost is already a giveaway;
# below it an event's credits round to nothing while its upstream cost is real, and gross margin
# percentages lose all meaning), at most 1000, and at most 6 decimal places (a ten-thousandth of a
# percent, finer than any pricing decision, keeps credit rates short exact decimals).
MIN_MARGIN, MAX_MARGIN, MARGIN_PLACES = Decimal("0.01"), Decimal(1000), 6


def check_margin(margin: Decimal) -> None:
    if not margin.is_finite() or not MIN_MARGIN <= margin <= MAX_MARGIN:
        raise InvalidRequest(f"`margin` must be between {MIN_MARGIN} and {MAX_MARGIN}", param="margin")
    digits = len(margin.as_tuple().digits)
    # Trailing zeros do not count ("1.40000000" is 1.4); a context as wide as the number cannot round it.
    if margin.normalize(Context(prec=digits)).as_tuple().exponent < -MARGIN_PLACES:
        raise InvalidRequest(f"`margin` has more than {MARGIN_PLACES} decimal places", param="margin")


async def set_margin(conn: AsyncConnection, catalog: Catalog, data: MarginSet, now: datetime) -> MarginOut:
    target = data.target
    if data.scope == "model":
        target = catalog.require(target).id
    elif target not in catalog.providers:
        raise NotFound(f"Provider '{target}' not found", code="provider_not_found", param="target")
    if data.margin is not None:
        check_margin(data.margin)
    latest = await repository.latest_margin_time(conn, data.scope, target)
    effective_from = _effective_from(data.effective_from, latest, now)
    row = await repository.insert_margin(
        conn, scope=data.scope, target=target, margin=data.margin, effective_from=effective_from
    )
    return margin_out(row)


def margin_out(row: Row) -> MarginOut:
    return MarginOut(
        id=row.id, scope=row.scope, target=row.target, margin=exact(row.margin), effective_from=row.effective_from
    )


# Operator aliases


async def put_alias(conn: AsyncConnection, catalog: Catalog, data: AliasCreate) -> tuple[AliasOut, bool]:
    """(the alias, whether it is new). An alias the operator gives again is the same alias; one that
    names another model already is a conflict, unless it came from the catalog: the operator's word
    then wins, and imports leave it alone."""
    model = catalog.require(data.model)
    provider = data.provider or ""
    if provider and provider not in catalog.providers:
        raise NotFound(f"Provider '{provider}' not found", code="provider_not_found", param="provider")
    if data.alias.lower() in {model_id.lower() for model_id in catalog.models}:
        raise Conflict(f"'{data.alias}' is a model id", code="alias_taken", param="alias")
    existing = await repository.find_alias(conn, data.alias, provider)
    if existing is not None and existing.alias != data.alias:
        raise Conflict(f"Alias '{existing.alias}' exists, differing only in case", code="alias_taken", param="alias")
    if existing is not None and existing.model_id == model.id and existing.source == "operator":
        return alias_out(existing), False
    if existing is not None and existing.source == "operator":
        raise Conflict(
            f"Alias '{data.alias}' already names model '{existing.model_id}'; delete it first",
            code="alias_taken",
            param="alias",
        )
    row = await repository.put_operator_alias(conn, data.alias, provider, model.id)
    return alias_out(row), True


async def delete_alias(conn: AsyncConnection, alias: str, provider: str | None) -> None:
    row = await repository.find_alias(conn, alias, provider or "")
    if row is None or row.alias != alias:
        raise NotFound(f"Alias '{alias}' not found", code="alias_not_found", param="alias")
    if row.source != "operator":
        raise Conflict(
            f"Alias '{alias}' comes from the catalog data; only an operator's alias is deleted",
            code="alias_from_catalog",
            param="alias",
        )
    await repository.delete_alias(conn, row.alias, row.provider)


def alias_out(row: Row) -> AliasOut:
    return AliasOut(alias=row.alias, model=row.model_id, provider=row.provider or None, source=row.source)
