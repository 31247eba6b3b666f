"""`billing`: operator commands. Without DATABASE_URL they use the embedded PostgreSQL.

Only click and the standard library are imported up front: the app (Litestar, SQLAlchemy,
asyncpg, Alembic) takes seconds of CPU to import, and `billing --help`, `--version` and every
`--help` need none of it. Each command imports what it uses.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from app.clock import Clock
from app.config import SYNC_SOURCES, Settings, SettingsError
from app.keys.format import SCOPES, key_id_of

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from app.catalog.schemas import ImportResult, SyncChange

# The commands' business time: the system clock, read through a Clock as the app reads it.
CLOCK = Clock()

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def in_transaction(url: str, work: Callable[[AsyncConnection], Awaitable[T]], *, begin: bool = True) -> T:
    """`work` in one transaction; with begin=False on a bare connection (it manages its own)."""
    import asyncio

    from app import db
    from app.errors import AppError

    async def run() -> T:
        engine = db.create_engine(url, pool_size=1)
        try:
            await db.check_schema(engine)
            async with engine.begin() if begin else engine.connect() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except db.SchemaOutdated as exc:
        raise click.ClickException(str(exc)) from None
    except AppError as exc:
        raise click.ClickException(exc.message) from None


def database_url(settings: Settings):
    """DATABASE_URL, or the embedded PostgreSQL for as long as the `with` block runs."""
    from app import db

    return db.database_url(settings)


def run_command(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    with database_url(load_settings()) as url:
        return in_transaction(url, work)


def print_json(value: Any) -> None:
    import msgspec

    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    from app import db

    command.upgrade(db.alembic_config(url), revision)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it: SQLAlchemy keeps the driver's error in `orig`, asyncio in __cause__."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        cause = stack.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        stack += [getattr(cause, "orig", None), cause.__cause__, cause.__context__]


def server_named() -> str:
    """Where DATABASE_URL points, without its password."""
    raw = os.environ.get("DATABASE_URL")
    if not raw:
        return "the embedded server"
    try:
        parts = urlsplit(raw)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return "DATABASE_URL"


def explain(exc: BaseException) -> str | None:
    """One line naming the problem and its fix, for failures an operator fixes outside the code."""
    import socket

    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return None  # nothing has tried to reach the database
    if any(type(cause).__module__.startswith(("httpx", "httpcore")) for cause in causes(exc)):
        return None  # an upstream of catalog sync, not the database
    server = server_named()
    fix_url = "or set DATABASE_URL to another server (unset, `billing` starts an embedded one)"
    for cause in causes(exc):
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            name = (urlsplit(os.environ.get("DATABASE_URL", "")).path or "/").lstrip("/") or "postgres"
            return (
                f"{cause} on {server}: create it (`createdb {name}`, or CREATE DATABASE in psql) and run "
                "`billing migrate`, or point DATABASE_URL at a database that exists."
            )
        if isinstance(cause, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
            return f"PostgreSQL on {server} refused the login ({cause}): fix the user or password in DATABASE_URL."
        if isinstance(cause, asyncpg.CannotConnectNowError):
            return f"PostgreSQL on {server} is not accepting connections yet ({cause}): try again in a moment."
        if isinstance(cause, socket.gaierror):
            return f"Cannot resolve the database host of {server} ({cause}): fix the host in DATABASE_URL."
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and "Connect call failed" in str(cause)
        ):
            return f"Cannot connect to PostgreSQL on {server} (connection refused): start the server, {fix_url}."
    return None


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (stopping the embedded PostgreSQL), then die of the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Billing(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except Terminated as exc:
            # As Python does after Ctrl-C: the parent (a shell, make, a supervisor) sees the signal.
            signal.signal(exc.signum, signal.SIG_DFL)
            os.kill(os.getpid(), exc.signum)
            raise SystemExit(128 + exc.signum) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: --help, usage errors
        except Exception as exc:
            message = explain(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


# Set by the first SIGTERM or SIGHUP; later ones must not interrupt the cleanup it started.
terminating = threading.Event()


def terminate(signum: int, frame: object) -> None:
    if terminating.is_set():
        return
    terminating.set()
    raise Terminated(signum)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end a command as Ctrl-C does, by an exception, so the `with` blocks unwind and
    the embedded PostgreSQL is stopped. Python's default for them is to die on the spot, and pg_ctl
    starts the postmaster in its own session, so it would outlive us. While it serves, uvicorn handles
    SIGTERM itself (a graceful shutdown), then restores this handler and raises the signal again."""
    if threading.current_thread() is not threading.main_thread():
        return  # handlers can only be set there; the tests' CliRunner runs commands in other threads
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminate)


@click.group(cls=Billing)
@click.version_option(package_name="creditmeter", prog_name="billing")
def main() -> None:
    """Credit-metered billing for LLM APIs: operator commands."""
    stop_on_signals()


@main.command()
@click.option("--host", help="Interface to listen on [BILLING_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [BILLING_PORT, default 8000].")
@click.option("--workers", type=int, help="Worker processes [BILLING_WORKERS, default 1].")
@click.option("--migrate", is_flag=True, help="Apply pending migrations before serving.")
@click.option("--load-catalog", is_flag=True, help="Import the bundled default catalog before serving.")
def serve(host: str | None, port: int | None, workers: int | None, migrate: bool, load_catalog: bool) -> None:
    """Serve the HTTP API; starts the embedded PostgreSQL when DATABASE_URL is unset.
    Ctrl-C, SIGTERM and SIGHUP stop the server and the embedded PostgreSQL."""
    import tempfile

    import uvicorn

    settings = load_settings()
    host, port, workers = host or settings.host, port or settings.port, workers or settings.workers
    with database_url(settings) as url:
        if migrate:
            upgrade(url)
        if load_catalog:
            report_import(in_transaction(url, import_default_catalog))
        secret = in_transaction(url, bootstrap_admin_key)
        base = f"http://{host}:{port}"
        if secret:
            click.echo(
                "\nNo admin API key existed, so one was created. It is shown only this once:\n\n"
                f"    {secret}\n\nTry it:\n\n    curl -H 'X-API-Key: {secret}' {base}/accounts\n"
            )
        click.echo(f"Serving on {base} (OpenAPI at {base}/schema); Ctrl-C stops.")
        if not settings.database_url:
            # Worker processes build their settings from the environment, so hand them the embedded URL there.
            os.environ["DATABASE_URL"] = url
        if workers > 1:
            # Each worker writes its metrics here, so whichever worker answers /metrics reports them all.
            os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="billing-metrics-"))
        uvicorn.run(
            "app.asgi:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level.lower(),
            access_log=False,
            # A worker may spend a while waiting for the database at start; the default 5 s would
            # have the server kill and respawn it in a loop.
            timeout_worker_healthcheck=90,
        )


async def bootstrap_admin_key(conn: AsyncConnection) -> str | None:
    from app.keys import repository as key_repository
    from app.keys import service as key_service
    from app.keys.schemas import KeyCreate

    if await key_repository.has_active_admin(conn):
        return None
    created = await key_service.create(
        conn, KeyCreate(name="bootstrap admin", scopes=["admin"]), actor="cli:serve", now=CLOCK.now()
    )
    return created.key


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision (e.g. head, 0001, base).")
@click.option("--downgrade", is_flag=True, help="Downgrade to --revision instead of upgrading.")
def migrate(revision: str, downgrade: bool) -> None:
    """Apply the database migrations (or downgrade with --downgrade)."""
    from alembic import command

    from app import db

    with database_url(load_settings()) as url:
        if downgrade:
            command.downgrade(db.alembic_config(url), revision)
        else:
            upgrade(url, revision)
    click.echo(f"Database at revision {revision}.")


@main.group()
def accounts() -> None:
    """Customer accounts."""


@accounts.command("create")
@click.option("--name", required=True, help="Display name.")
@click.option("--id", "account_id", help="Account id (generated when omitted).")
@click.option("--overdraft-limit", default="0", show_default=True, help="Credits the balance may go below zero.")
def accounts_create(name: str, account_id: str | None, overdraft_limit: str) -> None:
    """Create an account and print it as JSON."""
    import msgspec

    from app.ledger import service as ledger_service
    from app.ledger.schemas import AccountCreate

    data = msgspec.convert(
        {"name": name, "id": account_id, "overdraft_limit": overdraft_limit}, AccountCreate, strict=False
    )
    print_json(run_command(lambda conn: ledger_service.create_account(conn, data)))


@accounts.command("list")
def accounts_list() -> None:
    """Print accounts as JSON lines."""
    import msgspec

    from app.ledger import repository as ledger_repository
    from app.ledger import service as ledger_service
    from app.pagination import MAX_LIMIT

    rows = run_command(
        lambda conn: ledger_repository.list_accounts(conn, only=None, after=None, limit=MAX_LIMIT, now=CLOCK.now())
    )
    for row in rows:
        click.echo(msgspec.json.encode(ledger_service.to_account(row)).decode())


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(SCOPES), help="Repeatable.")
@click.option("--account", "account_id", help="Bind the key to this account.")
@click.option("--expires-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]))
def keys_create(name: str, scopes: tuple[str, ...], account_id: str | None, expires_at: datetime | None) -> None:
    """Create a key; the secret is printed alone on the last line of stdout."""
    from app.keys import service as key_service
    from app.keys.schemas import KeyCreate

    data = KeyCreate(name=name, scopes=list(scopes), account_id=account_id, expires_at=expires_at)
    created = run_command(lambda conn: key_service.create(conn, data, actor="cli", now=CLOCK.now()))
    click.echo(f"id: {created.id}  scopes: {','.join(created.scopes)}  account: {created.account_id or '-'}")
    click.echo(created.key)


@keys.command("list")
def keys_list() -> None:
    """Print API keys (never their secrets) as JSON lines."""
    import msgspec

    from app.keys import repository as key_repository
    from app.keys import service as key_service
    from app.pagination import MAX_LIMIT

    rows = run_command(lambda conn: key_repository.list_keys(conn, account_id=None, after=None, limit=MAX_LIMIT))
    for row in rows:
        click.echo(msgspec.json.encode(key_service.to_key(row)).decode())


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke a key; it stops working at once. KEY is its 12-character id, its `cmk_<id>` prefix (both as
    `billing keys list` shows them) or the whole secret key."""
    from app.keys import service as key_service
    from app.keys.auth import KeyChanges

    key_id = key_id_of(key)
    if key_id is None:
        raise click.BadParameter(
            "expected a key id (12 hexadecimal characters), `cmk_` and the id, or the whole key", param_hint="KEY"
        )
    with database_url(load_settings()) as url:
        revoked = in_transaction(url, lambda conn: key_service.revoke(conn, key_id, actor="cli"))
        KeyChanges.for_database(url).announce()  # committed: the workers of this host drop their cached keys
    click.echo(f"revoked {revoked.id} at {revoked.revoked_at.isoformat()}")


def read_catalog_file(path: Path | None = None) -> dict[str, Any]:
    """A catalog file's data, or one line saying why it is not one."""
    from app.catalog.importer import DEFAULT_CATALOG, read_catalog

    path = path or DEFAULT_CATALOG
    bundled = "the format of app/catalog/default_catalog.json"
    try:
        data = read_catalog(path)
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text ({exc}); expected a JSON catalog in {bundled}.") from None
    except ValueError as exc:
        raise click.ClickException(f"{path} is not valid JSON ({exc}); expected a catalog in {bundled}.") from None
    except OSError as exc:
        raise click.ClickException(f"Cannot read the catalog file: {exc}.") from None
    if not (
        isinstance(data, dict) and isinstance(data.get("providers"), list) and isinstance(data.get("models"), list)
    ):
        raise click.ClickException(
            f"{path} is not a catalog: expected an object with `providers` and `models` lists, in {bundled}."
        )
    return data


async def import_catalog_data(conn: AsyncConnection, data: dict[str, Any], label: str) -> ImportResult:
    from app.catalog.importer import import_catalog

    return await import_catalog(conn, data, at=CLOCK.now(), label=label)


async def import_default_catalog(conn: AsyncConnection) -> ImportResult:
    from app.catalog.importer import DEFAULT_CATALOG

    return await import_catalog_data(conn, read_catalog_file(), DEFAULT_CATALOG.name)


def refused_value(exc: BaseException) -> BaseException | None:
    """The driver's error when the database (or asyncpg, encoding it) refused a value: a wrong type or
    format (SQLSTATE class 22) or a broken constraint (23)."""
    for cause in causes(exc):
        if isinstance(cause, ValueError) or str(getattr(cause, "sqlstate", ""))[:2] in ("22", "23"):
            return cause
    return None


def report_import(result: ImportResult) -> None:
    click.echo(
        f"Catalog {result.source}: {result.models} models from {result.providers} providers; "
        f"{result.models_changed} models added or changed, {result.prices_added} price versions added, "
        f"{result.aliases_added} aliases added."
    )


@main.group()
def catalog() -> None:
    """The model catalog."""


@catalog.command("import")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    show_default="the bundled default catalog",
    help="A catalog file in the bundled format.",
)
def catalog_import(path: Path | None) -> None:
    """Import a catalog file; idempotent, and a changed price becomes a new version (history is kept).
    Unrated usage the catalog can now price is then rated."""
    from sqlalchemy.exc import DBAPIError

    from app.catalog.importer import DEFAULT_CATALOG

    path = path or DEFAULT_CATALOG
    data = read_catalog_file(path)
    settings = load_settings()
    with database_url(settings) as url:
        try:
            result = in_transaction(url, lambda conn: import_catalog_data(conn, data, path.name))
        # One transaction: whatever was wrong, nothing of the file was written.
        except KeyError as exc:
            raise click.ClickException(f"{path}: an entry lacks the field {exc}; nothing was imported.") from None
        except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            raise click.ClickException(
                f"{path}: an entry has a value of the wrong kind ({type(exc).__name__}: {exc}); nothing was imported."
            ) from None
        except DBAPIError as exc:
            refused = refused_value(exc)
            if refused is None:
                raise
            raise click.ClickException(
                f"{path}: the database refused a value of an entry ({refused}); nothing was imported."
            ) from None
        report_import(result)
        report_rating(*rate_waiting(url, settings))


@catalog.command("sync")
@click.option(
    "--source",
    "names",
    multiple=True,
    type=click.Choice(SYNC_SOURCES),
    help="Repeatable [default: BILLING_SYNC_SOURCES, openrouter and ollama; litellm alone with --litellm-file].",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--curated", is_flag=True, help="OpenRouter: use the bundled curated list instead of the API.")
@click.option("--litellm-file", help="A LiteLLM model_prices_and_context_window.json: a path or an http(s) URL.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def catalog_sync(names: tuple[str, ...], dry_run: bool, curated: bool, litellm_file: str | None, as_json: bool) -> None:
    """Sync the catalog from upstream: new models added, changed prices become new versions from now
    (history is kept), vanished models deprecated. Exits 1 when a source reported errors."""
    from app.catalog.sources import Upstreams
    from app.catalog.sync import summary, sync_catalog

    settings = load_settings()
    if not names:
        names = ("litellm",) if litellm_file else settings.sync_sources
    if "litellm" in names and not (litellm_file or settings.litellm_prices):
        raise click.UsageError("the litellm source needs --litellm-file (or LITELLM_PRICES)")
    upstreams = Upstreams.from_settings(settings)
    steps: dict[str, tuple[int, int]] = {}
    with database_url(settings) as url, click.progressbar(length=2 * len(names), file=sys.stderr) as bar:

        def progress(name: str, done: int, total: int) -> None:
            steps[name] = (done, total)
            bar.label = f"Syncing {name}"
            bar.length = sum(t for _, t in steps.values()) + 2 * (len(names) - len(steps))
            bar.update(sum(d for d, _ in steps.values()) - bar.pos)

        async def work(conn: AsyncConnection):
            at = CLOCK.now()
            return await sync_catalog(
                conn,
                upstreams,
                names,
                at=at,
                dry_run=dry_run,
                curated=curated,
                litellm=litellm_file,
                progress=progress,
            )

        result = in_transaction(url, work, begin=False)
    if not dry_run:
        with database_url(settings) as url:
            report_rating(*rate_waiting(url, settings), quiet=as_json)
    if as_json:
        print_json(result)
    for source in result.results:
        if not as_json:
            click.echo(("[dry run] " if dry_run else "") + summary(source))
            if dry_run:
                for change in source.changes:
                    click.echo("  " + describe_change(change))
        for error in source.errors:
            click.echo(f"ERROR {error}", err=True)
    if not result.ok:
        raise click.ClickException(f"{sum(len(s.errors) for s in result.results)} error(s)")


def describe_change(change: SyncChange) -> str:
    def rates(price) -> str:
        if price is None:
            return "unpriced"
        if price.input is None:
            return "variable (unpriced)"
        return f"in {price.input} / out {price.output} USD per 1M"

    if change.change == "price_changed":
        return f"price    {change.id}: {rates(change.old_price)} -> {rates(change.new_price)}"
    if change.change == "added":
        return f"added    {change.id}: {rates(change.new_price)}"
    if change.change == "updated":
        return f"updated  {change.id}: {', '.join(change.fields)}"
    return f"deprecated {change.id} from {change.deprecation_date}"


def rate_waiting(url: str, settings: Settings) -> tuple[Any, list]:
    """Rate what the catalog can now price; (the result, what still waits by model string)."""
    import asyncio

    from app import db
    from app.catalog import repository as catalog_repository
    from app.catalog.model import build_catalog
    from app.usage import rating
    from app.usage import repository as usage_repository

    async def run():
        engine = db.create_engine(url, pool_size=1)
        pool = await db.create_pool(url, 2)
        try:
            await db.check_schema(engine)
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                data = await catalog_repository.load_all(conn)
            catalog = build_catalog(data, settings.default_margin, settings.credits_per_usd)
            result = await rating.rate(pool, catalog, CLOCK.now)
            async with pool.acquire() as conn:
                waiting = await usage_repository.unrated_summary(conn)
            return result, waiting
        finally:
            await pool.close()
            await engine.dispose()

    try:
        return asyncio.run(run())
    except db.SchemaOutdated as exc:
        raise click.ClickException(str(exc)) from None


def report_rating(result: Any, waiting: list, *, quiet: bool = False, listing: bool = False) -> None:
    if quiet or (not result.rated and not result.waiting and not listing):
        return
    click.echo(f"Rated {result.rated} waiting usage events; {result.waiting} still wait unrated.")
    if listing:
        for row in waiting:
            hint = f" (provider {row['provider']})" if row["provider"] else ""
            click.echo(f"  {row['events']:>8} {row['reported_model']}{hint}: {row['reason']}")


@main.command()
def rate() -> None:
    """Charge unrated usage the catalog can now price (at the price in effect when it occurred), and
    list what still waits, by model string and provider."""
    settings = load_settings()
    with database_url(settings) as url:
        report_rating(*rate_waiting(url, settings), listing=True)


@main.group()
def citus() -> None:
    """Spread the database over a Citus cluster (docs/scale-out.md)."""


@citus.command("setup")
def citus_setup() -> None:
    """On the coordinator, after `billing migrate`: make the catalog, API keys and audit log reference
    tables, and distribute the per-account tables by account, co-located with `accounts`. Tables
    already done are skipped, so it can be run again."""
    from app.distribution import CitusMissing, SchemaBreaksRules, setup_citus

    with database_url(load_settings()) as url:
        try:
            ran = in_transaction(url, setup_citus, begin=False)
        except (CitusMissing, SchemaBreaksRules) as exc:
            raise click.ClickException(str(exc)) from None
    for statement in ran:
        click.echo(statement)
    click.echo(f"{len(ran)} table(s) distributed; every table is now distributed or a reference table")


@main.command()
def reconcile() -> None:
    """Check every ledger invariant; exits 1 naming each violation."""
    from app.reconcile import reconcile as check

    report = run_command(check)
    for account, balance in report.system_balances.items():
        click.echo(f"{account}: {balance}")
    click.echo(f"{report.events_checked} usage events recomputed from their price versions")
    if not report.ok:
        for violation in report.violations:
            click.echo(f"VIOLATION {violation}", err=True)
        raise click.ClickException(f"{len(report.violations)} violation(s)")
    click.echo("all invariants hold")


# Reads for operators: readable tables, or --json / --csv.


def output_options(command: Callable) -> Callable:
    command = click.option("--csv", "as_csv", is_flag=True, help="Print CSV (formulas neutralised).")(command)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def bound(raw: str | None, name: str) -> datetime | None:
    """A date (midnight UTC) or an RFC 3339 time, as the API's `from` and `to` take."""
    from app.errors import AppError
    from app.reports.service import parse_bound

    try:
        return parse_bound(raw, name)
    except AppError as exc:
        raise click.BadParameter(exc.message.replace("`from`", "--from").replace("`to`", "--to")) from None


def show(header: list[str], rows: list[list], records: list, as_json: bool, as_csv: bool) -> None:
    """`rows` under `header` as an aligned table (numbers to the right), or `records` as JSON, or CSV."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: pick one")
    if as_json:
        print_json(records)
        return
    if as_csv:
        from app.exports import to_csv

        click.echo(to_csv(header, rows), nl=False)
        return
    texts = [["" if value is None else str(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[n]) for row in texts)]) for n, name in enumerate(header)]
    numeric = [all(is_number(row[n]) for row in texts if row[n]) and any(row[n] for row in texts)
               for n in range(len(header))]  # fmt: skip

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    click.echo(line(header))
    for row in texts:
        click.echo(line(row))


def is_number(text: str) -> bool:
    try:
        float(text)  # only to align the column; the text shown is the exact one
    except ValueError:
        return False
    return True


@main.command("usage")
@click.option("--account", "account_id", help="Only this account's events.")
@click.option("--model", help="Only this catalog model (its id, e.g. openai/gpt-4o).")
@click.option("--status", type=click.Choice(["charged", "unrated"]), help="Only charged or only unrated events.")
@click.option("--from", "from_", help="From this date or RFC 3339 time (occurred_at).")
@click.option("--to", help="Before this date or RFC 3339 time.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000), help="At most this many.")
@output_options
def usage_command(
    account_id: str | None,
    model: str | None,
    status: str | None,
    from_: str | None,
    to: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Usage events, oldest first, as GET /usage lists them."""
    from app.usage import repository as usage_repository
    from app.usage import service as usage_service

    start, end = bound(from_, "from"), bound(to, "to")

    async def read(conn: AsyncConnection) -> list:
        rows = await usage_repository.list_events(
            conn, account_id=account_id, model_id=model, provider=None, status=status, start=start, end=end,
            after=None, limit=limit,
        )  # fmt: skip
        return [usage_service.stored_view(row._mapping) for row in rows]

    events = run_command(read)
    header = ["occurred_at", "account_id", "event_id", "model", "status", "input_tokens", "output_tokens", "cost",
              "end_user", "tags"]  # fmt: skip
    rows = [
        [e.occurred_at.isoformat(), e.account_id, e.event_id, e.model, e.status, e.input_tokens, e.output_tokens,
         e.cost, e.end_user, ",".join(e.tags or [])]
        for e in events
    ]  # fmt: skip
    show(header, rows, events, as_json, as_csv)


@main.command("ledger")
@click.argument("account_id")
@click.option("--kind", "kinds", multiple=True, help="Only entries of this kind (repeatable): grant, usage, ...")
@click.option("--from", "from_", help="From this date or RFC 3339 time.")
@click.option("--to", help="Before this date or RFC 3339 time.")
@click.option("--limit", type=click.IntRange(1), help="At most this many (default: all).")
@output_options
def ledger_command(
    account_id: str,
    kinds: tuple[str, ...],
    from_: str | None,
    to: str | None,
    limit: int | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """An account's ledger entries in posting order, each with the balance after it."""
    from app.ledger import repository as ledger_repository
    from app.ledger import service as ledger_service
    from app.ledger.schemas import LedgerEntry

    start, end = bound(from_, "from"), bound(to, "to")

    async def read(conn: AsyncConnection) -> list:
        await ledger_service.get_account(conn, account_id, CLOCK.now())  # an unknown account is an error
        rows = await ledger_repository.list_entries(
            conn, account_id=account_id, kinds=list(kinds) or None, start=start, end=end, after=None, limit=limit
        )
        return [ledger_service.entry_view(row) for row in rows]

    entries = run_command(read)
    header = list(LedgerEntry.__struct_fields__)
    show(header, [[getattr(entry, name) for name in header] for entry in entries], entries, as_json, as_csv)


@main.command("report")
@click.option("--group-by", "group_by", multiple=True, help="account, model, provider, day, month, end_user, tag, "
              "api_key: repeated or comma-separated.")  # fmt: skip
@click.option("--from", "from_", help="From this date or RFC 3339 time.")
@click.option("--to", help="Before this date or RFC 3339 time.")
@click.option("--account", "account_id", help="Only this account.")
@click.option("--end-user", help="Only this end user.")
@click.option("--tag", help="Only this tag.")
@click.option("--api-key", help="Only this reporting key (its id).")
@output_options
def report_command(
    group_by: tuple[str, ...],
    from_: str | None,
    to: str | None,
    account_id: str | None,
    end_user: str | None,
    tag: str | None,
    api_key: str | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Usage totals (credits, revenue, upstream cost, gross margin), as GET /reports/usage gives them."""
    from app.errors import AppError
    from app.reports import service as report_service
    from app.reports.repository import Attribution

    try:
        keys = report_service.parse_group_by(list(group_by))
    except AppError as exc:
        raise click.BadParameter(exc.message.replace("`group_by`", "--group-by"), param_hint="--group-by") from None
    start, end = bound(from_, "from"), bound(to, "to")
    only = Attribution(end_user=end_user, tag=tag, api_key=api_key)
    report = run_command(lambda conn: report_service.usage_report(conn, keys, account_id, start, end, None, None, only))
    metrics = ["events", "input_tokens", "output_tokens", "credits", "credits_reversed", "credits_usd",
               "upstream_cost_usd", "gross_margin_usd", "gross_margin_pct"]  # fmt: skip
    rows = [[*(getattr(row, key) for key in keys), *(getattr(row, m) for m in metrics)] for row in report.rows]
    if not as_csv and not as_json and keys:  # the totals of the table, under it
        rows.append(["total", *[""] * (len(keys) - 1), *(getattr(report.totals, m) for m in metrics)])
    elif not keys:
        rows = [[getattr(report.totals, m) for m in metrics]]
    show([*keys, *metrics], rows, report, as_json, as_csv)
    if report.unrated.events and not as_json and not as_csv:
        click.echo(f"{report.unrated.events} usage events wait unrated (not in these figures): `billing rate`.")
