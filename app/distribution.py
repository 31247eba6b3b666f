"""How the schema spreads over a Citus cluster: which tables are distributed by account and which
are reference tables (a copy on every node), the schema rules that make this possible, checked
against PostgreSQL's catalogs, and the Citus setup (`billing citus setup`). docs/scale-out.md.

`accounts` is distributed by its `id`, which is the account id; every other per-account table by
its `account_id`, co-located with `accounts`, so all rows of one account live on one node.
"""

import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

DISTRIBUTION_COLUMN = "account_id"
ACCOUNTS = "accounts"
DISTRIBUTED = frozenset(
    {
        "accounts",
        "grants",
        "usage_events",
        "ledger_entries",
        "authorizations",
        "unrated_usage",
        "usage_rollups",
        "usage_rollups_monthly",
        "usage_rollups_tags",
        "usage_rollups_end_users",
        "usage_rollups_tags_monthly",
        "usage_rollups_end_users_monthly",
        "spend_limits",
        "grant_schedules",
        "spend_limit_periods",
        "idempotency_keys",
        "webhook_events",
        "webhook_deliveries",
    }
)
REFERENCE = frozenset(
    {
        "providers",
        "models",
        "model_aliases",
        "prices",
        "margins",
        "catalog_version",
        "api_keys",
        "audit_log",
        "webhook_endpoints",
    }
)
# Reference tables that have an account_id column all the same: a request's key is looked up by its
# id before any account is known, and admin keys belong to no account.
REFERENCE_WITH_ACCOUNT = frozenset({"api_keys"})
# Kept on the coordinator only: Alembic's bookkeeping.
LOCAL = frozenset({"alembic_version"})

# Functions whose value differs from call to call or node to node: a distributed database cannot run
# them inside an upsert's DO UPDATE (it runs on each node holding the row), so times come as parameters.
# A call in SQL (`now()`) or in SQLAlchemy (`func.now()`); Python's own clock reads are the Clock's (app/clock.py).
VOLATILE = re.compile(
    r"(?:(?<![\w.])|func\.)(now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday|random"
    r"|gen_random_uuid|uuid_generate_v[14]|nextval)\s*\(|(?<![\w.])(current_timestamp|localtimestamp)\b",
    re.IGNORECASE,
)


def distribution_column(table: str) -> str:
    return "id" if table == ACCOUNTS else DISTRIBUTION_COLUMN


TABLES = """
    SELECT c.relname AS name, bool_or(a.attname = 'account_id') AS has_account
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    GROUP BY c.relname ORDER BY c.relname
"""
# Primary keys, unique constraints and unique indexes alike: each is a unique index. An expression
# column has no name (NULL).
UNIQUE_INDEXES = """
    SELECT t.relname AS table, i.relname AS index,
           array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
                 LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                 ORDER BY k.n) AS columns
    FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = :schema AND x.indisunique
    ORDER BY 1, 2
"""
PRIMARY_KEYS = """
    SELECT t.relname AS table FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = :schema AND c.contype = 'p'
"""
FOREIGN_KEYS = """
    SELECT c.conname AS name, t.relname AS table, r.relname AS referred,
           array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns,
           array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                 ORDER BY k.n) AS referred_columns
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = :schema AND c.contype = 'f'
    ORDER BY 2, 1
"""
# Internal triggers are the ones that enforce foreign keys.
TRIGGERS = """
    SELECT t.relname AS table, g.tgname AS name FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = :schema AND NOT g.tgisinternal ORDER BY 1, 2
"""


async def lint(conn: AsyncConnection, schema: str = "public") -> list[str]:
    """What in the schema breaks the rules of docs/scale-out.md, one line each; [] when it holds.

    A table is per-account when it is classified DISTRIBUTED, or, when it is not classified, when it
    has an account_id column (or is `accounts`)."""
    tables = {row.name: row.has_account for row in await conn.execute(text(TABLES), {"schema": schema})}
    problems = classification_problems(tables) if schema == "public" else unclassified(tables)

    def per_account(table: str) -> bool:
        if table in DISTRIBUTED | REFERENCE | LOCAL:
            return table in DISTRIBUTED
        return table == ACCOUNTS or tables.get(table, False)

    keyed = {row.table for row in await conn.execute(text(PRIMARY_KEYS), {"schema": schema})}
    problems += [f"{t}: a per-account table without a primary key" for t in tables if per_account(t) and t not in keyed]
    for row in await conn.execute(text(UNIQUE_INDEXES), {"schema": schema}):
        column = distribution_column(row.table)
        if per_account(row.table) and column not in row.columns:
            problems.append(
                f"{row.table}: unique index {row.index} ({', '.join(map(str, row.columns))}) lacks {column}"
            )
    for row in await conn.execute(text(FOREIGN_KEYS), {"schema": schema}):
        if per_account(row.referred) and not per_account(row.table):
            problems.append(
                f"{row.table}: foreign key {row.name} from a reference table into per-account {row.referred}"
            )
        elif per_account(row.referred) and per_account(row.table):
            pairs = set(zip(row.columns, row.referred_columns, strict=True))
            if (distribution_column(row.table), distribution_column(row.referred)) not in pairs:
                problems.append(
                    f"{row.table}: foreign key {row.name} to {row.referred} does not link "
                    f"{distribution_column(row.table)} to {distribution_column(row.referred)}"
                )
    for row in await conn.execute(text(TRIGGERS), {"schema": schema}):
        problems.append(f"{row.table}: trigger {row.name} (no table has triggers)")
    return problems


def unclassified(tables: dict[str, bool]) -> list[str]:
    return [
        f"{table}: not classified in app/distribution.py (DISTRIBUTED by account, REFERENCE or LOCAL)"
        for table in tables
        if table not in DISTRIBUTED | REFERENCE | LOCAL
    ]


def classification_problems(tables: dict[str, bool]) -> list[str]:
    """The classification against the tables that exist ({name: has an account_id column})."""
    problems = unclassified(tables)
    problems += [
        f"{t}: classified in app/distribution.py but not in the schema"
        for t in sorted(DISTRIBUTED | REFERENCE)
        if t not in tables
    ]
    for table, has_account in tables.items():
        if table in DISTRIBUTED and table != ACCOUNTS and not has_account:
            problems.append(f"{table}: distributed by account_id but has no account_id column")
        if table in REFERENCE and has_account and table not in REFERENCE_WITH_ACCOUNT:
            problems.append(f"{table}: has an account_id column, so it is per-account: classify it DISTRIBUTED")
    return problems


def volatile_upserts(paths: Iterable[Path]) -> list[str]:
    """`ON CONFLICT ... DO UPDATE` clauses (SQL text, or SQLAlchemy's on_conflict_do_update) that call
    a volatile function, as "path:line: function"."""
    found = []
    for path in paths:
        source = path.read_text()
        for clause in re.finditer(r"ON\s+CONFLICT\b[^;]*?\bDO\s+UPDATE\b", source, re.IGNORECASE):
            # The clause ends with the statement, its string, or its CTE (a line opening with ")").
            end = re.compile(r';|"""|\n\s*\)').search(source, clause.end())
            body = source[clause.start() : end.start() if end else len(source)]
            found += _volatile(path, source, clause.start(), body)
        for call in re.finditer(r"on_conflict_do_update\(", source):
            found += _volatile(path, source, call.start(), _balanced(source, call.end() - 1))
    return found


def _volatile(path: Path, source: str, start: int, body: str) -> list[str]:
    line = source.count("\n", 0, start) + 1
    return [f"{path}:{line}: {match.group(1) or match.group(2)}" for match in VOLATILE.finditer(body)]


def _balanced(source: str, opening: int) -> str:
    """The text from the parenthesis at `opening` to the one that closes it."""
    depth = 0
    for index in range(opening, len(source)):
        depth += {"(": 1, ")": -1}.get(source[index], 0)
        if depth == 0:
            return source[opening : index + 1]
    return source[opening:]


class CitusMissing(RuntimeError):
    """The database has no `citus` extension."""


class SchemaBreaksRules(RuntimeError):
    """The schema cannot be distributed as it stands (`lint`)."""


async def citus_plan(conn: AsyncConnection) -> list[tuple[str, str]]:
    """(table, statement) for every table, in the order Citus needs: reference tables first, then
    `accounts`, then the other per-account tables co-located with it; within each group a table comes
    after the tables its foreign keys refer to."""
    tables = [row.name for row in await conn.execute(text(TABLES), {"schema": "public"})]
    refers: dict[str, set[str]] = {table: set() for table in tables}
    for row in await conn.execute(text(FOREIGN_KEYS), {"schema": "public"}):
        if row.referred != row.table:
            refers[row.table].add(row.referred)
    plan = []
    reference = [t for t in tables if t in REFERENCE]
    distributed = [t for t in tables if t in DISTRIBUTED and t != ACCOUNTS]
    for table in _parents_first(reference, refers):
        plan.append((table, f"SELECT create_reference_table('public.{table}')"))
    if ACCOUNTS in tables:
        plan.append((ACCOUNTS, f"SELECT create_distributed_table('public.{ACCOUNTS}', 'id')"))
    for table in _parents_first(distributed, refers):
        plan.append(
            (
                table,
                f"SELECT create_distributed_table('public.{table}', '{DISTRIBUTION_COLUMN}', "
                f"colocate_with => 'public.{ACCOUNTS}')",
            )
        )
    return plan


def _parents_first(tables: list[str], refers: dict[str, set[str]]) -> list[str]:
    ordered: list[str] = []
    pending = sorted(tables)
    while pending:
        ready = [t for t in pending if not (refers[t] & set(pending)) - {t}]
        if not ready:  # a cycle of foreign keys: Citus takes the rest in any order
            ready = pending[:1]
        ordered += ready
        pending = [t for t in pending if t not in ready]
    return ordered


async def setup_citus(conn: AsyncConnection) -> list[str]:
    """Distribute the tables (skipping those already done); returns the statements run. Each runs in a
    transaction of its own, so a failed run can simply be run again."""
    version = (await conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'citus'"))).scalar()
    await conn.commit()
    if version is None:
        raise CitusMissing(
            "The citus extension is not installed in this database: install Citus on every node, "
            "run CREATE EXTENSION citus on each, then this command again (docs/scale-out.md)"
        )
    problems = await lint(conn)
    if problems:
        raise SchemaBreaksRules(f"The schema breaks the distribution rules: {'; '.join(problems)}")
    done = set((await conn.execute(text("SELECT logicalrelid::regclass::text FROM pg_dist_partition"))).scalars())
    ran = []
    for table, statement in await citus_plan(conn):
        if table in done or f"public.{table}" in done:
            continue
        await conn.execute(text(statement))
        await conn.commit()
        ran.append(statement)
    await conn.commit()
    return ran
