"""`billing`: operator commands. Without DATABASE_URL they use the embedded PostgreSQL."""

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from app import db
from app.auth import SCOPES, KeyChanges
from app.catalog.importer import DEFAULT_CATALOG, import_catalog, read_catalog
from app.catalog.schemas import ImportResult, SyncChange
from app.catalog.sources import Upstreams
from app.catalog.sync import summary, sync_catalog
from app.config import SYNC_SOURCES, Settings, SettingsError
from app.errors import AppError
from app.keys import repository as key_repository
from app.keys import service as key_service
from app.keys.schemas import KeyCreate
from app.ledger import repository as ledger_repository
from app.ledger import service as ledger_service
from app.ledger.schemas import AccountCreate
from app.pagination import MAX_LIMIT

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def in_transaction(url: str, work: Callable[[AsyncConnection], Awaitable[T]], *, begin: bool = True) -> T:
    """`work` in one transaction; with begin=False on a bare connection (it manages its own)."""

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


def run_command(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    with db.database_url(load_settings()) as url:
        return in_transaction(url, work)


def print_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(db.alembic_config(url), revision)


@click.group()
def main() -> None:
    """Credit-metered billing for LLM APIs: operator commands."""


@main.command()
@click.option("--host", help="Interface to listen on [BILLING_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [BILLING_PORT, default 8000].")
@click.option("--workers", type=int, help="Worker processes [BILLING_WORKERS, default 1].")
@click.option("--migrate", is_flag=True, help="Apply pending migrations before serving.")
@click.option("--load-catalog", is_flag=True, help="Import the bundled default catalog before serving.")
def serve(host: str | None, port: int | None, workers: int | None, migrate: bool, load_catalog: bool) -> None:
    """Serve the HTTP API; starts the embedded PostgreSQL when DATABASE_URL is unset."""
    import uvicorn

    settings = load_settings()
    host, port, workers = host or settings.host, port or settings.port, workers or settings.workers
    with db.database_url(settings) as url:
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
        # Worker processes build their settings from the environment, so hand them the URL there.
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
    if await key_repository.has_active_admin(conn):
        return None
    created = await key_service.create(conn, KeyCreate(name="bootstrap admin", scopes=["admin"]), actor="cli:serve")
    return created.key


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision (e.g. head, 0001, base).")
@click.option("--downgrade", is_flag=True, help="Downgrade to --revision instead of upgrading.")
def migrate(revision: str, downgrade: bool) -> None:
    """Apply the database migrations (or downgrade with --downgrade)."""
    from alembic import command

    with db.database_url(load_settings()) as url:
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
    data = msgspec.convert(
        {"name": name, "id": account_id, "overdraft_limit": overdraft_limit}, AccountCreate, strict=False
    )
    print_json(run_command(lambda conn: ledger_service.create_account(conn, data)))


@accounts.command("list")
def accounts_list() -> None:
    """Print accounts as JSON lines."""
    rows = run_command(
        lambda conn: ledger_repository.list_accounts(
            conn, only=None, after=None, limit=MAX_LIMIT, now=datetime.now(UTC)
        )
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
    data = KeyCreate(name=name, scopes=list(scopes), account_id=account_id, expires_at=expires_at)
    created = run_command(lambda conn: key_service.create(conn, data, actor="cli"))
    click.echo(f"id: {created.id}  scopes: {','.join(created.scopes)}  account: {created.account_id or '-'}")
    click.echo(created.key)


@keys.command("list")
def keys_list() -> None:
    """Print API keys (never their secrets) as JSON lines."""
    rows = run_command(lambda conn: key_repository.list_keys(conn, account_id=None, after=None, limit=MAX_LIMIT))
    for row in rows:
        click.echo(msgspec.json.encode(key_service.to_key(row)).decode())


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id; it stops working at once."""
    with db.database_url(load_settings()) as url:
        key = in_transaction(url, lambda conn: key_service.revoke(conn, key_id, actor="cli"))
        KeyChanges.for_database(url).announce()  # committed: the workers of this host drop their cached keys
    click.echo(f"revoked {key.id} at {key.revoked_at.isoformat()}")


async def import_default_catalog(conn: AsyncConnection, path: Path = DEFAULT_CATALOG) -> ImportResult:
    return await import_catalog(conn, read_catalog(path), at=datetime.now(UTC), label=path.name)


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
    default=DEFAULT_CATALOG,
    show_default="the bundled default catalog",
    help="A catalog file in the bundled format.",
)
def catalog_import(path: Path) -> None:
    """Import a catalog file; idempotent, and a changed price becomes a new version (history is kept).
    Unrated usage the catalog can now price is then rated."""
    settings = load_settings()
    with db.database_url(settings) as url:
        report_import(in_transaction(url, lambda conn: import_default_catalog(conn, path)))
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
    settings = load_settings()
    if not names:
        names = ("litellm",) if litellm_file else settings.sync_sources
    if "litellm" in names and not (litellm_file or settings.litellm_prices):
        raise click.UsageError("the litellm source needs --litellm-file (or LITELLM_PRICES)")
    upstreams = Upstreams.from_settings(settings)
    steps: dict[str, tuple[int, int]] = {}
    with db.database_url(settings) as url, click.progressbar(length=2 * len(names), file=sys.stderr) as bar:

        def progress(name: str, done: int, total: int) -> None:
            steps[name] = (done, total)
            bar.label = f"Syncing {name}"
            bar.length = sum(t for _, t in steps.values()) + 2 * (len(names) - len(steps))
            bar.update(sum(d for d, _ in steps.values()) - bar.pos)

        async def work(conn: AsyncConnection):
            at = datetime.now(UTC)
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
        with db.database_url(settings) as url:
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
    from app.catalog import repository as catalog_repository
    from app.catalog.service import build_catalog
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
            result = await rating.rate(pool, catalog, lambda: datetime.now(UTC))
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
    with db.database_url(settings) as url:
        report_rating(*rate_waiting(url, settings), listing=True)


@main.command()
def reconcile() -> None:
    """Check every ledger invariant; exits 1 naming each violation."""
    from app.ledger.reconcile import reconcile as check

    report = run_command(check)
    for account, balance in report.system_balances.items():
        click.echo(f"{account}: {balance}")
    click.echo(f"{report.events_checked} usage events recomputed from their price versions")
    if not report.ok:
        for violation in report.violations:
            click.echo(f"VIOLATION {violation}", err=True)
        raise click.ClickException(f"{len(report.violations)} violation(s)")
    click.echo("all invariants hold")
