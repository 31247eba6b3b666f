from datetime import UTC, date, datetime, time
from decimal import (
    Decimal,
    localcontext,
)
from time import monotonic
from types import SimpleNamespace

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import InvalidRequest
from app.money import RATIOS, SUMS, money, subtract
from app.pagination import decode_cursor, encode_cursor
from app.reports import repository
from app.reports.repository import EVERYONE, Attribution
from app.reports.schemas import (
    GROUP_KEYS,
    OPTIONAL_KEYS,
    TOKEN_METRICS,
    TrialBalance,
    TrialBalanceRow,
    UnratedLine,
    UsageReport,
    UsageRow,
)
from app.times import utc
from app.usage import repository as usage_repository

PERCENT = Decimal("0.01")
SUMMED = ("events", *TOKEN_METRICS, "cost", "upstream_cost_usd", "credits_usd", "reversed")
# The type of each group key's value in a cursor.
CURSOR_TYPES = {
    "account": str, "model": str, "provider": str, "day": date, "month": date, "end_user": str, "tag": str,
    "api_key": str,
}  # fmt: skip


def parse_group_by(values: list[str] | None) -> list[str]:
    """`group_by`, repeated (`group_by=account&group_by=model`), comma-separated (`account,model`) or both, in
    the order given."""
    keys = [key.strip() for value in values or () for key in value.split(",") if key.strip()]
    for key in keys:
        if key not in GROUP_KEYS:
            raise InvalidRequest(
                f"Unknown `group_by` value {key!r}; use any of {', '.join(GROUP_KEYS)}", param="group_by"
            )
    twice = next((key for index, key in enumerate(keys) if key in keys[:index]), None)
    if twice is not None:
        raise InvalidRequest(f"`group_by` names {twice!r} twice", param="group_by")
    return keys


def parse_bound(raw: str | None, name: str) -> datetime | None:
    """A date (`2026-11-01`, midnight UTC) or an RFC 3339 time with its offset."""
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), UTC)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"`{name}` must be a date or an RFC 3339 time", param=name) from None
    return utc(value, name)


def whole_day(value: datetime | None) -> bool:
    return value is None or value.astimezone(UTC).time() == time()


def percent(part: Decimal, whole: Decimal) -> str:
    return str(RATIOS.divide(RATIOS.multiply(part, 100), whole).quantize(PERCENT, context=RATIOS))


def usage_row(row, group_by: list[str]) -> UsageRow:
    credits_usd, upstream = row.credits_usd, row.upstream_cost_usd
    margin = subtract(credits_usd, upstream)
    keys = {}
    for key in group_by:
        value = getattr(row, key)
        if key == "month":
            value = value.strftime("%Y-%m")
        elif key in OPTIONAL_KEYS:
            value = value or None  # `''` in the rollups' keys
        keys[key] = value
    return UsageRow(
        events=int(row.events),
        **{name: int(getattr(row, name)) for name in TOKEN_METRICS},
        credits=money(row.cost),
        credits_reversed=money(row.reversed),
        credits_usd=money(credits_usd),
        upstream_cost_usd=money(upstream),
        gross_margin_usd=money(margin),
        gross_margin_pct=percent(margin, credits_usd) if credits_usd else None,
        **keys,
    )


async def usage_report(
    conn: AsyncConnection,
    group_by: list[str],
    account_id: str | None,
    start: datetime | None,
    end: datetime | None,
    cursor: str | None = None,
    limit: int | None = None,
    only: Attribution = EVERYONE,
) -> UsageReport:
    """A page of `limit` groups after `cursor` (all groups without a limit), and the totals of the
    whole report on every page: of the events in it, each counted once, even grouped by tag."""
    check_range(start, end)
    check_attribution(group_by, only)
    after = decode_cursor(cursor, *(CURSOR_TYPES[key] for key in group_by)) if group_by else None
    fetch = None if limit is None else limit + 1
    # Whole UTC days come from the rollups; any other range is summed from the events.
    if whole_day(start) and whole_day(end):
        lo = start.astimezone(UTC).date() if start else date.min
        hi = end.astimezone(UTC).date() if end else date.max

        async def sums(keys: list[str], after: tuple | None = None, limit: int | None = None) -> list:
            return await repository.usage_from_rollups(conn, keys, account_id, lo, hi, after, limit, only)

        source = "rollups"
    else:

        async def sums(keys: list[str], after: tuple | None = None, limit: int | None = None) -> list:
            return await repository.usage_from_events(conn, keys, account_id, start, end, after, limit, only)

        source = "events"
    rows = await sums(group_by, after, fetch)
    more = fetch is not None and len(rows) > limit
    rows = rows[:limit]
    # A report that fits on its first page is totalled from its rows; otherwise the totals are read.
    # Rows by tag count an event under each of its tags, rows by end user leave out events naming
    # none: their sum is not the total.
    summed = after is None and not more and not {"tag", "end_user"} & {*group_by}
    totals = total_of(rows) if summed else next(iter(await sums([])), None)
    empty = UsageRow(0, 0, 0, 0, 0, 0, *[money(Decimal(0))] * 5, None)
    waiting = await usage_repository.unrated_totals(conn, account_id, start, end, only.given())
    return UsageReport(
        group_by=group_by,
        start=start,
        end=end,
        source=source,
        rows=[usage_row(row, group_by) for row in rows],
        totals=usage_row(totals, []) if totals else empty,
        unrated=UnratedLine(int(waiting.events), *(int(getattr(waiting, name)) for name in TOKEN_METRICS)),
        next_cursor=encode_cursor(*(getattr(rows[-1], key) for key in group_by)) if more else None,
    )


def total_of(rows: list) -> SimpleNamespace | None:
    """The grand total of a report. Every metric is a sum, so it is the sum of the groups: exact (the
    Decimals are added without rounding), and the rollups are read once instead of twice."""
    if not rows:
        return None
    with localcontext(SUMS):
        return SimpleNamespace(**{name: sum(getattr(row, name) for row in rows) for name in SUMMED})


def check_attribution(group_by: list[str], only: Attribution) -> None:
    """Tags are summed apart from end users and keys (an event has one of each, but many tags), so a
    report cannot take both."""
    named = {*group_by, *only.given()}
    if "tag" in named and {"end_user", "api_key"} & named:
        other = "end_user" if "end_user" in named else "api_key"
        raise InvalidRequest(
            f"A report by tag cannot also group or filter by `{other}`; ask for one, then the other",
            param="group_by" if other in group_by else other,
        )


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("`from` must be before `to`", param="from")


async def trial_balance(
    conn: AsyncConnection, account_id: str | None, start: datetime | None, end: datetime | None
) -> TrialBalance:
    check_range(start, end)
    rows = await repository.trial_balance(conn, account_id, start, end)
    fields = ("opening", "grants", "usage", "adjustments", "reversals", "expirations", "closing")
    return TrialBalance(
        start=start,
        end=end,
        accounts=[TrialBalanceRow(row.account_id, *(money(getattr(row, f)) for f in fields)) for row in rows],
    )


# Spend is read from the database at a scrape, not counted in each worker, so every worker answers the
# same totals; read at most this often (scrapes come every few seconds, the sums move slowly).
SPEND_MAX_AGE_SECONDS = 30.0
SPEND_METRICS = (
    ("billing_credits_charged_total", "credits", "Credits charged for usage, by provider and model"),
    ("billing_credits_reversed_total", "reversed", "Credits given back by reversals, by provider and model"),
    (
        "billing_upstream_cost_usd_total",
        "upstream_usd",
        "Upstream cost in USD of the usage charged, by provider and model",
    ),
)


class Spend:
    """The spend metrics' text, read from the rollups at most every SPEND_MAX_AGE_SECONDS."""

    def __init__(self) -> None:
        self.text = b""
        self.read_at: float | None = None

    async def exposition(self, engine: AsyncEngine) -> bytes:
        if self.read_at is None or monotonic() - self.read_at >= SPEND_MAX_AGE_SECONDS:
            async with engine.connect() as conn:
                rows = await repository.spend_by_model(conn)
            self.text = spend_exposition(rows).encode()
            self.read_at = monotonic()
        return self.text


def spend_exposition(rows: list) -> str:
    """Counters labelled by provider and model. Rollups name catalog models only (a foreign key), so the
    label set is bounded by the catalog. Values are written from the exact sums, not through a float."""
    lines = []
    for name, column, help_text in SPEND_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for row in rows:
            provider = row.model_id.split("/", 1)[0]
            labels = f'provider="{label(provider)}",model="{label(row.model_id)}"'
            lines.append(f"{name}{{{labels}}} {format(getattr(row, column).normalize(), 'f')}")
    return "\n".join(lines) + "\n"


def label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
