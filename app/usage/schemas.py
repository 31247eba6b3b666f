from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from app.catalog.schemas import Region, ServiceTier
from app.errors import ErrorObject

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ModelRef = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
ProviderRef = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
EndUser = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_BATCH = 1000
MAX_TAGS = 10


class UsageIn(msgspec.Struct, forbid_unknown_fields=True):
    """One upstream LLM call, as token fields or as the provider's own `usage` object (not both).
    `cached_input_tokens` and `cache_write_tokens` are parts of `input_tokens` (`cache_write_1h_tokens`
    part of `cache_write_tokens`); `reasoning_tokens` is part of `output_tokens`. `model` is the string
    the provider's response carried; `provider`, who served the call."""

    event_id: EventId
    model: ModelRef
    input_tokens: int | None = None
    output_tokens: int | None = None
    account_id: str | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    occurred_at: datetime | None = None
    authorization_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    metadata: dict[str, str] | None = None
    provider: ProviderRef | None = None
    # The provider's usage object exactly as its API returned it; `usage_format` one of
    # openai, openai-responses, anthropic, gemini, bedrock (default: told by the object's shape).
    usage: dict[str, Any] | None = None
    usage_format: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    # As the provider's response reported it (OpenAI's `service_tier`); `batch` for batch processing.
    service_tier: ServiceTier = "default"
    # Where prices differ by it; a Bedrock cross-region profile id (`us.anthropic....`) names its own.
    region: Region | None = None
    # Attribution: the customer's own user id, and a few short labels (feature, team, environment).
    end_user: EndUser | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)] | None = None


class UsageEvent(msgspec.Struct, omit_defaults=True):
    """A recorded event. `status` is `charged`, or `unrated`: stored, not charged (no cost, price
    version, margin or balance yet) until the catalog can price it, when it is charged once."""

    event_id: str
    account_id: str
    # The catalog model's id; for an unrated event whose model is unknown, the string reported.
    model: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    occurred_at: datetime
    recorded_at: datetime
    cost: str | None
    price_version: int | None
    margin: str | None
    balance_after: str | None
    overdrawn: bool
    authorization_id: str | None
    metadata: dict[str, str] | None
    status: Literal["charged", "unrated"]
    replay: bool = False
    cache_write_1h_tokens: int = 0
    # As reported, when it differs from `model`.
    reported_model: str | None = None
    provider: str | None = None
    usage: dict[str, Any] | None = None
    usage_format: str | None = None
    # Unrated: why (model_not_found or model_unpriced). Charged after waiting: since when it waited.
    unrated_reason: str | None = None
    unrated_since: datetime | None = None
    upstream_cost_usd: str | msgspec.UnsetType | None = msgspec.UNSET
    # Always given (`default` included): the tier the event was priced at.
    service_tier: str | msgspec.UnsetType = msgspec.UNSET
    region: str | None = None
    end_user: str | None = None
    tags: list[str] | None = None
    # The id of the API key that reported the event.
    api_key_id: str | None = None
    # Recorded past a spend limit (recorded all the same: the usage happened).
    over_limit: bool = False


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    # Items are checked one by one, so one malformed event does not reject the others.
    events: Annotated[list[dict], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResult(msgspec.Struct, omit_defaults=True):
    index: int
    status: Literal["created", "unrated", "duplicate", "error"]
    event_id: str | None = None
    event: UsageEvent | None = None
    error: ErrorObject | None = None


class BatchOut(msgspec.Struct):
    results: list[BatchResult]
    created: int
    duplicates: int
    errors: int
    unrated: int = 0


TOKEN_FIELDS = (
    "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cache_write_1h_tokens",
)  # fmt: skip


class Prepared(msgspec.Struct, frozen=True, gc=False):
    """A validated, priced event, ready to be written. (A msgspec Struct: immutable like a frozen
    dataclass, and much faster to make, which counts at a thousand per batch; BENCHMARKS.md.)

    An unrated event (`unrated_reason` set) has no price: `price_id`, `margin` and the amounts are
    None, and `model_id` is None too when the model string resolved to nothing."""

    account_id: str
    event_id: str
    model_id: str | None
    price_id: int | None
    margin: Decimal | None
    credits_per_usd: Decimal
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal | None
    upstream_cost_usd: Decimal | None
    credits_usd: Decimal | None
    occurred_at: datetime
    authorization_id: str | None
    metadata: dict[str, str] | None
    # The model string as reported when it is not the model's id (always, when unrated).
    reported_model: str | None
    provider: str | None
    usage: dict[str, Any] | None
    usage_format: str | None
    cache_write_1h_tokens: int
    occurred_at_given: bool
    unrated_reason: str | None = None
    service_tier: str = "default"
    region: str | None = None
    end_user: str | None = None
    tags: list[str] | None = None
    api_key_id: str | None = None

    def payload(self, with_time: bool) -> dict[str, Any]:
        """What a retry must repeat exactly. The time counts only when the retry states one: a
        retry that leaves occurred_at out means "when it happened", whatever the first copy said."""
        fields = {name: getattr(self, name) for name in TOKEN_FIELDS}
        fields |= {
            "model": self.reported_model or self.model_id,
            "provider": self.provider,
            "authorization_id": self.authorization_id,
            "metadata": self.metadata,
            "service_tier": self.service_tier,
            "region": self.region,
            "end_user": self.end_user,
            "tags": self.tags,
        }
        if with_time:
            fields["occurred_at"] = self.occurred_at
        return fields
