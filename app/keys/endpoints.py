from datetime import datetime
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from app.clock import Clock
from app.db import Db
from app.keys import repository, service
from app.keys.auth import KeyCache
from app.keys.schemas import AuditEntry, CreatedKey, Key, KeyCreate, Principal
from app.openapi import errors
from app.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page

AnyRequest = Request[Principal, str, Any]


class KeyController(Controller):
    path = "/api-keys"
    tags = ["api keys"]
    opt = {"scope": "admin"}

    @post("/", status_code=201, responses=errors(404))
    async def create_key(
        self, request: AnyRequest, db: Db, clock: NamedDependency[Clock], data: JSONBody[KeyCreate]
    ) -> CreatedKey:
        """Create an API key; the secret `key` is returned in this response only."""
        async with db.begin() as conn:
            return await service.create(conn, data, actor=f"api_key:{request.user.key_id}", now=clock.now())

    @get("/")
    async def list_keys(
        self,
        db: Db,
        account_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
    ) -> Page[Key]:
        """List API keys (never their secrets), oldest first."""
        after = decode_cursor(cursor, datetime, str)
        async with db.connect() as conn:
            rows = await repository.list_keys(conn, account_id=account_id, after=after, limit=check_limit(limit) + 1)
        return page(rows, limit, lambda row: (row.created_at, row.id), service.to_key)

    @delete("/{key_id:str}", status_code=200)
    async def revoke_key(
        self, request: AnyRequest, db: Db, key_cache: NamedDependency[KeyCache], key_id: FromPath[str]
    ) -> Key:
        """Revoke an API key; it stops working at once on every worker."""
        async with db.begin() as conn:
            key = await service.revoke(conn, key_id, actor=f"api_key:{request.user.key_id}")
        key_cache.changes.announce()  # committed: every worker drops its cached keys
        return key

    @get("/audit", status_code=200)
    async def audit_log(
        self, db: Db, cursor: FromQuery[str | None] = None, limit: FromQuery[int] = DEFAULT_LIMIT
    ) -> Page[AuditEntry]:
        """Who created and revoked API keys, and when (oldest first)."""
        after = decode_cursor(cursor, int)
        async with db.connect() as conn:
            rows = await repository.audit_entries(conn, after=after[0] if after else None, limit=check_limit(limit) + 1)
        return page(rows, limit, lambda row: (row.id,), lambda row: AuditEntry(**row._asdict()))
