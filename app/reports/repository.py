"""Report queries. Group keys and metrics come from fixed fragments below, never from user text;
values are always bound parameters."""

from datetime import MAXYEAR, UTC, date, datetime

import msgspec
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.usage.repository import ROLLUP_COLUMNS, ROLLUP_SUMS

EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
# Group key -> (expression over a rollup row r, expression over usage_events e).
GROUPS = {
    "account": ("r.account_id", "e.account_id"),
    "model": ("r.model_id", "e.model_id"),
    "provider": ("split_part(r.model_id, '/', 1)", "split_part(e.model_id, '/', 1)"),
    "day": ("r.day", "(e.occurred_at AT TIME ZONE 'UTC')::date"),
    "month": ("r.month", "date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date"),
    "end_user": ("r.end_user", "e.end_user"),
    # `''` for events recorded before their key was, as in the rollups' keys.
    "api_key": ("r.api_key_id", "coalesce(e.api_key_id, '')"),
    "tag": ("r.tag", "t.tag"),
}
# Filter -> (column of a rollup row r, expression over usage_events e).
FILTERS = {
    "end_user": ("r.end_user", "e.end_user"),
    "api_key": ("r.api_key_id", "e.api_key_id"),
    "tag": ("r.tag", None),
}
SUMS = (*ROLLUP_COLUMNS, "reversed")
ROLLUP_METRICS = ", ".join(f"sum(r.{c}) AS {c}" for c in SUMS)
REVERSED = """
    coalesce((SELECT sum(l.amount) FROM ledger_entries l WHERE l.usage_event_id = e.id AND l.kind = 'reversal'), 0)
"""
# The daily rollups, each with its month; the same of the end users' and of the tags' rollups.
DAYS = "(SELECT *, date_trunc('month', day)::date AS month FROM usage_rollups) r"
USER_DAYS = "(SELECT *, date_trunc('month', day)::date AS month FROM usage_rollups_end_users) r"
TAG_DAYS = "(SELECT *, date_trunc('month', day)::date AS month FROM usage_rollups_tags) r"


def months(daily: str, keys: str) -> str:
    """Days [:lo, :hi) of `daily` as the whole months in it (:month_lo to :month_hi) from its monthly
    twin, and the days before and after those months from `daily`: the same sums from far fewer rows."""
    return f"""(
    SELECT month, {keys}, {", ".join(SUMS)} FROM {daily}_monthly
    WHERE month >= :month_lo AND month < :month_hi
    UNION ALL
    SELECT date_trunc('month', day)::date, {keys}, {", ".join(SUMS)} FROM {daily}
    WHERE day >= :lo AND day < :hi AND NOT (day >= :month_lo AND day < :month_hi)
) r"""  # noqa: S608 (built from constants only)


MONTHS = months("usage_rollups", "account_id, model_id, api_key_id")
USER_MONTHS = months("usage_rollups_end_users", "account_id, end_user, model_id, api_key_id")
TAG_MONTHS = months("usage_rollups_tags", "account_id, tag, model_id")
WITH_MONTHS = {MONTHS, USER_MONTHS, TAG_MONTHS}


def whole_months(lo: date, hi: date) -> tuple[date, date]:
    """The first and the end (exclusive) of the whole months within the days [lo, hi)."""
    return (lo if lo.day == 1 else next_month(lo)), hi.replace(day=1)


def next_month(day: date) -> date:
    if (day.year, day.month) == (MAXYEAR, 12):
        return date.max
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


class Attribution(msgspec.Struct, frozen=True):
    """A report's filters on who used: one end user, one tag, one reporting API key (by id)."""

    end_user: str | None = None
    tag: str | None = None
    api_key: str | None = None

    def given(self) -> dict[str, str]:
        return {name: value for name in FILTERS if (value := getattr(self, name)) is not None}


EVERYONE = Attribution()


async def usage_from_rollups(
    conn: AsyncConnection,
    group_by: list[str],
    account_id: str | None,
    lo: date,
    hi: date,
    after: tuple | None = None,
    limit: int | None = None,
    only: Attribution = EVERYONE,
) -> list[Row]:
    """Sums over the whole UTC days [lo, hi), read from the rollups: by tag or end user from theirs
    (which hold only the events that name one), otherwise from the account's; grouped by day from the
    daily ones, otherwise from the monthly ones for the whole months in the range."""
    filters = only.given()
    month_lo, month_hi = whole_months(lo, hi)
    params = {"lo": lo, "hi": hi, "month_lo": month_lo, "month_hi": month_hi}
    named = {*group_by, *filters}
    by_day = "day" in group_by
    if "tag" in named:
        source = TAG_DAYS if by_day else TAG_MONTHS
    elif "end_user" in named:
        source = USER_DAYS if by_day else USER_MONTHS
    else:
        source = DAYS if by_day else MONTHS
    where = [] if source in WITH_MONTHS else ["r.day >= :lo", "r.day < :hi"]
    if account_id is not None:
        where.append("r.account_id = :account_id")
        params["account_id"] = account_id
    for name, value in filters.items():
        where.append(f"{FILTERS[name][0]} = :only_{name}")
        params[f"only_{name}"] = value
    keys = [GROUPS[g][0] for g in group_by]
    return await _grouped(conn, source, keys, ROLLUP_METRICS, where, group_by, params, after, limit)


async def usage_from_events(
    conn: AsyncConnection,
    group_by: list[str],
    account_id: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple | None = None,
    limit: int | None = None,
    only: Attribution = EVERYONE,
) -> list[Row]:
    """The same sums from the events themselves, for ranges that do not fall on day boundaries."""
    keys = [GROUPS[g][1] for g in group_by]
    metrics = f"{ROLLUP_SUMS}, sum({REVERSED}) AS reversed"
    where, params = [], {}
    if account_id is not None:
        where.append("e.account_id = :account_id")
        params["account_id"] = account_id
    if start is not None:
        where.append("e.occurred_at >= :start")
        params["start"] = start
    if end is not None:
        where.append("e.occurred_at < :end")
        params["end"] = end
    for name, value in only.given().items():
        where.append(f"{FILTERS[name][1]} = :only_{name}" if name != "tag" else f":only_{name} = ANY(e.tags)")
        params[f"only_{name}"] = value
    # By tag, an event is counted once under each of its tags; by end user, events naming none are in no group.
    if "end_user" in group_by:
        where.append("e.end_user IS NOT NULL")
    source = "usage_events e CROSS JOIN LATERAL unnest(e.tags) AS t(tag)" if "tag" in group_by else "usage_events e"
    return await _grouped(conn, source, keys, metrics, where, group_by, params, after, limit)


async def _grouped(conn, source, keys, metrics, where, group_by, params, after, limit) -> list[Row]:
    """The groups in key order; with `after` (the keys of the last group seen) only those after it,
    with `limit` at most that many. Both work on rows, before grouping, so that an index in key
    order serves a page without reading the rest."""
    if after is not None:
        where = [*where, f"({', '.join(keys)}) > ({', '.join(f':after_{i}' for i in range(len(keys)))})"]
        params = params | {f"after_{i}": value for i, value in enumerate(after)}
    named = [f"{key} AS {name}" for key, name in zip(keys, group_by, strict=True)]
    query = f"SELECT {', '.join([*named, metrics])} FROM {source}"  # noqa: S608
    if where:
        query += f" WHERE {' AND '.join(where)}"
    if keys:
        order = ", ".join(str(n) for n in range(1, len(keys) + 1))
        query += f" GROUP BY {order} ORDER BY {order}"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    # A generic plan, which a prepared statement switches to after a few runs, is made without the
    # range's values and the page size: for these queries it gave up parallel scans and index order
    # and took two to three times as long. Planning afresh costs well under a millisecond.
    await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    rows = list(await conn.execute(text(query), params))
    # With no group and no events, SUM gives one row of NULLs; a report of nothing has no rows.
    return [row for row in rows if row.events]


async def spend_by_model(conn: AsyncConnection) -> list[Row]:
    """All-time credits charged and reversed, and upstream USD, by model: the monthly rollups, the
    smallest table that has them."""
    query = """
        SELECT model_id, sum(cost) AS credits, sum(reversed) AS reversed, sum(upstream_cost_usd) AS upstream_usd
        FROM usage_rollups_monthly GROUP BY model_id ORDER BY model_id
    """
    return list(await conn.execute(text(query)))


async def trial_balance(
    conn: AsyncConnection, account_id: str | None, start: datetime | None, end: datetime | None
) -> list[Row]:
    """Per account: the balance before `start`, the movements in [start, end) by kind, and the
    balance at `end`; closing = opening + movements, because every figure sums the same entries."""
    query = """
        SELECT a.id AS account_id,
               coalesce(sum(e.amount) FILTER (WHERE e.created_at < :start), 0) AS opening,
               coalesce(sum(e.amount) FILTER (WHERE e.kind = 'grant' AND e.created_at >= :start
                                              AND e.created_at < :end), 0) AS grants,
               coalesce(sum(e.amount) FILTER (WHERE e.kind = 'usage' AND e.created_at >= :start
                                              AND e.created_at < :end), 0) AS usage,
               coalesce(sum(e.amount) FILTER (WHERE e.kind = 'adjustment' AND e.created_at >= :start
                                              AND e.created_at < :end), 0) AS adjustments,
               coalesce(sum(e.amount) FILTER (WHERE e.kind = 'reversal' AND e.created_at >= :start
                                              AND e.created_at < :end), 0) AS reversals,
               coalesce(sum(e.amount) FILTER (WHERE e.kind = 'expiration' AND e.created_at >= :start
                                              AND e.created_at < :end), 0) AS expirations,
               coalesce(sum(e.amount) FILTER (WHERE e.created_at < :end), 0) AS closing
        FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
        WHERE (CAST(:account_id AS text) IS NULL OR a.id = :account_id)
        GROUP BY a.id ORDER BY a.id
    """
    params = {"account_id": account_id, "start": start or EARLIEST, "end": end or LATEST}
    return list(await conn.execute(text(query), params))
