"""The answers served from the catalog in memory: a model with its credit prices, the OpenAI shape, the
provider list."""

import calendar
from collections import Counter
from datetime import datetime
from decimal import Decimal

import msgspec

from app.catalog.model import Catalog, Model, exact, number
from app.catalog.schemas import (
    Capabilities,
    CatalogModel,
    OpenAIModel,
    Pricing,
    Provider,
    ProviderList,
    TierRates,
    Upstream,
    VariantRates,
)
from app.pricing import Rates, Variant, credit_rate, time_of

THOUSAND = Decimal(1000)
# The encoder for catalog bodies: Decimal rates as JSON numbers, digit for digit (never via float).
ENCODER = msgspec.json.Encoder(decimal_format="number")


def tier_rates(rates: Rates, scale) -> list[TierRates]:
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


def variant_rates(variants: tuple[Variant, ...], scale) -> list[VariantRates]:
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
            tiers=tier_rates(variant.rates, scale),
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
            tiers=tier_rates(rates, credits),
            cache_write_1h=exact(credits(rates.cache_write_1h)),
            variants=variant_rates(price.variants, credits),
        )
        if finance:
            upstream = Upstream(
                currency="USD",
                input=exact(rates.input),
                output=exact(rates.output),
                cached_input=exact(rates.cached_input),
                cache_write=exact(rates.cache_write),
                per_request=exact(rates.per_request),
                tiers=tier_rates(rates, lambda usd: usd),
                source=price.source,
                cache_write_1h=exact(rates.cache_write_1h),
                variants=variant_rates(price.variants, lambda usd: usd),
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
