"""Catalog admin writes: providers, models, price versions, margins and operator aliases. Each runs in the
caller's transaction."""

from datetime import datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from app.catalog import repository
from app.catalog.importer import price_row
from app.catalog.model import Catalog, exact, price_version
from app.catalog.schemas import (
    AliasCreate,
    AliasOut,
    MarginOut,
    MarginSet,
    ModelUpsert,
    PriceCreate,
    PriceVersionOut,
    ProviderCreate,
    ProviderUpdate,
    VariantIn,
)
from app.catalog.views import tier_rates, variant_rates
from app.errors import Conflict, InvalidRequest, NotFound
from app.money import exact_context
from app.pricing import RATE_KINDS
from app.times import utc

# Admin writes. Each runs in the caller's transaction; the repository's write bumps the version and
# notifies every worker.

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


async def upsert_model(conn: AsyncConnection, catalog: Catalog, data: ModelUpsert, at: datetime) -> str:
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
    await repository.upsert_models(conn, [{"id": model_id, **fields}], at)
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
        tiers=tier_rates(version.rates, lambda usd: usd),
        source=row.source,
        cache_write_1h=exact(row.cache_write_1h),
        variants=variant_rates(version.variants, lambda usd: usd),
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
    if margin.normalize(exact_context(digits)).as_tuple().exponent < -MARGIN_PLACES:
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
