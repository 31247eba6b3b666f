from typing import Annotated, Any

import msgspec

from app.catalog.schemas import Region, ServiceTier
from app.errors import ErrorObject
from app.usage.schemas import ModelRef, ProviderRef


class EstimateIn(msgspec.Struct, forbid_unknown_fields=True):
    """A call to price: `model`, or `models` to compare the same call on several (cheapest first).
    `max_output_tokens` stands in for `output_tokens` when the output is not known yet. Tokens as
    token fields or as the provider's `usage` object, as in a usage event; `provider`, who serves it."""

    input_tokens: int | None = None
    model: ModelRef | None = None
    models: Annotated[list[ModelRef], msgspec.Meta(min_length=1, max_length=50)] | None = None
    output_tokens: int | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    account_id: str | None = None
    provider: ProviderRef | None = None
    usage: dict[str, Any] | None = None
    usage_format: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    # Priced as a usage event on that tier and in that region would be, at this time of day.
    service_tier: ServiceTier = "default"
    region: Region | None = None


class Line(msgspec.Struct):
    kind: str
    tokens: int | None
    rate_per_1m: str
    credits: str


class Funds(msgspec.Struct):
    account_id: str
    available: str
    covered: bool


class Estimate(msgspec.Struct, omit_defaults=True):
    model: str
    credits: str
    price_version: int
    effective_from: str
    tier: int | None
    breakdown: list[Line]
    # The tier and region priced (echoing the request; a Bedrock profile id names its region).
    service_tier: str | msgspec.UnsetType = msgspec.UNSET
    region: str | None = None
    account: Funds | None = None
    upstream_cost_usd: str | msgspec.UnsetType = msgspec.UNSET
    margin: str | msgspec.UnsetType = msgspec.UNSET


class Unavailable(msgspec.Struct):
    model: str
    error: ErrorObject


class Comparison(msgspec.Struct):
    estimates: list[Estimate]
    unavailable: list[Unavailable]
