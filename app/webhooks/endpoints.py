from datetime import datetime

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from app.clock import Clock
from app.db import Db
from app.openapi import errors
from app.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page
from app.webhooks import repository, service
from app.webhooks.schemas import CreatedWebhook, Delivery, DeliveryStatus, Webhook, WebhookCreate, WebhookUpdate


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    opt = {"scope": "admin"}

    @post("/", status_code=201)
    async def create_webhook(
        self, clock: NamedDependency[Clock], db: Db, data: JSONBody[WebhookCreate]
    ) -> CreatedWebhook:
        """Add a webhook endpoint; its signing `secret` is returned in this response only."""
        async with db.begin() as conn:
            return await service.create(conn, data, clock.now())

    @get("/")
    async def list_webhooks(
        self, db: Db, cursor: FromQuery[str | None] = None, limit: FromQuery[int] = DEFAULT_LIMIT
    ) -> Page[Webhook]:
        """List webhook endpoints (never their secrets), oldest first."""
        after = decode_cursor(cursor, datetime, str)
        async with db.connect() as conn:
            rows = await repository.list_endpoints(conn, after, check_limit(limit) + 1)
        return page(rows, limit, lambda row: (row.created_at, row.id), service.webhook_view)

    @get("/{endpoint_id:str}", responses=errors(404))
    async def get_webhook(self, db: Db, endpoint_id: FromPath[str]) -> Webhook:
        """One webhook endpoint."""
        async with db.connect() as conn:
            return await service.get(conn, endpoint_id)

    @patch("/{endpoint_id:str}", responses=errors(404))
    async def update_webhook(
        self, clock: NamedDependency[Clock], db: Db, endpoint_id: FromPath[str], data: JSONBody[WebhookUpdate]
    ) -> Webhook:
        """Change an endpoint's `url`, `events`, `description`, or pause it with `disabled`."""
        async with db.begin() as conn:
            return await service.update(conn, endpoint_id, data, clock.now())

    @delete("/{endpoint_id:str}", status_code=200, responses=errors(404))
    async def delete_webhook(self, db: Db, endpoint_id: FromPath[str]) -> Webhook:
        """Remove an endpoint with its deliveries, sent or not."""
        async with db.begin() as conn:
            return await service.delete(conn, endpoint_id)

    @get("/{endpoint_id:str}/deliveries", responses=errors(404))
    async def list_deliveries(
        self,
        db: Db,
        endpoint_id: FromPath[str],
        status: FromQuery[DeliveryStatus | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
    ) -> Page[Delivery]:
        """The endpoint's deliveries, oldest first: status, attempts, the last answer and the next attempt."""
        after = decode_cursor(cursor, int)
        async with db.connect() as conn:
            await service.get(conn, endpoint_id)
            rows = await repository.list_deliveries(
                conn, endpoint_id, status, after[0] if after else None, check_limit(limit) + 1
            )
        return page(rows, limit, lambda row: (row.id,), service.delivery_view)

    @post("/{endpoint_id:str}/deliveries/{delivery_id:int}/retry", status_code=200, responses=errors(404, 409))
    async def retry_delivery(
        self, clock: NamedDependency[Clock], db: Db, endpoint_id: FromPath[str], delivery_id: FromPath[int]
    ) -> Delivery:
        """Send a failed delivery again, with a fresh day of retries; the `webhook-id` stays the same."""
        async with db.begin() as conn:
            return await service.retry(conn, endpoint_id, delivery_id, clock.now())
