"""The catalog in memory: an immutable snapshot per catalog version (models, their price versions,
margins, aliases), and the lookups that price a call from it."""

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row

from app.catalog.resolve import AliasEntry, Entry, Resolution, Resolver
from app.errors import NotFound
from app.pricing import (
    RATE_KINDS,
    ModelUnpriced,
    Quote,
    Rates,
    Tariff,
    Usage,
    Variant,
    rates_from,
    select_rates,
    validate_usage,
    variant_from,
)
from app.pricing import quote as pricing_quote


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
