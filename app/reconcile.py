"""Every invariant of the books, checked against the database. Each check is a query that returns
the rows that break it, so a clean ledger returns nothing."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce
from types import SimpleNamespace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import pricing
from app.catalog.model import price_version
from app.errors import AppError
from app.money import add
from app.pricing import credits_value
from app.reports.repository import REVERSED, SUMS
from app.usage.repository import ROLLUP_SUMS


def months_equal_days(daily: str, keys: tuple[str, ...]) -> str:
    """The rows where `daily`'s monthly twin differs from `daily` summed by month, under the same keys."""
    return f"""
        SELECT coalesce(m.month, d.month) AS month, {", ".join(f"coalesce(m.{k}, d.{k}) AS {k}" for k in keys)},
               m.events AS monthly_events, d.events AS daily_events
        FROM {daily}_monthly m FULL JOIN (
            SELECT date_trunc('month', day)::date AS month, {", ".join(keys)},
                   {", ".join(f"sum({c}) AS {c}" for c in SUMS)}
            FROM {daily} GROUP BY 1, {", ".join(str(n) for n in range(2, len(keys) + 2))}
        ) d ON (d.month, {", ".join(f"d.{k}" for k in keys)}) = (m.month, {", ".join(f"m.{k}" for k in keys)})
        WHERE ({", ".join(f"m.{c}" for c in SUMS)}) IS DISTINCT FROM ({", ".join(f"d.{c}" for c in SUMS)})
    """  # noqa: S608 (built from constants only)


CHECKS = {
    "balance equals the sum of the account's entries": """
        SELECT a.id, a.balance, coalesce(sum(e.amount), 0) AS entries
        FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
        GROUP BY a.id HAVING a.balance <> coalesce(sum(e.amount), 0)
    """,
    "each entry's balance_after continues the previous one": """
        SELECT id, account_id, balance_after, running FROM (
            SELECT id, account_id, balance_after,
                   sum(amount) OVER (PARTITION BY account_id ORDER BY id) AS running
            FROM ledger_entries
        ) chain WHERE balance_after <> running
    """,
    "each entry's legs sum to zero (a customer leg and a system leg)": """
        SELECT id, account_id, counterparty, amount FROM ledger_entries
        WHERE counterparty NOT LIKE 'system:%' OR account_id LIKE 'system:%' OR (amount = 0 AND kind <> 'usage')
    """,
    "one event per (account, event_id)": """
        SELECT account_id, event_id, count(*) FROM usage_events GROUP BY account_id, event_id HAVING count(*) > 1
    """,
    "each usage event is charged by exactly one ledger entry of its cost": """
        SELECT u.id, u.event_id, count(l.id) AS entries, min(l.amount) AS amount, u.cost
        FROM usage_events u
        LEFT JOIN ledger_entries l ON l.account_id = u.account_id AND l.usage_event_id = u.id AND l.kind = 'usage'
        GROUP BY u.account_id, u.id HAVING count(l.id) <> 1 OR min(l.amount) <> -u.cost
    """,
    # Unrated usage waits outside the books: never charged, and never also recorded as charged.
    "no unrated event is also a charged event": """
        SELECT r.account_id, r.event_id FROM unrated_usage r
        JOIN usage_events u ON (u.account_id, u.event_id) = (r.account_id, r.event_id)
    """,
    "no usage entry for an unrated event": """
        SELECT l.id, l.account_id FROM ledger_entries l JOIN unrated_usage r
        ON r.account_id = l.account_id AND r.id = l.usage_event_id
    """,
    "each usage entry belongs to a usage event": """
        SELECT id, account_id FROM ledger_entries WHERE kind = 'usage' AND usage_event_id IS NULL
    """,
    "each credit lot has one entry of its amount": """
        SELECT g.id, g.account_id, g.amount, count(e.id) AS entries, sum(e.amount) AS entered
        FROM grants g LEFT JOIN ledger_entries e ON e.account_id = g.account_id AND e.grant_id = g.id AND e.amount > 0
        GROUP BY g.account_id, g.id HAVING count(e.id) <> 1 OR sum(e.amount) <> g.amount
    """,
    "each expiration empties one expired grant": """
        SELECT e.id, e.grant_id FROM ledger_entries e
        LEFT JOIN grants g ON g.account_id = e.account_id AND g.id = e.grant_id
        WHERE e.kind = 'expiration' AND (g.id IS NULL OR g.expired_at IS NULL OR g.remaining <> 0)
    """,
    "credit lots left add up to the positive balance": """
        SELECT a.id, a.balance, coalesce(sum(g.remaining), 0) AS lots
        FROM accounts a LEFT JOIN grants g ON g.account_id = a.id AND g.remaining > 0
        GROUP BY a.id HAVING coalesce(sum(g.remaining), 0) <> greatest(a.balance, 0)
    """,
    # Reports read the rollups, so they must say what the events and their reversals say.
    "daily usage rollups equal the sums of their events": f"""
        SELECT coalesce(r.day, s.day) AS day, coalesce(r.account_id, s.account_id) AS account_id,
               coalesce(r.model_id, s.model_id) AS model_id, coalesce(r.api_key_id, s.api_key_id) AS api_key_id,
               r.events AS rollup_events, s.events
        FROM usage_rollups r FULL JOIN (
            SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.account_id, e.model_id,
                   coalesce(e.api_key_id, '') AS api_key_id, {ROLLUP_SUMS}, sum({REVERSED}) AS reversed
            FROM usage_events e GROUP BY 1, 2, 3, 4
        ) s ON (s.day, s.account_id, s.model_id, s.api_key_id) = (r.day, r.account_id, r.model_id, r.api_key_id)
        WHERE ({", ".join(f"r.{c}" for c in SUMS)}) IS DISTINCT FROM ({", ".join(f"s.{c}" for c in SUMS)})
    """,  # noqa: S608 (built from constants only)
    "end user rollups equal the sums of their events": f"""
        SELECT coalesce(r.day, s.day) AS day, coalesce(r.account_id, s.account_id) AS account_id,
               coalesce(r.end_user, s.end_user) AS end_user, r.events AS rollup_events, s.events
        FROM usage_rollups_end_users r FULL JOIN (
            SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.account_id, e.end_user, e.model_id,
                   coalesce(e.api_key_id, '') AS api_key_id, {ROLLUP_SUMS}, sum({REVERSED}) AS reversed
            FROM usage_events e WHERE e.end_user IS NOT NULL GROUP BY 1, 2, 3, 4, 5
        ) s ON (s.day, s.account_id, s.end_user, s.model_id, s.api_key_id)
             = (r.day, r.account_id, r.end_user, r.model_id, r.api_key_id)
        WHERE ({", ".join(f"r.{c}" for c in SUMS)}) IS DISTINCT FROM ({", ".join(f"s.{c}" for c in SUMS)})
    """,  # noqa: S608 (built from constants only)
    "tag rollups equal the sums of their events": f"""
        SELECT coalesce(r.day, s.day) AS day, coalesce(r.account_id, s.account_id) AS account_id,
               coalesce(r.tag, s.tag) AS tag, coalesce(r.model_id, s.model_id) AS model_id,
               r.events AS rollup_events, s.events
        FROM usage_rollups_tags r FULL JOIN (
            SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.account_id, t.tag, e.model_id, {ROLLUP_SUMS},
                   sum({REVERSED}) AS reversed
            FROM usage_events e CROSS JOIN LATERAL unnest(e.tags) AS t(tag) GROUP BY 1, 2, 3, 4
        ) s ON (s.day, s.account_id, s.tag, s.model_id) = (r.day, r.account_id, r.tag, r.model_id)
        WHERE ({", ".join(f"r.{c}" for c in SUMS)}) IS DISTINCT FROM ({", ".join(f"s.{c}" for c in SUMS)})
    """,  # noqa: S608 (built from constants only)
    "monthly usage rollups equal the sums of their days": months_equal_days(
        "usage_rollups", ("account_id", "model_id", "api_key_id")
    ),
    "monthly end user rollups equal the sums of their days": months_equal_days(
        "usage_rollups_end_users", ("account_id", "end_user", "model_id", "api_key_id")
    ),
    "monthly tag rollups equal the sums of their days": months_equal_days(
        "usage_rollups_tags", ("account_id", "tag", "model_id")
    ),
}

SYSTEM_BALANCES = """
    SELECT counterparty AS account, -sum(amount) AS balance FROM ledger_entries GROUP BY counterparty ORDER BY 1
"""
CUSTOMER_TOTAL = "SELECT coalesce(sum(balance), 0) FROM accounts"
EVENTS = """
    SELECT u.id, u.event_id, u.model_id, u.margin, u.credits_per_usd, u.cost, u.upstream_cost_usd, u.credits_usd,
           u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens, u.reasoning_tokens,
           u.cache_write_1h_tokens, m.type, p.id AS price_id, p.input, p.output, p.cached_input, p.cache_write,
           p.cache_write_1h, p.per_request, p.tiers, p.variants, p.effective_from, p.source, u.occurred_at,
           u.service_tier, u.region
    FROM usage_events u JOIN prices p ON p.id = u.price_id JOIN models m ON m.id = u.model_id
    WHERE u.id > :after ORDER BY u.id LIMIT :limit
"""
CHUNK = 5000


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    events_checked: int = 0
    system_balances: dict[str, Decimal] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


async def reconcile(conn: AsyncConnection, *, limit_per_check: int = 20) -> Report:
    report = Report()
    for name, query in CHECKS.items():
        rows = (await conn.execute(text(f"{query} LIMIT {int(limit_per_check)}"))).all()
        report.violations += [f"{name}: {dict(row._mapping)}" for row in rows]

    report.system_balances = {row.account: row.balance for row in await conn.execute(text(SYSTEM_BALANCES))}
    customers = (await conn.execute(text(CUSTOMER_TOTAL))).scalar_one()
    # Added exactly (`money.add`): Python's default context keeps 28 digits, fewer than an amount has.
    system = reduce(add, report.system_balances.values(), Decimal(0))
    if add(customers, system) != 0:
        report.violations.append(f"the books do not balance: customers {customers} + system {system} != 0")

    async for row in usage_rows(conn):
        report.events_checked += 1
        problem = recompute(row)
        if problem:
            report.violations.append(f"event {row.event_id} (id {row.id}): {problem}")
    return report


async def usage_rows(conn: AsyncConnection) -> AsyncIterator:
    after = 0
    while True:
        rows = (await conn.execute(text(EVENTS), {"after": after, "limit": CHUNK})).all()
        for row in rows:
            yield row
        if len(rows) < CHUNK:
            return
        after = rows[-1].id


def recompute(row) -> str | None:
    """The charge again, from the stored price version, margin and credit unit."""
    usage = pricing.Usage(
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_input_tokens=row.cached_input_tokens,
        cache_write_tokens=row.cache_write_tokens,
        reasoning_tokens=row.reasoning_tokens,
        cache_write_1h_tokens=row.cache_write_1h_tokens,
    )
    try:
        version = price_version(SimpleNamespace(**row._asdict() | {"id": row.price_id}))
        # The rates of that version for the call's service tier, region and time of day.
        _, rates = version.rates_for(row.model_id, row.occurred_at, row.service_tier, row.region)
        quote = pricing.quote(
            row.model_id,
            rates,
            usage,
            embedding=row.type == "embedding",
            margin=row.margin,
            credits_per_usd=row.credits_per_usd,
        )
    except AppError as exc:
        return f"cannot be priced again: {exc.message}"
    if row.credits_usd != credits_value(quote.credits, row.credits_per_usd):
        return f"credits_usd {row.credits_usd} is not its cost {row.cost} / {row.credits_per_usd}"
    if (quote.credits, quote.upstream_usd) != (row.cost, row.upstream_cost_usd):
        charged = f"{row.cost} credits / {row.upstream_cost_usd} USD"
        return f"charged {charged}, recomputed {quote.credits} / {quote.upstream_usd}"
    return None
