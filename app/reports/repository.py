"""Report queries. Group keys and metrics come from fixed fragments below, never from user text;
values are always bound parameters."""

from datetime import UTC, date, datetime

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.usage.repository import ROLLUP_COLUMNS, ROLLUP_SUMS

EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
# Group key -> (expression over usage_rollups r, expression over usage_events e).
GROUPS = {
    "account": ("r.account_id", "e.account_id"),
    "model": ("r.model_id", "e.model_id"),
    "provider": ("split_part(r.model_id, '/', 1)", "split_part(e.model_id, '/', 1)"),
    "day": ("r.day", "(e.occurred_at AT TIME ZONE 'UTC')::date"),
    "month": ("date_trunc('month', r.day)::date", "date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date"),
}
ROLLUP_METRICS = ", ".join(f"sum(r.{c}) AS {c}" for c in (*ROLLUP_COLUMNS, "reversed"))
REVERSED = """
    coalesce((SELECT sum(l.amount) FROM ledger_entries l WHERE l.usage_event_id = e.id AND l.kind = 'reversal'), 0)
"""


async def usage_from_rollups(
    conn: AsyncConnection, group_by: list[str], account_id: str | None, start: date | None, end: date | None
) -> list[Row]:
    """Sums over whole UTC days, read from the daily rollups."""
    keys = [f"{GROUPS[g][0]} AS {g}" for g in group_by]
    where, params = ["true"], {}
    if account_id is not None:
        where.append("r.account_id = :account_id")
        params["account_id"] = account_id
    if start is not None:
        where.append("r.day >= :start")
        params["start"] = start
    if end is not None:
        where.append("r.day < :end")
        params["end"] = end
    return await _grouped(conn, "usage_rollups r", keys, ROLLUP_METRICS, where, group_by, params)


async def usage_from_events(
    conn: AsyncConnection,
    group_by: list[str],
    account_id: str | None,
    start: datetime | None,
    end: datetime | None,
) -> list[Row]:
    """The same sums from the events themselves, for ranges that do not fall on day boundaries."""
    keys = [f"{GROUPS[g][1]} AS {g}" for g in group_by]
    metrics = f"{ROLLUP_SUMS}, sum({REVERSED}) AS reversed"
    where, params = ["true"], {}
    if account_id is not None:
        where.append("e.account_id = :account_id")
        params["account_id"] = account_id
    if start is not None:
        where.append("e.occurred_at >= :start")
        params["start"] = start
    if end is not None:
        where.append("e.occurred_at < :end")
        params["end"] = end
    return await _grouped(conn, "usage_events e", keys, metrics, where, group_by, params)


async def _grouped(conn, source, keys, metrics, where, group_by, params) -> list[Row]:
    group = f"GROUP BY {', '.join(str(n) for n in range(1, len(keys) + 1))} ORDER BY {', '.join(group_by)}"
    query = f"SELECT {', '.join([*keys, metrics])} FROM {source} WHERE {' AND '.join(where)} {group if keys else ''}"  # noqa: S608
    rows = list(await conn.execute(text(query), params))
    # With no group and no events, SUM gives one row of NULLs; a report of nothing has no rows.
    return [row for row in rows if row.events]


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
