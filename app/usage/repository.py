from datetime import datetime

import asyncpg
from sqlalchemy import (
    BigInteger,
    DateTime,
    Numeric,
    Row,
    Text,
    cast,
    false,
    func,
    literal_column,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.functions import count

from app.db import numerics
from app.tables import ledger_entries, unrated_usage, usage_events
from app.usage.schemas import Prepared
from app.webhooks import repository as webhooks
from app.webhooks.schemas import Notification

EVENT_COLUMNS = (
    "account_id", "event_id", "model_id", "price_id", "margin", "credits_per_usd", "input_tokens", "output_tokens",
    "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost", "upstream_cost_usd", "credits_usd",
    "occurred_at", "authorization_id", "metadata", "reported_model", "provider", "usage", "usage_format",
    "cache_write_1h_tokens", "service_tier", "region", "end_user", "tags", "api_key_id",
)  # fmt: skip
# The sums a usage rollup keeps, over events `e`; reports over raw events use the same expressions,
# so the two agree to the last digit.
ROLLUP_SUMS = """
    count(*) AS events, sum(e.input_tokens) AS input_tokens, sum(e.output_tokens) AS output_tokens,
    sum(e.cached_input_tokens) AS cached_input_tokens, sum(e.cache_write_tokens) AS cache_write_tokens,
    sum(e.reasoning_tokens) AS reasoning_tokens, sum(e.cost) AS cost, sum(e.upstream_cost_usd) AS upstream_cost_usd,
    sum(e.credits_usd) AS credits_usd
"""
ROLLUP_COLUMNS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost",
    "upstream_cost_usd", "credits_usd",
)  # fmt: skip
ROLLUP_ADD = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in ROLLUP_COLUMNS)
# Columns of EVENT_COLUMNS sent as one text each (`db.numerics`), and the one sent as one text per
# event: its tags joined by the unit separator (which tags cannot contain), as arrays of arrays of
# different lengths cannot be parameters.
NUMERIC_COLUMNS = frozenset({"margin", "credits_per_usd", "cost", "upstream_cost_usd", "credits_usd"})
TAG_SEPARATOR = "\x1f"
# One statement records the events and adds them to their daily and monthly rollups, and to the end
# users' and tags' daily and monthly rollups when some of them name an end user or carry tags (no
# trigger: a distributed table has none, docs/scale-out.md). Parameters $1..$27 are the columns of
# EVENT_COLUMNS in order, one array each (a joined text for NUMERIC_COLUMNS); $28 the overdrawn flags;
# $29 the time recorded.
INSERT_EVENTS = f"""
    WITH e AS (
        INSERT INTO usage_events (
            account_id, event_id, model_id, price_id, margin, credits_per_usd, input_tokens, output_tokens,
            cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd,
            occurred_at, authorization_id, metadata, reported_model, provider, usage, usage_format,
            cache_write_1h_tokens, service_tier, region, end_user, tags, api_key_id, overdrawn, recorded_at)
        SELECT a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22,
            a23, a24, a25, string_to_array(a26, chr(31)), a27, a28, $29
        FROM unnest(
            $1::text[], $2::text[], $3::text[], $4::bigint[], string_to_array($5, ',')::numeric[],
            string_to_array($6, ',')::numeric[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
            $11::bigint[], string_to_array($12, ',')::numeric[], string_to_array($13, ',')::numeric[],
            string_to_array($14, ',')::numeric[], $15::timestamptz[], $16::text[], $17::jsonb[], $18::text[],
            $19::text[], $20::jsonb[], $21::text[], $22::bigint[], $23::text[], $24::text[], $25::text[],
            $26::text[], $27::text[], $28::boolean[]
        ) AS v(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22,
            a23, a24, a25, a26, a27, a28)
        RETURNING id, account_id, event_id, model_id, occurred_at, input_tokens, output_tokens, cached_input_tokens,
            cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd, end_user, tags, api_key_id
    ), rollups AS (
        INSERT INTO usage_rollups AS r (day, account_id, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
        SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.model_id, coalesce(e.api_key_id, ''),
            {ROLLUP_SUMS}
        FROM e GROUP BY 1, 2, 3, 4
        ON CONFLICT (day, account_id, model_id, api_key_id) DO UPDATE SET {ROLLUP_ADD}
    ), months AS (
        INSERT INTO usage_rollups_monthly AS r (month, account_id, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
        SELECT date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.model_id,
            coalesce(e.api_key_id, ''), {ROLLUP_SUMS}
        FROM e GROUP BY 1, 2, 3, 4
        ON CONFLICT (month, account_id, model_id, api_key_id) DO UPDATE SET {ROLLUP_ADD}
"""  # noqa: S608 (built from constants only)
# Written only by the statements whose events need them: a batch that names no end user and carries no
# tag pays nothing for either (BENCHMARKS.md, fifth round).
END_USER_ROLLUPS = f"""    ), users AS (
        INSERT INTO usage_rollups_end_users AS r (
            day, account_id, end_user, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
        SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.end_user, e.model_id,
            coalesce(e.api_key_id, ''), {ROLLUP_SUMS}
        FROM e WHERE e.end_user IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (day, account_id, end_user, model_id, api_key_id) DO UPDATE SET {ROLLUP_ADD}
    ), user_months AS (
        INSERT INTO usage_rollups_end_users_monthly AS r (
            month, account_id, end_user, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
        SELECT date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.end_user, e.model_id,
            coalesce(e.api_key_id, ''), {ROLLUP_SUMS}
        FROM e WHERE e.end_user IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (month, account_id, end_user, model_id, api_key_id) DO UPDATE SET {ROLLUP_ADD}
"""  # noqa: S608 (built from constants only)
TAG_ROLLUPS = f"""    ), tagged AS (
        INSERT INTO usage_rollups_tags AS r (day, account_id, tag, model_id, {", ".join(ROLLUP_COLUMNS)})
        SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, t.tag, e.model_id, {ROLLUP_SUMS}
        FROM e CROSS JOIN LATERAL unnest(e.tags) AS t(tag)
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (day, account_id, tag, model_id) DO UPDATE SET {ROLLUP_ADD}
    ), tag_months AS (
        INSERT INTO usage_rollups_tags_monthly AS r (month, account_id, tag, model_id, {", ".join(ROLLUP_COLUMNS)})
        SELECT date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, t.tag, e.model_id,
            {ROLLUP_SUMS}
        FROM e CROSS JOIN LATERAL unnest(e.tags) AS t(tag)
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (month, account_id, tag, model_id) DO UPDATE SET {ROLLUP_ADD}
"""  # noqa: S608 (built from constants only)
FINISH = """
    )
    SELECT id, account_id, event_id FROM e
"""
INSERTS = {
    (users, tagged): "".join(
        [INSERT_EVENTS, *([END_USER_ROLLUPS] if users else []), *([TAG_ROLLUPS] if tagged else []), FINISH]
    )
    for users in (False, True)
    for tagged in (False, True)
}


def joined_tags(tags: list[str] | None) -> str | None:
    return None if tags is None else TAG_SEPARATOR.join(tags)


# Already recorded events, charged or unrated, in the columns `service.stored_view` reads
# (`_stored_select` below writes the same in SQLAlchemy Core for listings).
EXISTING = """
    WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(account_id, event_id))
    SELECT 'charged' AS status, u.id, u.account_id, u.event_id, u.model_id, u.price_id, u.margin, u.input_tokens,
           u.output_tokens, u.cached_input_tokens, u.cache_write_tokens, u.reasoning_tokens, u.cache_write_1h_tokens,
           u.cost, u.upstream_cost_usd, u.occurred_at, u.recorded_at, u.authorization_id, u.metadata, u.overdrawn,
           u.reported_model, u.provider, u.usage, u.usage_format, NULL AS unrated_reason, u.unrated_since,
           l.balance_after, u.service_tier, u.region, u.end_user, u.tags, u.api_key_id, u.over_limit
    FROM k JOIN usage_events u USING (account_id, event_id)
    JOIN ledger_entries l ON l.account_id = u.account_id AND l.usage_event_id = u.id AND l.kind = 'usage'
    UNION ALL
    SELECT 'unrated', r.id, r.account_id, r.event_id, r.model_id, NULL, NULL, r.input_tokens, r.output_tokens,
           r.cached_input_tokens, r.cache_write_tokens, r.reasoning_tokens, r.cache_write_1h_tokens, NULL, NULL,
           r.occurred_at, r.recorded_at, NULL, r.metadata, false, r.reported_model, r.provider, r.usage,
           r.usage_format, r.reason, NULL, NULL, r.service_tier, r.region, r.end_user, r.tags, r.api_key_id, false
    FROM k JOIN unrated_usage r USING (account_id, event_id)
"""


async def existing(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[asyncpg.Record]:
    """Already recorded events, charged or unrated, among (account_id, event_id) keys."""
    if not keys:
        return []
    accounts, event_ids = zip(*keys, strict=True)
    return await conn.fetch(EXISTING, accounts, event_ids)


UNRATED_COLUMNS = (
    "account_id", "event_id", "reported_model", "provider", "unrated_reason", "model_id", "input_tokens",
    "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cache_write_1h_tokens",
    "usage", "usage_format", "occurred_at", "metadata", "service_tier", "region", "end_user", "tags", "api_key_id",
)  # fmt: skip
# Each event stored unrated is announced (usage.unrated) by the same statement.
INSERT_UNRATED = f"""
    WITH {webhooks.outbox(23, 24, 25, 22)}
    INSERT INTO unrated_usage (
        account_id, event_id, reported_model, provider, reason, model_id, input_tokens, output_tokens,
        cached_input_tokens, cache_write_tokens, reasoning_tokens, cache_write_1h_tokens, usage, usage_format,
        occurred_at, metadata, service_tier, region, end_user, tags, api_key_id, recorded_at)
    SELECT a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19,
        string_to_array(a20, chr(31)), a21, $22
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
        $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::jsonb[], $14::text[], $15::timestamptz[],
        $16::jsonb[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[]
    ) AS v(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21)
"""  # noqa: S608 (parameter numbers only)


async def insert_unrated(
    conn: asyncpg.Connection, events: list[Prepared], notifications: list[Notification], now: datetime
) -> None:
    """Store events the catalog cannot price yet (no ledger entry, no rollup), with their webhook events."""
    columns = [
        [joined_tags(event.tags) for event in events] if name == "tags" else [getattr(event, name) for event in events]
        for name in UNRATED_COLUMNS
    ]
    await conn.execute(INSERT_UNRATED, *columns, now, *webhooks.notification_arrays(notifications))


async def insert(
    conn: asyncpg.Connection, events: list[tuple[Prepared, bool]], now: datetime
) -> dict[tuple[str, str], int]:
    """Insert new events in one statement; returns their ids by (account_id, event_id)."""
    if not events:
        return {}
    columns = [
        numerics(getattr(event, name) for event, _ in events)
        if name in NUMERIC_COLUMNS
        else [joined_tags(event.tags) for event, _ in events]
        if name == "tags"
        else [getattr(event, name) for event, _ in events]
        for name in EVENT_COLUMNS
    ]
    statement = INSERTS[any(e.end_user for e, _ in events), any(e.tags for e, _ in events)]
    rows = await conn.fetch(statement, *columns, [overdrawn for _, overdrawn in events], now)
    return {(row["account_id"], row["event_id"]): row["id"] for row in rows}


def _stored_select(status: str):
    """One table's events in the columns of STORED, as SQLAlchemy Core."""
    if status == "charged":
        u = usage_events.c
        return select(
            literal_column("'charged'").label("status"), u.id, u.account_id, u.event_id, u.model_id, u.price_id,
            u.margin, *(u[name] for name in TOKEN_COLUMNS), u.cost, u.upstream_cost_usd, u.occurred_at, u.recorded_at,
            u.authorization_id, u.metadata, u.overdrawn, u.reported_model, u.provider, u.usage, u.usage_format,
            cast(null(), Text).label("unrated_reason"), u.unrated_since, ledger_entries.c.balance_after,
            u.service_tier, u.region, u.end_user, u.tags, u.api_key_id, u.over_limit,
        ).join(
            ledger_entries,
            (ledger_entries.c.account_id == u.account_id)
            & (ledger_entries.c.usage_event_id == u.id)
            & (ledger_entries.c.kind == "usage"),
        ), usage_events  # fmt: skip
    r = unrated_usage.c
    return select(
        literal_column("'unrated'").label("status"), r.id, r.account_id, r.event_id, r.model_id,
        cast(null(), BigInteger).label("price_id"), cast(null(), Numeric).label("margin"),
        *(r[name] for name in TOKEN_COLUMNS), cast(null(), Numeric).label("cost"),
        cast(null(), Numeric).label("upstream_cost_usd"), r.occurred_at, r.recorded_at,
        cast(null(), Text).label("authorization_id"), r.metadata, false().label("overdrawn"), r.reported_model,
        r.provider, r.usage, r.usage_format, r.reason.label("unrated_reason"),
        cast(null(), DateTime(timezone=True)).label("unrated_since"), cast(null(), Numeric).label("balance_after"),
        r.service_tier, r.region, r.end_user, r.tags, r.api_key_id, false().label("over_limit"),
    ), unrated_usage  # fmt: skip


TOKEN_COLUMNS = (
    "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cache_write_1h_tokens",
)  # fmt: skip


async def list_events(
    conn: AsyncConnection,
    *,
    account_id: str | None,
    model_id: str | None,
    provider: str | None,
    status: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Row]:
    """Charged and unrated events (or one `status`), oldest first; a page after `after`."""
    parts = []
    for kind in ("charged", "unrated"):
        if status not in (None, kind):
            continue
        query, table = _stored_select(kind)
        c = table.c
        if account_id is not None:
            query = query.where(c.account_id == account_id)
        if model_id is not None:
            query = query.where(c.model_id == model_id)
        if provider is not None:
            served = c.model_id.startswith(provider + "/", autoescape=True)
            query = query.where(served if kind == "charged" else served | (c.provider == provider))
        if start is not None:
            query = query.where(c.occurred_at >= start)
        if end is not None:
            query = query.where(c.occurred_at < end)
        if after is not None:
            query = query.where(tuple_(c.occurred_at, c.id) > tuple_(*after))
        # Each part is ordered and limited too, so each reads no more than a page by its index.
        parts.append(query.order_by(c.occurred_at, c.id).limit(limit))
    both = union_all(*(part.subquery().select() for part in parts)).subquery()
    return list(await conn.execute(select(both).order_by(both.c.occurred_at, both.c.id).limit(limit)))


async def unrated_totals(
    conn: AsyncConnection,
    account_id: str | None,
    start: datetime | None,
    end: datetime | None,
    only: dict[str, str] | None = None,
) -> Row:
    """What waits unrated among the events that occurred in [start, end), of one end user, tag or
    reporting key when `only` names them: the report's unrated line."""
    c = unrated_usage.c
    query = select(
        count().label("events"), *(func.coalesce(func.sum(c[name]), 0).label(name) for name in TOKEN_COLUMNS)
    )
    for name, value in (only or {}).items():
        query = query.where(
            c.tags.contains([value]) if name == "tag" else c["api_key_id" if name == "api_key" else name] == value
        )
    if account_id is not None:
        query = query.where(c.account_id == account_id)
    if start is not None:
        query = query.where(c.occurred_at >= start)
    if end is not None:
        query = query.where(c.occurred_at < end)
    return (await conn.execute(query)).one()


async def unrated_pairs(conn: asyncpg.Connection) -> list[tuple[str, str | None]]:
    """The distinct (model string, provider) pairs of the events waiting unrated."""
    rows = await conn.fetch("SELECT DISTINCT reported_model, provider FROM unrated_usage")
    return sorted(((row[0], row[1]) for row in rows), key=lambda pair: (pair[0], pair[1] or ""))


async def unrated_of(
    conn: asyncpg.Connection, pair: tuple[str, str | None], after: int, limit: int
) -> list[asyncpg.Record]:
    """Waiting events of one (model string, provider) pair, by id after `after`."""
    return await conn.fetch(
        "SELECT * FROM unrated_usage WHERE reported_model = $1 AND provider IS NOT DISTINCT FROM $2 AND id > $3 "
        "ORDER BY id LIMIT $4",
        *pair,
        after,
        limit,
    )


async def unrated_count(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM unrated_usage")


async def take_unrated(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[asyncpg.Record]:
    """Delete waiting events by (account_id, event_id); the ones this transaction took."""
    accounts, event_ids = zip(*keys, strict=True)
    return await conn.fetch(
        """
        DELETE FROM unrated_usage r USING unnest($1::text[], $2::text[]) AS k(account_id, event_id)
        WHERE (r.account_id, r.event_id) = (k.account_id, k.event_id)
        RETURNING r.account_id, r.event_id, r.recorded_at
        """,
        accounts,
        event_ids,
    )


async def mark_rated(conn: asyncpg.Connection, rated: list[tuple[tuple[str, str], datetime]]) -> None:
    """Charged events keep when they were first recorded, unrated."""
    await conn.execute(
        """
        UPDATE usage_events u SET unrated_since = k.since
        FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(account_id, event_id, since)
        WHERE (u.account_id, u.event_id) = (k.account_id, k.event_id)
        """,
        [key[0] for key, _ in rated],
        [key[1] for key, _ in rated],
        [since for _, since in rated],
    )


async def unrated_summary(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """What waits unrated, by (model string, provider, reason), largest first."""
    return await conn.fetch(
        "SELECT reported_model, provider, reason, count(*) AS events FROM unrated_usage "
        "GROUP BY 1, 2, 3 ORDER BY events DESC, 1, 2"
    )
