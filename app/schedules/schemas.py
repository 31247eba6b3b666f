from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

Period = Literal["day", "week", "month"]
Rollover = Literal["none", "all", "capped"]


class ScheduleCreate(msgspec.Struct, forbid_unknown_fields=True):
    """`amount` credits each `period` from `starts_at` (default: now) until `ends_at` (default: for good).
    `rollover`: `none`, each grant expires when its period ends; `all`, grants do not expire (unless
    `grant_ttl_seconds` says how long each lasts); `capped`, each expires when its period ends and the
    next grant adds back what expired, up to `rollover_cap` credits."""

    amount: Decimal
    period: Period
    rollover: Rollover = "none"
    rollover_cap: Decimal | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    grant_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=10 * 366 * 86400)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class Schedule(msgspec.Struct):
    id: str
    account_id: str
    amount: str
    period: str
    rollover: str
    rollover_cap: str | None
    starts_at: datetime
    ends_at: datetime | None
    grant_ttl_seconds: int | None
    description: str | None
    # The start of the next period a grant will be issued for; null once the schedule has ended.
    next_grant_at: datetime | None
    created_at: datetime
    ended_at: datetime | None


class ScheduleList(msgspec.Struct):
    data: list[Schedule]
