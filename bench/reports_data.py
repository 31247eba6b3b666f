"""Report data: usage events generated with SQL (INSERT ... SELECT generate_series), and the daily
rollups they make, computed from those events with the very sums the service keeps
(`app.usage.repository.ROLLUP_SUMS`), so a report over the rollups is a report over the events. The
monthly rollups are the same sums by month (what the service writes beside the daily ones).

Shape: ACCOUNTS accounts (`rpt-0000` ...), each using 4 of 40 priced language models, events spread
evenly over DAYS days, token counts varying per event, costs from the models' current prices at the
default margin (upstream USD x 1.4 x 100 credits, rounded to 9 places; credits_usd = cost / 100).
Attribution: each account reports through one key of its own; the even accounts name END_USERS end
users of theirs, spread over their events; every event carries one of three `feature-N` tags, and
every fifth the tag `beta` too.
Only what the report reads is made consistent; no ledger entries or balances are written, so
`billing reconcile` would not hold on this throwaway database.

The bulk load drops the three secondary indexes of usage_events, skips foreign-key triggers
(session_replication_role = replica, superuser only), inserts from two connections at once, and
rebuilds the indexes: the database ends with exactly the migrated schema.
"""

import asyncio
import time
from collections.abc import Callable

import asyncpg

from app.usage.repository import ROLLUP_COLUMNS, ROLLUP_SUMS

ACCOUNTS = 500
MODELS = 40
DAYS = 90
END_USERS = 20
FIRST_DAY = "2026-01-01"

MODELS_SQL = f"""
    CREATE TABLE IF NOT EXISTS bench_models AS
    SELECT row_number() OVER (ORDER BY m.id) - 1 AS idx, m.id AS model_id, p.id AS price_id, p.input, p.output
    FROM models m JOIN LATERAL (
        SELECT * FROM prices p WHERE p.model_id = m.id ORDER BY p.effective_from DESC LIMIT 1
    ) p ON true
    WHERE m.type = 'language' AND p.input > 0 AND p.output > 0 AND p.tiers = '[]' AND p.per_request = 0
    ORDER BY m.id LIMIT {MODELS}
"""
ACCOUNTS_SQL = f"""
    INSERT INTO accounts (id, name)
    SELECT 'rpt-' || lpad(g::text, 4, '0'), 'report account ' || g FROM generate_series(0, {ACCOUNTS - 1}) g
    ON CONFLICT DO NOTHING
"""
# Event g: account (g * 7919) mod ACCOUNTS; one of that account's 4 models, by g div ACCOUNTS (independent of
# the account); a time spread over DAYS days. Every (day, account, model) gets events: ACCOUNTS x 4 x DAYS rollups.
EVENTS_SQL = f"""
    INSERT INTO usage_events (
        account_id, event_id, model_id, price_id, margin, credits_per_usd, input_tokens, output_tokens,
        cached_input_tokens, cache_write_tokens, reasoning_tokens, cost, upstream_cost_usd, credits_usd,
        occurred_at, recorded_at, overdrawn, api_key_id, end_user, tags)
    SELECT 'rpt-' || lpad(t.a::text, 4, '0'), 'gen-' || g, m.model_id, m.price_id, 1.4, 100, t.inp, t.outp, 0, 0, 0,
           round(t.usd * 140, 9), round(t.usd, 9), round(round(t.usd * 140, 9) / 100, 9),
           t.ts, t.ts, false, 'key-' || lpad(t.a::text, 4, '0'),
           CASE WHEN t.a % 2 = 0 THEN 'user-' || lpad(((g / {ACCOUNTS}) % {END_USERS})::text, 2, '0') END,
           CASE WHEN g % 5 = 0 THEN ARRAY['feature-' || g % 3, 'beta'] ELSE ARRAY['feature-' || g % 3] END
    FROM generate_series($1::bigint, $2::bigint) g
    CROSS JOIN LATERAL (
        SELECT (g * 7919) % {ACCOUNTS} AS a, 500 + (g * 37) % 4000 AS inp, 50 + (g * 13) % 800 AS outp,
               timestamptz '{FIRST_DAY} 00:00:00+00' + ((g * 104729) % ({DAYS} * 86400)) * interval '1 second' AS ts
    ) k
    JOIN bench_models m ON m.idx = (k.a * 3 + (g / {ACCOUNTS}) % 4) % {MODELS}
    CROSS JOIN LATERAL (SELECT k.*, (k.inp * m.input + k.outp * m.output) / 1000000 AS usd) t
"""
# The rollups of the events added since `$1` (an events.id), added to what is there: the service's
# own ON CONFLICT arithmetic.
ADD_SUMS = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in ROLLUP_COLUMNS)
ROLLUPS_SQL = f"""
    INSERT INTO usage_rollups AS r (day, account_id, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.model_id, e.api_key_id, {ROLLUP_SUMS}
    FROM usage_events e WHERE e.id > $1 AND e.account_id LIKE 'rpt-%'
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (day, account_id, model_id, api_key_id) DO UPDATE SET {ADD_SUMS}
"""
# The same events' monthly rollups, added likewise: what the service adds beside the daily ones, summed.
MONTHS_SQL = f"""
    INSERT INTO usage_rollups_monthly AS r (month, account_id, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
    SELECT date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.model_id, e.api_key_id,
           {ROLLUP_SUMS}
    FROM usage_events e WHERE e.id > $1 AND e.account_id LIKE 'rpt-%'
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (month, account_id, model_id, api_key_id) DO UPDATE SET {ADD_SUMS}
"""
# And their end users' and tags' rollups.
END_USERS_SQL = f"""
    INSERT INTO usage_rollups_end_users AS r (
        day, account_id, end_user, model_id, api_key_id, {", ".join(ROLLUP_COLUMNS)})
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, e.end_user, e.model_id, e.api_key_id, {ROLLUP_SUMS}
    FROM usage_events e WHERE e.id > $1 AND e.account_id LIKE 'rpt-%' AND e.end_user IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day, account_id, end_user, model_id, api_key_id) DO UPDATE SET {ADD_SUMS}
"""
TAGS_SQL = f"""
    INSERT INTO usage_rollups_tags AS r (day, account_id, tag, model_id, {", ".join(ROLLUP_COLUMNS)})
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.account_id, t.tag, e.model_id, {ROLLUP_SUMS}
    FROM usage_events e CROSS JOIN LATERAL unnest(e.tags) AS t(tag) WHERE e.id > $1 AND e.account_id LIKE 'rpt-%'
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (day, account_id, tag, model_id) DO UPDATE SET {ADD_SUMS}
"""
# Their monthly twins, made again from the report accounts' daily rows once those are complete.
SUMMED_COLUMNS = ", ".join(ROLLUP_COLUMNS)
SUMMED = ", ".join(f"sum({c})" for c in ROLLUP_COLUMNS)
USER_MONTHS_SQL = f"""
    INSERT INTO usage_rollups_end_users_monthly (month, account_id, end_user, model_id, api_key_id, {SUMMED_COLUMNS})
    SELECT date_trunc('month', day)::date, account_id, end_user, model_id, api_key_id, {SUMMED}
    FROM usage_rollups_end_users WHERE account_id LIKE 'rpt-%'
    GROUP BY 1, 2, 3, 4, 5
"""
TAG_MONTHS_SQL = f"""
    INSERT INTO usage_rollups_tags_monthly (month, account_id, tag, model_id, {SUMMED_COLUMNS})
    SELECT date_trunc('month', day)::date, account_id, tag, model_id, {SUMMED}
    FROM usage_rollups_tags WHERE account_id LIKE 'rpt-%'
    GROUP BY 1, 2, 3, 4
"""
ROLLUP_TABLES = (
    "usage_rollups, usage_rollups_monthly, usage_rollups_end_users, usage_rollups_tags, "
    "usage_rollups_end_users_monthly, usage_rollups_tags_monthly"
)
ROLLUP_STATEMENTS = (ROLLUPS_SQL, MONTHS_SQL, END_USERS_SQL, TAGS_SQL)
MONTHLY_TWINS = ("usage_rollups_end_users_monthly", USER_MONTHS_SQL), ("usage_rollups_tags_monthly", TAG_MONTHS_SQL)
# (drop, build): built from separate connections at once, the unique one as an index first and then
# attached as the constraint, which takes no time.
INDEXES = (
    (
        "ALTER TABLE usage_events DROP CONSTRAINT uq_usage_events_account_id_event_id",
        "CREATE UNIQUE INDEX uq_usage_events_account_id_event_id ON usage_events (account_id, event_id)",
    ),
    (
        "DROP INDEX ix_usage_events_account_id_occurred_at",
        "CREATE INDEX ix_usage_events_account_id_occurred_at ON usage_events (account_id, occurred_at)",
    ),
    (
        "DROP INDEX ix_usage_events_occurred_at",
        "CREATE INDEX ix_usage_events_occurred_at ON usage_events (occurred_at)",
    ),
)
CONSTRAINT = (
    "ALTER TABLE usage_events ADD CONSTRAINT uq_usage_events_account_id_event_id "
    "UNIQUE USING INDEX uq_usage_events_account_id_event_id"
)


async def grow(dsn: str, have: int, total: int, log: Callable[[str], None]) -> dict:
    """Add report events `have + 1` .. `total` (numbered from 1); returns timings in seconds."""
    conn = await asyncpg.connect(dsn)
    timings: dict[str, float] = {}
    try:
        superuser = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await conn.execute(MODELS_SQL)
        await conn.execute(ACCOUNTS_SQL)
        last_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM usage_events")
        began = time.perf_counter()
        for drop, _ in INDEXES:
            await conn.execute(drop)
        timings["drop_indexes_s"] = time.perf_counter() - began

        began = time.perf_counter()
        half = have + (total - have) // 2
        await asyncio.gather(insert(dsn, have + 1, half, superuser), insert(dsn, half + 1, total, superuser))
        timings["insert_s"] = time.perf_counter() - began
        log(f"  inserted events {have + 1:,}..{total:,} in {timings['insert_s']:.1f} s")

        began = time.perf_counter()
        await asyncio.gather(*(build(dsn, create) for _, create in INDEXES))
        await conn.execute(CONSTRAINT)
        timings["indexes_s"] = time.perf_counter() - began
        log(f"  rebuilt the usage_events indexes in {timings['indexes_s']:.1f} s")

        began = time.perf_counter()
        if superuser:
            # Summed again from all the events, with foreign-key checks off:
            # adding 9M events to 1M would otherwise update every rollup row in one go and leave the
            # tables at twice their size, a bloat that steady use, vacuumed as it goes, never reaches.
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                for table in ROLLUP_TABLES.split(", "):
                    await conn.execute(f"DELETE FROM {table} WHERE account_id LIKE 'rpt-%'")
            await conn.execute(f"VACUUM {ROLLUP_TABLES}")
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                for statement in ROLLUP_STATEMENTS:
                    await conn.execute(statement, 0)
        else:
            for statement in ROLLUP_STATEMENTS:
                await conn.execute(statement, last_id)
        for table, statement in MONTHLY_TWINS:
            await conn.execute(f"DELETE FROM {table} WHERE account_id LIKE 'rpt-%'")
            await conn.execute(statement)
        await conn.execute(f"VACUUM (ANALYZE) {ROLLUP_TABLES}")
        await conn.execute("ANALYZE usage_events")
        await conn.execute("DROP TABLE bench_models")
        timings["rollups_s"] = time.perf_counter() - began
        log(f"  rollups and ANALYZE in {timings['rollups_s']:.1f} s")
        return timings
    finally:
        await conn.close()


async def insert(dsn: str, first: int, last: int, superuser: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            if superuser:
                await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(EVENTS_SQL, first, last)
    finally:
        await conn.close()


async def build(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute(statement)
    finally:
        await conn.close()


async def shape(dsn: str) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM usage_events) AS events, (SELECT count(*) FROM usage_rollups) AS rollups, "
            "(SELECT pg_size_pretty(pg_total_relation_size('usage_events'))) AS events_size"
        )
        return dict(row)
    finally:
        await conn.close()
