from datetime import date, datetime

import msgspec

GROUP_KEYS = ("account", "model", "provider", "day", "month", "end_user", "tag", "api_key")
# A key a group may have no value for: events recorded before their reporting key was.
OPTIONAL_KEYS = ("api_key",)
TOKEN_METRICS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
MONEY_METRICS = ("credits", "credits_reversed", "credits_usd", "upstream_cost_usd", "gross_margin_usd")


class UsageRow(msgspec.Struct, omit_defaults=True):
    """One group. `credits` are charged credits; `credits_usd` their value in USD; the gross margin
    is that value less the upstream cost. Reversals are shown apart, on the day of the event."""

    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    credits: str
    credits_reversed: str
    credits_usd: str
    upstream_cost_usd: str
    gross_margin_usd: str
    gross_margin_pct: str | None
    account: str | msgspec.UnsetType = msgspec.UNSET
    model: str | msgspec.UnsetType = msgspec.UNSET
    provider: str | msgspec.UnsetType = msgspec.UNSET
    day: date | msgspec.UnsetType = msgspec.UNSET
    month: str | msgspec.UnsetType = msgspec.UNSET
    # By end user, events that name none are in no row; by tag, an event counts once under each of its
    # tags, and events without tags are in no row. The totals count every event once.
    end_user: str | msgspec.UnsetType = msgspec.UNSET
    tag: str | msgspec.UnsetType = msgspec.UNSET
    api_key: str | msgspec.UnsetType | None = msgspec.UNSET


class UnratedLine(msgspec.Struct):
    """Usage in the report's range that waits unrated (no price yet): counted here, in no row or
    total, until it is rated and charged."""

    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class UsageReport(msgspec.Struct, rename={"start": "from", "end": "to"}):
    group_by: list[str]
    start: datetime | None
    end: datetime | None
    source: str
    rows: list[UsageRow]
    # Of the whole report, not of this page.
    totals: UsageRow
    unrated: UnratedLine
    # Pass it as `cursor` for the next page of rows; null on the last page.
    next_cursor: str | None = None


class TrialBalanceRow(msgspec.Struct):
    account_id: str
    opening: str
    grants: str
    usage: str
    adjustments: str
    reversals: str
    expirations: str
    closing: str


class TrialBalance(msgspec.Struct, rename={"start": "from", "end": "to"}):
    start: datetime | None
    end: datetime | None
    accounts: list[TrialBalanceRow]
