from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from app.catalog.schemas import Region, ServiceTier
from app.usage.schemas import MAX_TAGS, EndUser, Tag

AccountId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Status = Literal["active", "suspended", "closed"]
EntryKind = Literal["grant", "usage", "adjustment", "expiration", "reversal"]


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    id: AccountId | None = None
    overdraft_limit: Decimal = Decimal(0)


class AccountUpdate(msgspec.Struct, forbid_unknown_fields=True):
    # Credits; balance.low fires when the balance falls to it. null turns balance.low off.
    low_balance_threshold: Decimal | msgspec.UnsetType | None = msgspec.UNSET


class Account(msgspec.Struct):
    id: str
    name: str
    status: str
    # Amounts are decimal strings with 9 places, e.g. "12.345000000".
    overdraft_limit: str
    balance: str
    pending: str
    available: str
    created_at: datetime
    low_balance_threshold: str | None = None


class GrantCreate(msgspec.Struct, forbid_unknown_fields=True):
    amount: Decimal
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    expires_at: datetime | None = None


class Grant(msgspec.Struct):
    id: int
    account_id: str
    amount: str
    remaining: str
    description: str | None
    expires_at: datetime | None
    expired_at: datetime | None
    created_at: datetime
    # Made by a recurring grant: its schedule, and the start of the period it is for.
    schedule_id: str | None
    period_start: datetime | None


class GrantCreated(Grant, omit_defaults=True):
    balance_after: str
    replay: bool = False


class Balance(msgspec.Struct):
    account_id: str
    balance: str
    pending: str
    available: str
    overdraft_limit: str


class LedgerEntry(msgspec.Struct):
    id: int
    account_id: str
    kind: str
    amount: str
    balance_after: str
    counterparty: str
    event_id: str | None
    grant_id: int | None
    description: str | None
    created_at: datetime


class AuthorizationCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Hold the worst-case cost of a call before making it: `max_output_tokens` of output. Tokens as
    token fields or as a provider's `usage` object (its output counts as the maximum), as in a usage
    event; `provider`, who will serve the call."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    input_tokens: int | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    account_id: str | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)] = 600
    provider: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    usage: dict[str, Any] | None = None
    usage_format: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    # The tier and region the call will be served on, priced as a usage event's are.
    service_tier: ServiceTier = "default"
    region: Region | None = None
    # Who the call is for, as its usage event will say: held against the spend limits that apply.
    end_user: EndUser | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)] | None = None


class Authorization(msgspec.Struct):
    id: str
    account_id: str
    model: str
    amount: str
    status: Literal["pending", "settled", "released", "expired"]
    input_tokens: int
    max_output_tokens: int
    price_version: int
    created_at: datetime
    expires_at: datetime
    released_at: datetime | None
    settled_at: datetime | None
    settled_amount: str | None
    event_id: str | None
    available: str | None = None
    service_tier: str = "default"
    region: str | None = None
    # Only a retry's answer (the same `Idempotency-Key`) carries it, as `true`.
    replay: bool | msgspec.UnsetType = msgspec.UNSET


class AdjustmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A correction by an operator: positive credits the account, negative debits it."""

    amount: Decimal
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Adjustment(msgspec.Struct, omit_defaults=True):
    account_id: str
    amount: str
    reason: str
    balance_after: str
    created_at: datetime
    replay: bool = False


class ReversalCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Give back the credits charged for a usage event; the event itself stays as it was."""

    event_id: str
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Reversal(msgspec.Struct, omit_defaults=True):
    account_id: str
    event_id: str
    amount: str
    reason: str
    balance_after: str
    created_at: datetime
    replay: bool = False
