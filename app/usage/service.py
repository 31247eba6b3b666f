"""Usage ingestion: validate and price each event in memory, then record any number of events
with a fixed handful of set-based statements in one transaction."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from app import pricing
from app.catalog.model import Catalog
from app.catalog.resolve import bedrock_region
from app.errors import AppError, Conflict, InvalidRequest, NotFound
from app.idempotency import differing_fields, reused
from app.keys.schemas import Principal
from app.ledger import repository as ledger_repository
from app.ledger.service import open_books
from app.limits import repository as spend_limits_repository
from app.limits import service as spend_limits
from app.money import MAX_AMOUNT, money, subtract
from app.times import utc
from app.usage import reported, repository
from app.usage.schemas import TOKEN_FIELDS, Prepared, UsageEvent, UsageIn
from app.webhooks import service as webhooks
from app.webhooks.schemas import Notification

# Reporters' clocks drift; an event stamped this far ahead of ours is still accepted.
CLOCK_SKEW = timedelta(minutes=1)
MAX_METADATA_KEYS = 50
MAX_METADATA_LENGTH = 1000


def prepare(event: UsageIn, principal: Principal, catalog: Catalog, now: datetime) -> Prepared:
    """Validate and price one event. A model that does not resolve, or has no price for this usage,
    gives an unrated event rather than an error: the usage happened and must not be lost."""
    account_id = principal.account(event.account_id)
    if account_id is None:
        raise InvalidRequest("`account_id` is required for a key not bound to an account", param="account_id")
    # Stored and answered in UTC, so the first answer, a replay and a listing show the same time.
    given = event.occurred_at is not None
    occurred_at = utc(event.occurred_at if given else now, "occurred_at")
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidRequest("`occurred_at` is in the future", param="occurred_at")
    if event.metadata is not None:
        check_metadata(event.metadata)
    check_text(event.event_id, "event_id")
    check_text(event.model, "model")
    check_text(event.provider, "provider")
    check_text(event.authorization_id, "authorization_id")
    check_text(event.end_user, "end_user")
    tags = reported.check_tags(event.tags)
    attribution = {"end_user": event.end_user, "tags": tags, "api_key_id": principal.key_id}
    usage, usage_format = reported.usage_from(event)
    model = catalog.resolve(event.model, event.provider)
    tier, region = event.service_tier, event.region or bedrock_region(event.model)
    reason = None
    if model is None:
        pricing.validate_usage(usage, embedding=False)  # as charging does, before anything else
        reason = "model_not_found"
    else:
        try:
            # Usage of a disabled provider's model still happened, so it is still charged.
            upstream_usd, cost, price, margin = catalog.charge(model, usage, occurred_at, None, tier, region)
        except pricing.ModelUnpriced:
            reason = "model_unpriced"
    if reason is not None:
        if event.authorization_id is not None:
            # A hold was priced, so the event that settles it names a model the catalog prices.
            if model is None:
                raise NotFound(f"Model '{event.model}' not found", code="model_not_found", param="model")
            raise pricing.ModelUnpriced(f"Model '{model.id}' has no known price for this usage", param="model")
        return Prepared(
            account_id,
            event.event_id,
            None if model is None else model.id,
            None,
            None,
            catalog.credits_per_usd,
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            None,
            None,
            None,
            occurred_at,
            None,
            event.metadata,
            event.model,
            event.provider,
            event.usage,
            usage_format,
            usage.cache_write_1h_tokens,
            given,
            reason,
            tier,
            region,
            **attribution,
        )
    credits_per_usd = catalog.credits_per_usd
    credits_usd = pricing.credits_value(cost, credits_per_usd)
    # Amounts the ledger cannot hold (absurd rates): this event is refused, not the batch it came in.
    if cost >= MAX_AMOUNT or upstream_usd >= MAX_AMOUNT or credits_usd >= MAX_AMOUNT:
        raise InvalidRequest("The event's cost exceeds the largest amount the ledger holds", param="model")
    return Prepared(
        account_id,
        event.event_id,
        model.id,
        price.id,
        margin,
        credits_per_usd,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        cost,
        upstream_usd,
        credits_usd,
        occurred_at,
        event.authorization_id,
        event.metadata,
        None if event.model == model.id else event.model,
        event.provider,
        event.usage,
        usage_format,
        usage.cache_write_1h_tokens,
        given,
        None,
        tier,
        region,
        **attribution,
    )


def rerate(row: Any, catalog: Catalog, now: datetime) -> Prepared | None:
    """A waiting event (an `unrated_usage` row) priced by the catalog as it is now, at the price and
    margin in effect when it occurred (`Catalog.charge_waiting`); None while it still cannot be."""
    model = catalog.resolve(row["reported_model"], row["provider"])
    if model is None:
        return None
    usage = pricing.Usage(*(row[name] for name in TOKEN_FIELDS))
    try:
        upstream_usd, cost, price, margin = catalog.charge_waiting(
            model, usage, row["occurred_at"], now, row["service_tier"], row["region"]
        )
    except AppError:  # still unpriced, or (an embedding model) output it cannot have produced
        return None
    credits_per_usd = catalog.credits_per_usd
    credits_usd = pricing.credits_value(cost, credits_per_usd)
    if cost >= MAX_AMOUNT or upstream_usd >= MAX_AMOUNT or credits_usd >= MAX_AMOUNT:
        return None  # a cost the ledger cannot hold: it waits, as prepare() would refuse it
    return Prepared(
        row["account_id"],
        row["event_id"],
        model.id,
        price.id,
        margin,
        credits_per_usd,
        *(row[name] for name in TOKEN_FIELDS[:5]),
        cost,
        upstream_usd,
        credits_usd,
        row["occurred_at"],
        None,
        row["metadata"],
        None if row["reported_model"] == model.id else row["reported_model"],
        row["provider"],
        row["usage"],
        row["usage_format"],
        row["cache_write_1h_tokens"],
        True,
        None,
        row["service_tier"],
        row["region"],
        row["end_user"],
        row["tags"],
        row["api_key_id"],
    )


def check_text(value: str | None, field: str) -> None:
    # PostgreSQL text cannot hold NUL; refusing it here keeps one such event from failing a batch.
    if value is not None and "\x00" in value:
        raise InvalidRequest(f"`{field}` must not contain NUL characters", param=field)


def check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"`metadata` holds at most {MAX_METADATA_KEYS} keys", param="metadata")
    for key, value in metadata.items():
        check_text(key, "metadata")
        check_text(value, "metadata")
        if not key or len(key) > MAX_METADATA_LENGTH or len(value) > MAX_METADATA_LENGTH:
            raise InvalidRequest(
                f"`metadata` keys must be 1 to {MAX_METADATA_LENGTH} characters, values at most as long",
                param="metadata",
            )


class Outcome(msgspec.Struct, frozen=True):
    status: str  # created | unrated | duplicate | error
    event: UsageEvent | None = None
    error: AppError | None = None


def event_view(
    event: Prepared,
    recorded_at: datetime,
    balance_after: Decimal | None = None,
    overdrawn: bool = False,
    over_limit: bool = False,
) -> UsageEvent:
    """A just-recorded event: charged, or unrated (no cost, price version, margin or balance)."""
    charged = event.unrated_reason is None
    # Positional: a thousand of these per batch, and msgspec matches keywords one by one.
    return UsageEvent(
        event.event_id,
        event.account_id,
        event.model_id or event.reported_model,
        event.input_tokens,
        event.output_tokens,
        event.cached_input_tokens,
        event.cache_write_tokens,
        event.reasoning_tokens,
        event.occurred_at,
        recorded_at,
        money(event.cost) if charged else None,
        event.price_id,
        str(event.margin) if charged else None,
        money(balance_after) if charged else None,
        overdrawn,
        event.authorization_id,
        event.metadata,
        "charged" if charged else "unrated",
        False,
        event.cache_write_1h_tokens,
        event.reported_model,
        event.provider,
        event.usage,
        event.usage_format,
        event.unrated_reason,
        None,
        money(event.upstream_cost_usd) if charged else None,
        event.service_tier,
        event.region,
        event.end_user,
        event.tags,
        event.api_key_id,
        over_limit,
    )


def stored_view(row: Any, *, replay: bool = False) -> UsageEvent:
    """A stored event, charged or unrated (`repository.existing` and `list_events` rows)."""
    charged = row["status"] == "charged"
    return UsageEvent(
        event_id=row["event_id"],
        account_id=row["account_id"],
        model=row["model_id"] or row["reported_model"],
        **{name: row[name] for name in TOKEN_FIELDS},
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        cost=money(row["cost"]) if charged else None,
        price_version=row["price_id"],
        margin=str(row["margin"]) if charged else None,
        balance_after=money(row["balance_after"]) if charged else None,
        overdrawn=row["overdrawn"],
        authorization_id=row["authorization_id"],
        metadata=row["metadata"],
        status=row["status"],
        replay=replay,
        reported_model=row["reported_model"],
        provider=row["provider"],
        usage=row["usage"],
        usage_format=row["usage_format"],
        unrated_reason=row["unrated_reason"],
        unrated_since=row["unrated_since"],
        upstream_cost_usd=money(row["upstream_cost_usd"]) if charged else None,
        service_tier=row["service_tier"],
        region=row["region"],
        end_user=row["end_user"],
        tags=row["tags"],
        api_key_id=row["api_key_id"],
        over_limit=row["over_limit"],
    )


def stored_payload(row: Any, given_occurred_at: bool) -> dict[str, Any]:
    fields = {name: row[name] for name in TOKEN_FIELDS}
    fields |= {
        "model": row["reported_model"] or row["model_id"],
        "provider": row["provider"],
        "authorization_id": row["authorization_id"],
        "metadata": row["metadata"],
        "service_tier": row["service_tier"],
        "region": row["region"],
        "end_user": row["end_user"],
        "tags": row["tags"],
    }
    if given_occurred_at:
        fields["occurred_at"] = row["occurred_at"]
    return fields


def differing(first: dict[str, Any], second: dict[str, Any], first_model: str | None, second_model: str | None):
    """The fields in which a retry differs. Two strings that resolve to the same model (an alias and
    the id, a dated snapshot and the alias) name the same model, whatever provider was said."""
    fields = differing_fields(first, second)
    if first_model is not None and first_model == second_model:
        fields = [name for name in fields if name not in ("model", "provider")]
    return fields


def for_audience(event: UsageEvent, finance: bool) -> UsageEvent:
    """Upstream USD cost is finance data: keys without `ledger:read` do not see it."""
    return event if finance else msgspec.structs.replace(event, upstream_cost_usd=msgspec.UNSET)


async def record(conn: asyncpg.Connection, batch: list[Prepared], now: datetime) -> list[Outcome]:
    """Record events; one outcome per event, in order. Runs inside the caller's transaction.

    Statements, whatever the batch size: lock the accounts (in id order), look up event ids already
    recorded, insert the new events, post their ledger entries and balances. Holding the account
    locks, nobody else can record an event of these accounts, so "not yet recorded" stays true until
    we commit."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    first: dict[tuple[str, str], int] = {}
    for index, event in enumerate(batch):
        first.setdefault((event.account_id, event.event_id), index)

    books = await open_books(conn, [event.account_id for event in batch], now)
    keys = [key for key in first if key[0] in books.balance]
    existing = {(row["account_id"], row["event_id"]): row for row in await repository.existing(conn, keys)}

    new: list[int] = []
    for key, index in first.items():
        event = batch[index]
        if key[0] not in books.balance:
            error = NotFound(f"Account '{key[0]}' not found", code="account_not_found", param="account_id")
            outcomes[index] = Outcome("error", error=error)
        elif key in existing:
            outcomes[index] = replay(event, existing[key])
        else:
            new.append(index)

    settling = await claim_holds(conn, batch, new, outcomes)
    unrated = [index for index in new if batch[index].unrated_reason is not None]
    if unrated:
        new = [index for index in new if batch[index].unrated_reason is None]
        waiting = [batch[index] for index in unrated]
        await repository.insert_unrated(conn, waiting, [unrated_notification(event, now) for event in waiting], now)
        for index in unrated:
            outcomes[index] = Outcome("unrated", event=event_view(batch[index], now))

    # Events are stored with their overdraft flag, so the balances they lead to are projected first;
    # posting them below, in the same (request) order, gives the same figures.
    projected, overdrawn, posted = dict(books.balance), {}, []
    for index in new:
        event = batch[index]
        after = subtract(projected[event.account_id], event.cost)
        if after <= -MAX_AMOUNT:  # a balance the ledger cannot hold: this event fails, not the batch
            error = InvalidRequest("The event would take the balance beyond what the ledger holds", param="account_id")
            outcomes[index] = Outcome("error", error=error)
            settling = {hold: i for hold, i in settling.items() if i != index}
            continue
        projected[event.account_id] = after
        overdrawn[index] = after < -books.overdraft_limit[event.account_id]
        posted.append(index)
    new = posted
    # Spend limits, of the accounts that have any: usage past one is recorded all the same, and flagged.
    limited = {batch[i].account_id for i in new} & books.limited
    limits = await spend_limits.Usage.load(conn, sorted(limited)) if limited else None
    over = {i for i in new if limits and batch[i].account_id in limited and await limits.take(conn, batch[i])}
    ids = await repository.insert(conn, [(batch[i], overdrawn[i]) for i in new], now)
    for index in new:
        event = batch[index]
        event_id = ids[(event.account_id, event.event_id)]
        after = books.post(
            event.account_id,
            "usage",
            -event.cost,
            "system:revenue",
            usage_event_id=event_id,
            description=event.model_id,
        )
        outcomes[index] = Outcome("created", event=event_view(event, now, after, overdrawn[index], index in over))
    await books.close(conn, now)
    if limits is not None:
        for account_id in sorted({batch[i].account_id for i in over}):
            flagged = [ids[(account_id, batch[i].event_id)] for i in over if batch[i].account_id == account_id]
            await spend_limits_repository.flag_over_limit(conn, account_id, flagged)
        await limits.announce(conn, now)
    if settling:
        settled = [
            (batch[i].account_id, hold, ids[(batch[i].account_id, batch[i].event_id)], batch[i].cost)
            for hold, i in settling.items()
        ]
        await ledger_repository.settle_authorizations(conn, settled, now)

    for index, event in enumerate(batch):
        if outcomes[index] is None:  # a repeat of an event earlier in this batch
            key = (event.account_id, event.event_id)
            if key in existing:  # each copy is compared with what is stored, not with its neighbour
                outcomes[index] = replay(event, existing[key])
            else:
                outcomes[index] = repeat_in_batch(event, batch[first[key]], outcomes[first[key]])
    return outcomes


def unrated_notification(event: Prepared, now: datetime) -> Notification:
    data = {
        "account_id": event.account_id,
        "event_id": event.event_id,
        "model": event.reported_model,
        "provider": event.provider,
        "reason": event.unrated_reason,
        "occurred_at": webhooks.timestamp(event.occurred_at),
    }
    return webhooks.notification(event.account_id, "usage.unrated", data, now)


async def claim_holds(
    conn: asyncpg.Connection, batch: list[Prepared], new: list[int], outcomes: list[Outcome | None]
) -> dict[str, int]:
    """The holds the new events settle ({authorization id: event index}); an event naming a hold
    that is not its account's, or one already settled, fails and is dropped from `new`."""
    wanted = sorted({(batch[i].account_id, batch[i].authorization_id) for i in new if batch[i].authorization_id})
    if not wanted:
        return {}
    holds = {row["id"]: row for row in await ledger_repository.lock_authorizations(conn, wanted)}
    settling: dict[str, int] = {}
    for index in list(new):
        event = batch[index]
        if event.authorization_id is None:
            continue
        hold = holds.get(event.authorization_id)
        if hold is None or hold["account_id"] != event.account_id:
            error = NotFound(
                f"Authorization '{event.authorization_id}' not found",
                code="authorization_not_found",
                param="authorization_id",
            )
        elif hold["settled_at"] is not None or event.authorization_id in settling:
            error = Conflict(
                f"Authorization '{event.authorization_id}' was already settled by another event",
                code="authorization_settled",
                param="authorization_id",
            )
        else:
            settling[event.authorization_id] = index
            continue
        outcomes[index] = Outcome("error", error=error)
        new.remove(index)
    return settling


def replay(event: Prepared, row: Any) -> Outcome:
    with_time = event.occurred_at_given
    fields = differing(stored_payload(row, with_time), event.payload(with_time), row["model_id"], event.model_id)
    if fields:
        return Outcome("error", error=reused(event.event_id, fields))
    return Outcome("duplicate", event=stored_view(row, replay=True))


def repeat_in_batch(event: Prepared, original: Prepared, outcome: Outcome) -> Outcome:
    if outcome.status == "error" and outcome.error.code == "account_not_found":
        return outcome
    with_time = event.occurred_at_given
    fields = differing(original.payload(with_time), event.payload(with_time), original.model_id, event.model_id)
    if fields:
        return Outcome("error", error=reused(event.event_id, fields))
    if outcome.event is None:
        return outcome
    return Outcome("duplicate", event=msgspec.structs.replace(outcome.event, replay=True))
