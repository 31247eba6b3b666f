from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

Scope = Literal["account", "end_user", "tag", "api_key"]
Period = Literal["day", "week", "month", "none"]


class LimitCreate(msgspec.Struct, forbid_unknown_fields=True):
    """At most `amount` credits per `period` for the account (`scope: account`), or for one end user, tag
    or reporting key of it (`value`: the end user's id, the tag, the key's id)."""

    scope: Scope
    amount: Decimal
    period: Period
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class SpendLimit(msgspec.Struct):
    """A limit and where its current period stands: `spent` is what usage that occurred in the period
    was charged (less reversals), `pending` what open holds for it keep, `remaining` what is left of
    `amount` after both (0 once reached). `period_start` is null for `period: none`."""

    id: str
    account_id: str
    scope: str
    value: str | None
    amount: str
    period: str
    created_at: datetime
    period_start: datetime | None
    period_end: datetime | None
    spent: str
    pending: str
    remaining: str
    reached: bool


class LimitList(msgspec.Struct):
    data: list[SpendLimit]
