from datetime import datetime
from typing import Annotated, Literal

import msgspec

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MAX_BATCH = 1000


class UsageIn(msgspec.Struct, forbid_unknown_fields=True):
    """One upstream LLM call. `cached_input_tokens` and `cache_write_tokens` are parts of
    `input_tokens`; `reasoning_tokens` is part of `output_tokens`."""

    event_id: EventId
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    input_tokens: int
    output_tokens: int = 0
    account_id: str | None = None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    occurred_at: datetime | None = None
    authorization_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    metadata: dict[str, str] | None = None


class UsageEvent(msgspec.Struct, omit_defaults=True):
    event_id: str
    account_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    occurred_at: datetime
    recorded_at: datetime
    cost: str
    price_version: int
    margin: str
    balance_after: str
    overdrawn: bool
    authorization_id: str | None
    metadata: dict[str, str] | None
    replay: bool = False
    upstream_cost_usd: str | msgspec.UnsetType = msgspec.UNSET


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    # Items are checked one by one, so one malformed event does not reject the others.
    events: Annotated[list[dict], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ErrorObject(msgspec.Struct, omit_defaults=True):
    message: str
    type: str
    code: str
    param: str | None = None


class BatchResult(msgspec.Struct, omit_defaults=True):
    index: int
    status: Literal["created", "duplicate", "error"]
    event_id: str | None = None
    event: UsageEvent | None = None
    error: ErrorObject | None = None


class BatchOut(msgspec.Struct):
    results: list[BatchResult]
    created: int
    duplicates: int
    errors: int
