"""Catalog shapes. Rates in `CatalogModel` are JSON numbers (clients do arithmetic on them);
the `pricing` and `upstream` objects carry the same rates as exact decimal strings."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

ModelType = Literal["language", "embedding"]
Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
ModelName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,199}$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class TierRates(msgspec.Struct):
    above_input_tokens: int
    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None


class Pricing(msgspec.Struct):
    """Credit rates (margin included) per 1M tokens, as exact decimal strings."""

    currency: str
    unit: str
    price_version: int
    effective_from: datetime
    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None
    per_request: str
    tiers: list[TierRates]


class Upstream(msgspec.Struct):
    """The provider's own USD rates per 1M tokens (operator and finance keys only)."""

    currency: str
    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None
    per_request: str
    tiers: list[TierRates]
    source: str


class CatalogModel(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    display_name: str
    provider: str
    type: str
    context_window: int | None
    context_limit: int | None
    max_output_tokens: int | None
    max_input_tokens: int | None
    dimensions: int | None
    supports_tools: bool | None
    supports_vision: bool | None
    supports_reasoning: bool | None
    supports_prompt_caching: bool | None
    supports_json_output: bool | None
    aliases: list[str]
    created: int
    deprecation_date: date | None
    priced: bool
    input_cost_per_1m_tokens: Decimal | None
    output_cost_per_1m_tokens: Decimal | None
    cost_per_1k_input: Decimal | None
    cost_per_1k_output: Decimal | None
    pricing: Pricing | None
    upstream: Upstream | msgspec.UnsetType | None = msgspec.UNSET
    margin: str | msgspec.UnsetType = msgspec.UNSET


class ModelList(msgspec.Struct):
    models: list[CatalogModel]
    total: int


class Provider(msgspec.Struct):
    id: str
    name: str
    configured: bool
    model_count: int
    language_models: int
    embedding_models: int


class ProviderList(msgspec.Struct):
    providers: list[Provider]


class Capabilities(msgspec.Struct):
    vision: bool | None
    function_calling: bool | None


class OpenAIModel(msgspec.Struct, omit_defaults=True):
    """OpenAI's model object, with our extras after the four standard fields."""

    id: str
    object: str
    created: int
    owned_by: str
    root: str
    parent: None
    permission: list[str]
    display_name: str
    type: str
    context_length: int | None
    max_output_tokens: int | None
    capabilities: Capabilities
    pricing: Pricing | None
    upstream: Upstream | msgspec.UnsetType | None = msgspec.UNSET
    margin: str | msgspec.UnsetType = msgspec.UNSET


class OpenAIModelList(msgspec.Struct):
    object: str
    data: list[OpenAIModel]


# Admin writes


class ProviderCreate(msgspec.Struct, forbid_unknown_fields=True):
    id: Slug
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    enabled: bool = True


class ProviderUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    enabled: bool | None = None


class ModelUpsert(msgspec.Struct, forbid_unknown_fields=True):
    provider: Slug
    name: ModelName
    type: ModelType
    display_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    context_window: Count | None = None
    max_output_tokens: Count | None = None
    max_input_tokens: Count | None = None
    dimensions: Count | None = None
    supports_tools: bool | None = None
    supports_vision: bool | None = None
    supports_reasoning: bool | None = None
    supports_prompt_caching: bool | None = None
    supports_json_output: bool | None = None
    supports_audio_input: bool | None = None
    created: date | None = None
    deprecation_date: date | None = None
    aliases: list[ModelName] = []


class TierIn(msgspec.Struct, forbid_unknown_fields=True):
    above_input_tokens: Count
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None


class PriceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Upstream USD per 1M tokens; a rate left out (null) is unknown, 0 is free."""

    model: str
    input: Decimal | None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    per_request: Decimal = Decimal(0)
    tiers: list[TierIn] = []
    effective_from: datetime | None = None
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "admin"


class PriceVersionOut(msgspec.Struct):
    id: int
    model_id: str
    effective_from: datetime
    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None
    per_request: str
    tiers: list[TierRates]
    source: str


class MarginSet(msgspec.Struct, forbid_unknown_fields=True):
    """Override DEFAULT_MARGIN for a provider or a model; `margin: null` ends the override."""

    scope: Literal["provider", "model"]
    target: str
    margin: Decimal | None
    effective_from: datetime | None = None


class MarginOut(msgspec.Struct):
    id: int
    scope: str
    target: str
    margin: str | None
    effective_from: datetime


class MarginList(msgspec.Struct):
    default_margin: str
    margins: list[MarginOut]


class ImportResult(msgspec.Struct):
    providers: int
    models: int
    models_changed: int
    aliases_added: int
    prices_added: int
    source: str
