from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.tables import catalog_version, margins, model_aliases, models, prices, providers

MODEL_FIELDS = tuple(c.name for c in models.c if c.name != "updated_at")
# PostgreSQL takes at most 32767 parameters per statement, so bulk writes go in slices.
CHUNK = 1000


def chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[start : start + CHUNK] for start in range(0, len(rows), CHUNK)]


# Every catalog write, from the API, the CLI or a sync, bumps the version and tells every worker
# listening on `catalog_changed` to reload, in the writer's transaction (the notification goes out at
# its commit). No trigger does it: a distributed database keeps none (docs/scale-out.md). A write
# made in plain SQL runs this statement too, or waits for the workers' next restart.
CHANGED = (
    "WITH v AS (UPDATE catalog_version SET version = version + 1 RETURNING version) "
    "SELECT pg_notify('catalog_changed', '') FROM v"
)


async def changed(conn: AsyncConnection) -> None:
    await conn.execute(text(CHANGED))


async def current_version(conn: AsyncConnection) -> int:
    return (await conn.execute(select(catalog_version.c.version))).scalar_one()


async def load_all(conn: AsyncConnection) -> dict[str, list[Row]]:
    """The whole catalog; callers run this in one REPEATABLE READ transaction for a consistent copy."""
    return {
        "version": [(await conn.execute(select(catalog_version.c.version))).one()],
        "providers": list(await conn.execute(select(providers).order_by(providers.c.id))),
        "models": list(await conn.execute(select(models).order_by(models.c.id))),
        "aliases": list(await conn.execute(select(model_aliases))),
        "prices": list(await conn.execute(select(prices).order_by(prices.c.model_id, prices.c.effective_from))),
        "margins": list(await conn.execute(select(margins).order_by(margins.c.effective_from))),
    }


async def upsert_providers(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """New providers are added enabled; an existing provider keeps its `enabled` switch."""
    if rows:
        query = insert(providers).values(rows)
        query = query.on_conflict_do_update(
            index_elements=[providers.c.id],
            set_={"name": query.excluded.name},
            where=providers.c.name.is_distinct_from(query.excluded.name),
        )
        if (await conn.execute(query.returning(providers.c.id))).all():
            await changed(conn)


async def insert_provider(conn: AsyncConnection, *, provider_id: str, name: str, enabled: bool) -> Row | None:
    query = (
        insert(providers)
        .values(id=provider_id, name=name, enabled=enabled)
        .on_conflict_do_nothing(index_elements=[providers.c.id])
        .returning(providers)
    )
    return await _changing(conn, (await conn.execute(query)).first())


async def update_provider(conn: AsyncConnection, provider_id: str, values: dict[str, Any]) -> Row | None:
    query = update(providers).where(providers.c.id == provider_id).values(**values).returning(providers)
    return await _changing(conn, (await conn.execute(query)).first())


async def _changing(conn: AsyncConnection, row: Row | None) -> Row | None:
    """`row`, after announcing the change it was written by (none when it is None)."""
    if row is not None:
        await changed(conn)
    return row


async def upsert_models(
    conn: AsyncConnection, rows: list[dict[str, Any]], at: datetime, *, keep_known: bool = False
) -> int:
    """Insert or update model metadata; returns how many rows actually changed. With `keep_known`,
    a null in `rows` keeps the stored value instead of erasing it. `at` stamps the changed rows."""
    count = sum([await _upsert_models(conn, chunk, at, keep_known) for chunk in chunks(rows)], 0)
    if count:
        await changed(conn)
    return count


async def _upsert_models(conn: AsyncConnection, rows: list[dict[str, Any]], at: datetime, keep_known: bool) -> int:
    query = insert(models).values(rows)
    values = {
        name: func.coalesce(query.excluded[name], models.c[name]) if keep_known else query.excluded[name]
        for name in MODEL_FIELDS
        if name != "id"
    }
    if keep_known:  # a kept value keeps its source: the stored labels, with the file's over them
        values["facts"] = models.c.facts.op("||")(query.excluded.facts)
    # IS DISTINCT FROM: an identical re-import writes nothing, so it does not bump the catalog version.
    differs = func.row(*(models.c[name] for name in values)).is_distinct_from(func.row(*values.values()))
    # The time is a parameter: a distributed database runs the upsert on every node of a reference
    # table, where now() would not be one value (tests/test_schema_rules.py).
    query = query.on_conflict_do_update(
        index_elements=[models.c.id], set_={**values, "updated_at": at}, where=differs
    ).returning(models.c.id)
    return len((await conn.execute(query)).all())


async def add_aliases(conn: AsyncConnection, rows: list[dict[str, str]]) -> int:
    """Aliases are first come, first served: an alias never silently moves to another model."""
    added = 0
    for chunk in chunks(rows):
        query = insert(model_aliases).values(chunk).on_conflict_do_nothing().returning(model_aliases.c.alias)
        added += len((await conn.execute(query)).all())
    if added:
        await changed(conn)
    return added


async def alias_owner(conn: AsyncConnection, alias: str) -> str | None:
    return (await conn.execute(select(model_aliases.c.model_id).where(model_aliases.c.alias == alias))).scalar()


async def find_alias(conn: AsyncConnection, alias: str, provider: str) -> Row | None:
    """The alias of that name (in any case) and provider scope ('' = any)."""
    query = select(model_aliases).where(
        func.lower(model_aliases.c.alias) == alias.lower(), model_aliases.c.provider == provider
    )
    return (await conn.execute(query.with_for_update())).first()


async def put_operator_alias(conn: AsyncConnection, alias: str, provider: str, model_id: str) -> Row:
    """Add the operator's alias, or point an existing one of that name and scope at `model_id`."""
    query = insert(model_aliases).values(alias=alias, provider=provider, model_id=model_id, source="operator")
    query = query.on_conflict_do_update(
        index_elements=[model_aliases.c.alias, model_aliases.c.provider],
        set_={"model_id": query.excluded.model_id, "source": "operator"},
    )
    row = (await conn.execute(query.returning(model_aliases))).one()
    await changed(conn)
    return row


async def delete_alias(conn: AsyncConnection, alias: str, provider: str) -> None:
    query = model_aliases.delete().where(model_aliases.c.alias == alias, model_aliases.c.provider == provider)
    if (await conn.execute(query)).rowcount:
        await changed(conn)


async def list_aliases(conn: AsyncConnection, model_id: str | None, source: str | None) -> list[Row]:
    query = select(model_aliases).order_by(model_aliases.c.alias, model_aliases.c.provider)
    if model_id is not None:
        query = query.where(model_aliases.c.model_id == model_id)
    if source is not None:
        query = query.where(model_aliases.c.source == source)
    return list(await conn.execute(query))


async def price_history(conn: AsyncConnection, model_ids: list[str]) -> list[Row]:
    query = select(prices).where(prices.c.model_id.in_(model_ids)).order_by(prices.c.model_id, prices.c.effective_from)
    return list(await conn.execute(query))


async def insert_prices(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[Row]:
    added = [
        row for chunk in chunks(rows) for row in await conn.execute(insert(prices).values(chunk).returning(prices))
    ]
    if added:
        await changed(conn)
    return added


async def latest_margin_time(conn: AsyncConnection, scope: str, target: str) -> datetime | None:
    query = select(func.max(margins.c.effective_from)).where(margins.c.scope == scope, margins.c.target == target)
    return (await conn.execute(query)).scalar()


async def insert_margin(
    conn: AsyncConnection, *, scope: str, target: str, margin: Any, effective_from: datetime
) -> Row:
    query = (
        insert(margins)
        .values(scope=scope, target=target, margin=margin, effective_from=effective_from)
        .returning(margins)
    )
    row = (await conn.execute(query)).one()
    await changed(conn)
    return row


async def margin_history(conn: AsyncConnection) -> list[Row]:
    return list(await conn.execute(select(margins).order_by(margins.c.effective_from, margins.c.id)))


async def models_by_ids(conn: AsyncConnection, model_ids: list[str]) -> list[Row]:
    return list(await conn.execute(select(models).where(models.c.id.in_(model_ids))))


async def active_model_ids(conn: AsyncConnection, provider: str) -> list[str]:
    """A provider's models that carry no deprecation date."""
    query = select(models.c.id).where(models.c.provider == provider, models.c.deprecation_date.is_(None))
    return list((await conn.execute(query.order_by(models.c.id))).scalars())


async def deprecate_models(conn: AsyncConnection, model_ids: list[str], on: date, at: datetime) -> int:
    """Mark models deprecated from `on`; they stay in the catalog with their prices."""
    query = (
        update(models)
        .where(models.c.id.in_(model_ids), models.c.deprecation_date.is_(None))
        .values(deprecation_date=on, updated_at=at)
    )
    count = (await conn.execute(query)).rowcount if model_ids else 0
    if count:
        await changed(conn)
    return count
