"""The service's answers as typed records. Credit and USD amounts are `Decimal`: the service sends them
as decimal strings (catalog rates as JSON numbers), and both decode digit for digit, never via float.

Fields the service may leave out have defaults, and fields it adds later are ignored, so a newer
service does not break an older client."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import msgspec

MAX_BATCH = 1000  # events in one POST /usage/batch
T = TypeVar("T")


def new_event_id() -> str:
    """An `event_id` made on the client, so that every retry of the event carries the same one."""
    return f"evt_{uuid.uuid4().hex}"


class ErrorObject(msgspec.Struct):
    message: str
    type: str
    code: str
    param: str | None = None


# Usage


class UsageEventIn(msgspec.Struct, omit_defaults=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream call to record. Token fields, or the provider's `usage` object with `usage_format`."""

    model: str
    event_id: str = msgspec.field(default_factory=new_event_id)
    account_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    occurred_at: datetime | None = None
    authorization_id: str | None = None
    metadata: dict[str, str] | None = None
    provider: str | None = None
    usage: dict[str, Any] | None = None
    usage_format: str | None = None
    service_tier: str | None = None
    region: str | None = None
    # Attribution: the customer's own user id, and a few short labels.
    end_user: str | None = None
    tags: list[str] | None = None


class UsageEvent(msgspec.Struct, kw_only=True):
    """A recorded event: `charged` (with its `cost`), or `unrated` (stored, charged once the catalog can price it)."""

    event_id: str
    account_id: str
    model: str | None
    status: Literal["charged", "unrated"]
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    occurred_at: datetime | None = None
    recorded_at: datetime | None = None
    cost: Decimal | None = None
    price_version: int | None = None
    margin: Decimal | None = None
    balance_after: Decimal | None = None
    overdrawn: bool = False
    authorization_id: str | None = None
    metadata: dict[str, str] | None = None
    replay: bool = False
    reported_model: str | None = None
    provider: str | None = None
    usage: dict[str, Any] | None = None
    usage_format: str | None = None
    unrated_reason: str | None = None
    unrated_since: datetime | None = None
    upstream_cost_usd: Decimal | None = None
    service_tier: str | None = None
    region: str | None = None
    end_user: str | None = None
    tags: list[str] | None = None
    api_key_id: str | None = None
    # Recorded past a spend limit.
    over_limit: bool = False


class BatchResult(msgspec.Struct, kw_only=True):
    """One event of a batch: `created`, `unrated`, `duplicate` (recorded before: a retry) or `error`."""

    index: int
    status: Literal["created", "unrated", "duplicate", "error"]
    event_id: str | None = None
    event: UsageEvent | None = None
    error: ErrorObject | None = None


class BatchOut(msgspec.Struct, kw_only=True):
    results: list[BatchResult]
    created: int
    duplicates: int
    errors: int
    unrated: int = 0


class UsagePage(msgspec.Struct):
    data: list[UsageEvent]
    next_cursor: str | None = None


# Estimates


class Line(msgspec.Struct):
    kind: str
    tokens: int | None
    rate_per_1m: Decimal
    credits: Decimal


class Funds(msgspec.Struct):
    account_id: str
    available: Decimal
    covered: bool


class Estimate(msgspec.Struct, kw_only=True):
    model: str
    credits: Decimal
    price_version: int
    effective_from: str
    breakdown: list[Line]
    tier: int | None = None
    service_tier: str | None = None
    region: str | None = None
    account: Funds | None = None
    upstream_cost_usd: Decimal | None = None
    margin: Decimal | None = None


class Unavailable(msgspec.Struct):
    model: str
    error: ErrorObject


class Comparison(msgspec.Struct):
    """The same call on several models, cheapest first; those that cannot be priced in `unavailable`."""

    estimates: list[Estimate]
    unavailable: list[Unavailable]


# Accounts, grants, ledger, holds


class Account(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: str
    overdraft_limit: Decimal
    balance: Decimal
    pending: Decimal
    available: Decimal
    created_at: datetime
    low_balance_threshold: Decimal | None = None


class AccountPage(msgspec.Struct):
    data: list[Account]
    next_cursor: str | None = None


class Balance(msgspec.Struct, kw_only=True):
    account_id: str
    balance: Decimal
    pending: Decimal
    available: Decimal
    overdraft_limit: Decimal


class Grant(msgspec.Struct, kw_only=True):
    id: int
    account_id: str
    amount: Decimal
    remaining: Decimal
    description: str | None = None
    expires_at: datetime | None = None
    expired_at: datetime | None = None
    created_at: datetime | None = None
    # Made by a recurring grant: its schedule and the start of its period.
    schedule_id: str | None = None
    period_start: datetime | None = None
    # Only in the answer to a grant's creation.
    balance_after: Decimal | None = None
    replay: bool = False


class GrantPage(msgspec.Struct):
    data: list[Grant]
    next_cursor: str | None = None


class LedgerEntry(msgspec.Struct, kw_only=True):
    id: int
    account_id: str
    kind: str
    amount: Decimal
    balance_after: Decimal
    counterparty: str
    event_id: str | None = None
    grant_id: int | None = None
    description: str | None = None
    created_at: datetime | None = None


class LedgerPage(msgspec.Struct):
    data: list[LedgerEntry]
    next_cursor: str | None = None


class Adjustment(msgspec.Struct, kw_only=True):
    account_id: str
    amount: Decimal
    reason: str
    balance_after: Decimal
    created_at: datetime
    replay: bool = False


class Reversal(msgspec.Struct, kw_only=True):
    account_id: str
    event_id: str
    amount: Decimal
    reason: str
    balance_after: Decimal
    created_at: datetime
    replay: bool = False


class Authorization(msgspec.Struct, kw_only=True):
    """A hold: `pending` until the usage event naming it settles it, it is released, or it expires."""

    id: str
    account_id: str
    model: str
    amount: Decimal
    status: Literal["pending", "settled", "released", "expired"]
    input_tokens: int
    max_output_tokens: int
    price_version: int
    created_at: datetime
    expires_at: datetime
    released_at: datetime | None = None
    settled_at: datetime | None = None
    settled_amount: Decimal | None = None
    event_id: str | None = None
    available: Decimal | None = None
    service_tier: str = "default"
    region: str | None = None
    replay: bool = False


# Reports


class UsageRow(msgspec.Struct, kw_only=True):
    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    credits: Decimal
    credits_reversed: Decimal
    credits_usd: Decimal
    upstream_cost_usd: Decimal
    gross_margin_usd: Decimal
    gross_margin_pct: Decimal | None = None
    account: str | None = None
    model: str | None = None
    provider: str | None = None
    day: date | None = None
    month: str | None = None
    end_user: str | None = None
    tag: str | None = None
    api_key: str | None = None


class UnratedLine(msgspec.Struct, kw_only=True):
    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class UsageReport(msgspec.Struct, kw_only=True, rename={"start": "from", "end": "to"}):
    group_by: list[str]
    rows: list[UsageRow]
    totals: UsageRow
    unrated: UnratedLine
    start: datetime | None = None
    end: datetime | None = None
    source: str | None = None
    next_cursor: str | None = None


class TrialBalanceRow(msgspec.Struct, kw_only=True):
    account_id: str
    opening: Decimal
    grants: Decimal
    usage: Decimal
    adjustments: Decimal
    reversals: Decimal
    expirations: Decimal
    closing: Decimal


class TrialBalance(msgspec.Struct, kw_only=True, rename={"start": "from", "end": "to"}):
    accounts: list[TrialBalanceRow]
    start: datetime | None = None
    end: datetime | None = None


# Catalog


class TierRates(msgspec.Struct, kw_only=True):
    above_input_tokens: int
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None


class VariantRates(msgspec.Struct, kw_only=True):
    service_tier: str | None = None
    region: str | None = None
    time_from: str | None = None
    time_to: str | None = None
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    per_request: Decimal = Decimal(0)
    tiers: list[TierRates] = []


class Pricing(msgspec.Struct, kw_only=True):
    """Credit rates per 1M tokens, margin included (or, as `upstream` and in price versions, the
    provider's USD rates)."""

    currency: str | None = None
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    per_request: Decimal = Decimal(0)
    tiers: list[TierRates] = []
    variants: list[VariantRates] = []
    unit: str | None = None
    price_version: int | None = None
    effective_from: datetime | None = None
    source: str | None = None


class CatalogModel(msgspec.Struct, kw_only=True):
    id: str
    name: str
    provider: str
    type: str
    priced: bool
    display_name: str | None = None
    context_window: int | None = None
    context_limit: int | None = None
    max_output_tokens: int | None = None
    max_input_tokens: int | None = None
    dimensions: int | None = None
    supports_tools: bool | None = None
    supports_vision: bool | None = None
    supports_reasoning: bool | None = None
    supports_prompt_caching: bool | None = None
    supports_json_output: bool | None = None
    input_modalities: list[str] | None = None
    output_modalities: list[str] | None = None
    aliases: list[str] = []
    created: int = 0
    deprecation_date: date | None = None
    facts: dict[str, str] = {}
    input_cost_per_1m_tokens: Decimal | None = None
    output_cost_per_1m_tokens: Decimal | None = None
    cost_per_1k_input: Decimal | None = None
    cost_per_1k_output: Decimal | None = None
    pricing: Pricing | None = None
    upstream: Pricing | None = None
    margin: Decimal | None = None
    root: str | None = None


class ModelList(msgspec.Struct):
    models: list[CatalogModel]
    total: int


class Provider(msgspec.Struct, kw_only=True):
    id: str
    name: str
    configured: bool
    model_count: int
    language_models: int = 0
    embedding_models: int = 0


class ProviderList(msgspec.Struct):
    providers: list[Provider]


class ModelResolution(msgspec.Struct, kw_only=True):
    query: str
    model: str
    provider: str
    rule: str
    matched: str
    details: CatalogModel
    provider_hint: str | None = None


class Capabilities(msgspec.Struct, kw_only=True):
    vision: bool | None = None
    function_calling: bool | None = None
    reasoning: bool | None = None
    prompt_caching: bool | None = None
    structured_output: bool | None = None
    input_modalities: list[str] | None = None
    output_modalities: list[str] | None = None


class OpenAIModel(msgspec.Struct, kw_only=True):
    id: str
    object: str
    created: int
    owned_by: str
    root: str | None = None
    display_name: str | None = None
    type: str | None = None
    context_length: int | None = None
    max_output_tokens: int | None = None
    capabilities: Capabilities | None = None
    pricing: Pricing | None = None
    upstream: Pricing | None = None
    margin: Decimal | None = None


class OpenAIModelList(msgspec.Struct):
    object: str
    data: list[OpenAIModel]


# Catalog administration


class PriceVersion(Pricing, kw_only=True):
    """A price version: the provider's USD rates per 1M tokens from `effective_from` on."""

    id: int
    model_id: str


class PriceVersionPage(msgspec.Struct):
    data: list[PriceVersion]
    next_cursor: str | None = None


class Margin(msgspec.Struct, kw_only=True):
    id: int
    scope: str
    target: str
    margin: Decimal | None
    effective_from: datetime


class MarginList(msgspec.Struct):
    default_margin: Decimal
    margins: list[Margin]


class Alias(msgspec.Struct, kw_only=True):
    alias: str
    model: str
    source: str
    provider: str | None = None


class AliasList(msgspec.Struct):
    aliases: list[Alias]


class ImportResult(msgspec.Struct, kw_only=True):
    providers: int
    models: int
    models_changed: int
    aliases_added: int
    prices_added: int
    source: str


class SyncChange(msgspec.Struct, kw_only=True):
    id: str
    change: str
    fields: list[str] = []
    old_price: Pricing | None = None
    new_price: Pricing | None = None
    deprecation_date: date | None = None


class SourceSyncResult(msgspec.Struct, kw_only=True):
    name: str
    source: str
    dry_run: bool
    provider: str | None = None
    models_added: int = 0
    models_updated: int = 0
    prices_added: int = 0
    models_deprecated: int = 0
    unchanged: int = 0
    detail: str | None = None
    errors: list[str] = []
    changes: list[SyncChange] = []


class SyncResult(msgspec.Struct, kw_only=True):
    synced_at: datetime
    dry_run: bool
    ok: bool
    results: list[SourceSyncResult]


# Model pickers: USD prices per token, margin included


class Envelope(msgspec.Struct, Generic[T]):
    """`{"success": true, "data": ...}`, the model pickers' shape."""

    success: bool
    data: T


class TokenPricing(msgspec.Struct):
    prompt: Decimal
    completion: Decimal


class OpenRouterModel(msgspec.Struct, kw_only=True):
    id: str
    name: str
    provider: str
    context: int | None = None
    pricing: TokenPricing | None = None


class OpenRouterModels(msgspec.Struct, kw_only=True):
    models: list[OpenRouterModel]
    source: str
    total: int


class OpenRouterEmbedding(msgspec.Struct, kw_only=True):
    id: str
    name: str
    provider: str
    dimensions: int | None = None
    context: int | None = None
    cost_per_million: str | None = None  # as displayed: "$0.028"


class OpenRouterEmbeddings(msgspec.Struct, kw_only=True):
    models: list[OpenRouterEmbedding]
    source: str
    total: int


class OllamaModel(msgspec.Struct, kw_only=True):
    id: str
    name: str
    parameter_size: str | None = None
    quantization: str | None = None
    family: str | None = None
    size_mb: int | None = None


class OllamaModels(msgspec.Struct, kw_only=True):
    models: list[OllamaModel]
    source: str
    total: int
    error: str | None = None


# API keys


class ApiKey(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    account_id: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    # The secret: only in the answer to the key's creation.
    key: str | None = None


class ApiKeyPage(msgspec.Struct):
    data: list[ApiKey]
    next_cursor: str | None = None


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] = {}


class AuditPage(msgspec.Struct):
    data: list[AuditEntry]
    next_cursor: str | None = None


# Health


class Health(msgspec.Struct):
    status: str


# Spend limits


class SpendLimit(msgspec.Struct, kw_only=True):
    """A limit and its current period: `spent` (less reversals), `pending` (open holds), `remaining`."""

    id: str
    account_id: str
    scope: Literal["account", "end_user", "tag", "api_key"]
    value: str | None
    amount: Decimal
    period: Literal["day", "week", "month", "none"]
    created_at: datetime
    period_start: datetime | None
    period_end: datetime | None
    spent: Decimal
    pending: Decimal
    remaining: Decimal
    reached: bool


class SpendLimitList(msgspec.Struct):
    data: list[SpendLimit]


# Recurring grants


class GrantSchedule(msgspec.Struct, kw_only=True):
    id: str
    account_id: str
    amount: Decimal
    period: Literal["day", "week", "month"]
    rollover: Literal["none", "all", "capped"]
    rollover_cap: Decimal | None
    starts_at: datetime
    ends_at: datetime | None
    grant_ttl_seconds: int | None
    description: str | None
    next_grant_at: datetime | None
    created_at: datetime
    ended_at: datetime | None


class GrantScheduleList(msgspec.Struct):
    data: list[GrantSchedule]


# Webhooks


class Webhook(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    description: str | None
    disabled: bool
    created_at: datetime
    updated_at: datetime
    # The signing secret: only in the answer to the endpoint's creation.
    secret: str | None = None


class WebhookPage(msgspec.Struct):
    data: list[Webhook]
    next_cursor: str | None = None


class Delivery(msgspec.Struct, kw_only=True):
    id: int
    endpoint_id: str
    account_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None = None
    last_status: int | None = None
    last_response: str | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class DeliveryPage(msgspec.Struct):
    data: list[Delivery]
    next_cursor: str | None = None
