from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

# What an endpoint can subscribe to; "*" subscribes to all of them, including those added later.
EVENT_TYPES = (
    "balance.low", "balance.depleted", "account.overdrawn", "usage.unrated", "grant.expiring", "grant.expired",
    "authorization.expired", "spend_limit.reached",
)  # fmt: skip
ALL_EVENTS = "*"
DeliveryStatus = Literal["pending", "succeeded", "failed"]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Description = Annotated[str, msgspec.Meta(max_length=500)]
Events = Annotated[list[str], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES) + 1)]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    events: Events
    description: Description | None = None


class WebhookUpdate(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: Events | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class Webhook(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    description: str | None
    disabled: bool
    created_at: datetime
    updated_at: datetime


class CreatedWebhook(Webhook):
    secret: str
    """The signing secret (Standard Webhooks `whsec_` form), shown only in this response."""


class Delivery(msgspec.Struct):
    id: int
    endpoint_id: str
    account_id: str
    event_id: str
    """The `webhook-id` header: the same on every attempt."""
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    """The receiver's HTTP status on the last attempt; null when it gave none (refused, timed out)."""
    last_response: str | None
    """The start of the receiver's answer to the last attempt."""
    last_error: str | None
    """Why the last attempt failed, when it did."""
    next_attempt_at: datetime | None


class Notification(msgspec.Struct, frozen=True):
    """An event for the outbox, written by the statement that makes the change it announces."""

    account_id: str
    type: str
    payload: dict[str, Any]
