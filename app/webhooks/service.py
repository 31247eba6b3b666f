"""Webhook endpoints, the events they receive, and the crossings that raise balance events.

An event is a notification of a change, written to the outbox (`webhook_events`, one delivery per
subscribed endpoint) by the same statement that makes the change, so it exists exactly when the change
committed. Balance events fire on crossings only: the ledger knows each account's balance before and
after the entries it posts, and asks `balance_crossings` which lines that move crossed."""

import base64
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Conflict, InvalidRequest, NotFound
from app.money import money
from app.webhooks import repository
from app.webhooks.schemas import (
    ALL_EVENTS,
    EVENT_TYPES,
    CreatedWebhook,
    Delivery,
    Notification,
    Webhook,
    WebhookCreate,
    WebhookUpdate,
)

SECRET_BYTES = 32


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` and base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def timestamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def notification(account_id: str, type_: str, data: dict[str, Any], now: datetime) -> Notification:
    return Notification(account_id, type_, {"type": type_, "timestamp": timestamp(now), "data": data})


def balance_crossings(
    account_id: str,
    before: Decimal,
    after: Decimal,
    *,
    overdraft_limit: Decimal,
    threshold: Decimal | None,
    armed: bool,
    now: datetime,
) -> tuple[list[Notification], bool]:
    """The events a move of the balance from `before` to `after` raises, and whether balance.low is
    armed after it. balance.low fires once when the balance is at or below the threshold while armed,
    and is armed again only once the balance is back above it, so a balance hovering under the line
    does not raise an event per charge."""
    found = []
    if threshold is not None and armed and after <= threshold:
        data = {"account_id": account_id, "balance": money(after), "low_balance_threshold": money(threshold)}
        found.append(notification(account_id, "balance.low", data, now))
        armed = False
    elif not armed and (threshold is None or after > threshold):
        armed = True
    if before > 0 >= after:
        found.append(
            notification(account_id, "balance.depleted", {"account_id": account_id, "balance": money(after)}, now)
        )
    if before >= -overdraft_limit > after:
        data = {"account_id": account_id, "balance": money(after), "overdraft_limit": money(overdraft_limit)}
        found.append(notification(account_id, "account.overdrawn", data, now))
    return found, armed


def grant_expired(grant: Mapping[str, Any], now: datetime) -> Notification:
    data = {
        "account_id": grant["account_id"],
        "grant_id": grant["id"],
        "expired": money(grant["remaining"]),
        "expires_at": timestamp(grant["expires_at"]),
    }
    return notification(grant["account_id"], "grant.expired", data, now)


def grant_expiring(grant: Mapping[str, Any], now: datetime) -> Notification:
    data = {
        "account_id": grant["account_id"],
        "grant_id": grant["id"],
        "remaining": money(grant["remaining"]),
        "expires_at": timestamp(grant["expires_at"]),
    }
    return notification(grant["account_id"], "grant.expiring", data, now)


def authorization_expired(hold: Mapping[str, Any], now: datetime) -> Notification:
    data = {
        "account_id": hold["account_id"],
        "authorization_id": hold["id"],
        "model": hold["model_id"],
        "amount": money(hold["amount"]),
        "created_at": timestamp(hold["created_at"]),
        "expires_at": timestamp(hold["expires_at"]),
    }
    return notification(hold["account_id"], "authorization.expired", data, now)


async def announce_expiries(conn: asyncpg.Connection, now: datetime, notice: timedelta, limit: int = 500) -> int:
    """One round of the sweep: `grant.expiring` for grants with credits left that expire within `notice`
    (none when it is zero), `authorization.expired` for holds that expired unsettled. Each is marked in
    the transaction that writes its event, so it is announced once however many workers sweep; how many."""
    grants = await repository.mark_expiring_grants(conn, now, now + notice, limit) if notice else []
    holds = await repository.mark_expired_holds(conn, now, limit)
    notifications = [grant_expiring(g, now) for g in grants] + [authorization_expired(h, now) for h in holds]
    await repository.notify(conn, notifications, now)
    return len(notifications)


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise InvalidRequest("`url` is not a valid URL", param="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("`url` must be an http or https URL with a host", param="url")
    return url


def check_events(events: list[str]) -> list[str]:
    unknown = [event for event in events if event not in EVENT_TYPES and event != ALL_EVENTS]
    if unknown:
        known = ", ".join((*EVENT_TYPES, ALL_EVENTS))
        raise InvalidRequest(f"Unknown event type `{unknown[0]}`; known types: {known}", param="events")
    if len(set(events)) != len(events):
        raise InvalidRequest("`events` lists a type twice", param="events")
    return events


def webhook_view(row: Row) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        disabled=row.disabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_view(row: Row) -> Delivery:
    return Delivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        account_id=row.account_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        last_attempt_at=row.last_attempt_at,
        last_status=row.last_status,
        last_response=row.last_response,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
    )


async def create(conn: AsyncConnection, data: WebhookCreate, now: datetime) -> CreatedWebhook:
    row = await repository.insert_endpoint(
        conn,
        {
            "id": f"whep_{secrets.token_hex(12)}",
            "url": check_url(data.url),
            "events": check_events(data.events),
            "description": data.description,
            "secret": new_secret(),
            "created_at": now,
            "updated_at": now,
        },
    )
    return CreatedWebhook(**{f: getattr(webhook_view(row), f) for f in Webhook.__struct_fields__}, secret=row.secret)


async def get(conn: AsyncConnection, endpoint_id: str) -> Webhook:
    row = await repository.get_endpoint(conn, endpoint_id)
    if row is None:
        raise not_found(endpoint_id)
    return webhook_view(row)


async def update(conn: AsyncConnection, endpoint_id: str, data: WebhookUpdate, now: datetime) -> Webhook:
    values: dict[str, Any] = {"updated_at": now}
    if data.url is not msgspec.UNSET:
        values["url"] = check_url(data.url)
    if data.events is not msgspec.UNSET:
        values["events"] = check_events(data.events)
    if data.description is not msgspec.UNSET:
        values["description"] = data.description
    if data.disabled is not msgspec.UNSET:
        values["disabled"] = data.disabled
    row = await repository.update_endpoint(conn, endpoint_id, values)
    if row is None:
        raise not_found(endpoint_id)
    return webhook_view(row)


async def delete(conn: AsyncConnection, endpoint_id: str) -> Webhook:
    row = await repository.delete_endpoint(conn, endpoint_id)
    if row is None:
        raise not_found(endpoint_id)
    return webhook_view(row)


async def retry(conn: AsyncConnection, endpoint_id: str, delivery_id: int, now: datetime) -> Delivery:
    if await repository.requeue_failed(conn, endpoint_id, delivery_id, now) is None:
        row = await repository.get_delivery(conn, endpoint_id, delivery_id)
        if row is None:
            await get(conn, endpoint_id)  # an unknown endpoint is named as such
            raise NotFound(f"Delivery {delivery_id} not found", code="delivery_not_found", param="delivery_id")
        raise Conflict(
            f"Delivery {delivery_id} is {row.status}; only a failed delivery can be retried",
            code="delivery_not_failed",
            param="delivery_id",
        )
    return delivery_view(await repository.get_delivery(conn, endpoint_id, delivery_id))


def not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"Webhook endpoint '{endpoint_id}' not found", code="webhook_not_found")
