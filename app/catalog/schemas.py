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
# "text", "image", "audio", "video", "file", "embedding", ... as the catalog's sources name them.
Modality = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
# The documented type of an exact rate served as a JSON number (see CatalogModel).
JsonNumber = float


class TierRates(msgspec.Struct):
    above_input_tokens: int
    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None
    cache_write_1h: str | None = None


class VariantRates(msgspec.Struct):
    """Rates that replace the base ones for calls on a service tier, in a region, or within a window
    of the UTC day [time_from, time_to) ("HH:MM"); null conditions do not restrict. Which applies:
    the one whose conditions hold that has the most of them (app/pricing.py, `Variant`)."""

    service_tier: str | None
    region: str | None
    time_from: str | None
    time_to: str | None
    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None
    cache_write_1h: str | None
    per_request: str
    tiers: list[TierRates]


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
    # 1-hour cache writes (`cache_write` is the 5-minute rate); null: unknown, such writes wait unrated.
    cache_write_1h: str | None = None
    # Service tiers, regions and times of day priced apart from the base rates.
    variants: list[VariantRates] = []


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
    # 1-hour cache writes (`cache_write` is the 5-minute rate); null: unknown, such writes wait unrated.
    cache_write_1h: str | None = None
    # Service tiers, regions and times of day priced apart from the base rates.
    variants: list[VariantRates] = []


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
    # What the model takes in and gives out ("text", "image", "audio", "video", "file", "embedding");
    # null: unknown.
    input_modalities: list[str] | None
    output_modalities: list[str] | None
    aliases: list[str]
    # Unix time of the model's release (or first listing); 0 when no source dates it.
    created: int
    deprecation_date: date | None
    # Where each known fact came from: {"context_window": "litellm 1.109.1", "created": "snapshot name"}.
    facts: dict[str, str]
    priced: bool
    # These hold Decimal values, written as JSON numbers digit for digit by service.ENCODER. They are
    # annotated `JsonNumber` only so that the OpenAPI document says "number": no float is ever made.
    input_cost_per_1m_tokens: JsonNumber | None
    output_cost_per_1m_tokens: JsonNumber | None
    cost_per_1k_input: JsonNumber | None
    cost_per_1k_output: JsonNumber | None
    pricing: Pricing | None
    upstream: Upstream | msgspec.UnsetType | None = msgspec.UNSET
    margin: str | msgspec.UnsetType = msgspec.UNSET
    # Retrieved by another name than its id (an alias, a dated snapshot): `id` is the name asked
    # for and `root` the model's id, as OpenAI answers.
    root: str | msgspec.UnsetType = msgspec.UNSET


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
    reasoning: bool | None
    prompt_caching: bool | None
    structured_output: bool | None
    input_modalities: list[str] | None
    output_modalities: list[str] | None


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
    # Where each known fact came from (see CatalogModel.facts).
    facts: dict[str, str]
    pricing: Pricing | None
    upstream: Upstream | msgspec.UnsetType | None = msgspec.UNSET
    margin: str | msgspec.UnsetType = msgspec.UNSET


class OpenAIModelList(msgspec.Struct):
    object: str
    data: list[OpenAIModel]


class ModelResolution(msgspec.Struct):
    """Which catalog model a reported string names, and why: `rule` is the rule that matched
    (see the README's model resolution), `matched` the string it matched after unwrapping."""

    query: str
    provider_hint: str | None
    model: str
    provider: str
    rule: str
    matched: str
    details: CatalogModel


class AliasCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A name only the operator knows (an Azure deployment, a private fine-tune) for a catalog model;
    with `provider`, it names the model only in calls that provider served."""

    alias: ModelName
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    provider: Slug | None = None


class AliasOut(msgspec.Struct):
    alias: str
    model: str
    provider: str | None
    source: Literal["catalog", "operator"]


class AliasList(msgspec.Struct):
    aliases: list[AliasOut]


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
    input_modalities: list[Modality] | None = None
    output_modalities: list[Modality] | None = None
    created: date | None = None
    deprecation_date: date | None = None
    aliases: list[ModelName] = []


class TierIn(msgspec.Struct, forbid_unknown_fields=True):
    above_input_tokens: Count
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None


# How a provider served a call (app/pricing.py SERVICE_TIERS); a variant prices a tier other than default.
ServiceTier = Literal["default", "batch", "flex", "priority"]
VariantTier = Literal["batch", "flex", "priority"]
# Where a call was served, where prices differ by it: a Bedrock geography (`us`, `eu`, `apac`, `global`,
# ...) or an Azure data zone (`us`, `eu`).
Region = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
TimeOfDay = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class RatesIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Upstream USD per 1M tokens (per request for `per_request`); a rate left out (null) is unknown, 0 is free."""

    input: Decimal | None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    per_request: Decimal = Decimal(0)
    tiers: list[TierIn] = []


class VariantIn(RatesIn, kw_only=True):
    """A whole rate set for calls on a service tier, in a region, or within a UTC window
    [time_from, time_to); at least one condition."""

    service_tier: VariantTier | None = None
    region: Region | None = None
    time_from: TimeOfDay | None = None
    time_to: TimeOfDay | None = None


class PriceCreate(RatesIn, kw_only=True):
    """A price version of `model`: its base rates, and variants for service tiers, regions, times of day."""

    model: str
    variants: Annotated[list[VariantIn], msgspec.Meta(max_length=100)] = []
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
    # 1-hour cache writes (`cache_write` is the 5-minute rate); null: unknown, such writes wait unrated.
    cache_write_1h: str | None = None
    # Service tiers, regions and times of day priced apart from the base rates.
    variants: list[VariantRates] = []


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


# Catalog sync (app/catalog/sync.py)

SyncSource = Literal["openrouter", "ollama", "litellm", "genai-prices"]


class SyncRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Which upstream sources to sync; a dry run reports the diff and writes nothing."""

    # Default: BILLING_SYNC_SOURCES (openrouter and ollama).
    sources: Annotated[list[SyncSource], msgspec.Meta(min_length=1, max_length=4)] | None = None
    dry_run: bool = False
    # Use the bundled curated OpenRouter list instead of the API (source "curated").
    curated: bool = False
    # An http(s) URL of a LiteLLM model_prices_and_context_window.json (default: LITELLM_PRICES).
    litellm_url: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", max_length=2000)] | None = None


class SyncPrice(msgspec.Struct):
    """Upstream USD per 1M tokens (per request for `per_request`); null rates: unknown or variable."""

    input: str | None
    output: str | None
    cached_input: str | None
    cache_write: str | None
    per_request: str
    tiers: list[TierRates]
    effective_from: datetime | None
    cache_write_1h: str | None = None
    # Service tiers, regions and times of day priced apart from the base rates.
    variants: list[VariantRates] = []


class SyncChange(msgspec.Struct, omit_defaults=True):
    id: str
    change: Literal["added", "updated", "price_changed", "deprecated"]
    fields: list[str] = []
    old_price: SyncPrice | None = None
    new_price: SyncPrice | None = None
    deprecation_date: date | None = None


class SourceSyncResult(msgspec.Struct):
    """One source's sync. `source` says where the data came from: api, curated or curated_fallback
    (OpenRouter), ollama or ollama_unreachable, file or url (LiteLLM), package (genai-prices, the installed
    package's bundled data); `detail` says why a fallback, or which data a package holds."""

    name: str
    source: str
    provider: str | None
    dry_run: bool
    models_added: int = 0
    models_updated: int = 0
    prices_added: int = 0
    models_deprecated: int = 0
    unchanged: int = 0
    detail: str | None = None
    errors: list[str] = []
    changes: list[SyncChange] = []


class SyncResult(msgspec.Struct):
    synced_at: datetime
    dry_run: bool
    ok: bool  # no source reported an error
    results: list[SourceSyncResult]


# Model pickers (app/catalog/listings.py): GET /api/models/openrouter[/embeddings] and /api/models/ollama, in the
# shapes front ends already read. Prices are the customer's (margin included) in USD, as exact decimal strings.

ListingSource = Literal["api", "curated", "curated_fallback"]


class TokenPricing(msgspec.Struct):
    """USD per token, margin included: what a token costs through this service ("0.00000021")."""

    prompt: str
    completion: str


class OpenRouterModel(msgspec.Struct, omit_defaults=True):
    id: str  # OpenRouter's id (`openai/gpt-4o-mini`)
    name: str
    provider: str  # the vendor's display name (`OpenAI`)
    context: int | None
    # Left out when the price is unknown or variable (OpenRouter's `openrouter/auto`).
    pricing: TokenPricing | msgspec.UnsetType = msgspec.UNSET


class OpenRouterModels(msgspec.Struct):
    """`source`: `api` (OpenRouter's live listing), `curated` (no OPENROUTER_API_KEY, or `curated=true`) or
    `curated_fallback` (OpenRouter did not answer, or answered nothing usable)."""

    models: list[OpenRouterModel]
    source: ListingSource
    total: int


class OpenRouterModelsAnswer(msgspec.Struct):
    success: bool
    data: OpenRouterModels


class OpenRouterEmbedding(msgspec.Struct):
    id: str
    name: str
    provider: str
    dimensions: int | None  # the output vector's length; null when no source states it
    context: int | None
    cost_per_million: str | None  # USD per 1M input tokens, margin included ("$0.028"); null: unpriced


class OpenRouterEmbeddings(msgspec.Struct):
    models: list[OpenRouterEmbedding]
    source: ListingSource
    total: int


class OpenRouterEmbeddingsAnswer(msgspec.Struct):
    success: bool
    data: OpenRouterEmbeddings


class OllamaModel(msgspec.Struct):
    id: str  # the tag, as Ollama names it (`qwen2.5:1.5b`)
    name: str
    parameter_size: str | None
    quantization: str | None
    family: str | None
    size_mb: int | None  # decimal megabytes, as `ollama list` shows them


class OllamaModels(msgspec.Struct, omit_defaults=True):
    """`source`: `ollama` (the server answered) or `ollama_unreachable` (it did not, or not usably: `error`)."""

    models: list[OllamaModel]
    source: Literal["ollama", "ollama_unreachable"]
    total: int
    error: str | msgspec.UnsetType = msgspec.UNSET


class OllamaModelsAnswer(msgspec.Struct):
    success: bool
    data: OllamaModels
