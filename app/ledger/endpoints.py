from datetime import datetime
from typing import Annotated

import asyncpg
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response

from app import db as database
from app.catalog.model import Catalog
from app.clock import Clock
from app.db import Db, ReadDb
from app.errors import InvalidRequest, NotFound
from app.exports import Format, csv_response, to_csv, wants_csv
from app.idempotency import respond
from app.keys.schemas import Principal
from app.ledger import repository, service
from app.ledger.schemas import (
    Account,
    AccountCreate,
    AccountUpdate,
    Adjustment,
    AdjustmentCreate,
    Authorization,
    AuthorizationCreate,
    Balance,
    EntryKind,
    Grant,
    GrantCreate,
    GrantCreated,
    LedgerEntry,
    Reversal,
    ReversalCreate,
)
from app.openapi import errors
from app.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page
from app.times import aware
from app.usage import reported


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]

    @post("/", opt={"scope": "admin"}, status_code=201, responses=errors(409))
    async def create_account(self, db: Db, data: JSONBody[AccountCreate]) -> Account:
        """Create a customer account; `id` is generated when omitted."""
        async with db.begin() as conn:
            return await service.create_account(conn, data)

    @get("/", opt={"scope": "ledger:read"})
    async def list_accounts(
        self,
        request: Request[Principal, str, object],
        clock: NamedDependency[Clock],
        db: Db,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
    ) -> Page[Account]:
        """List accounts with their balances, ordered by id; an account-bound key sees its own."""
        after = decode_cursor(cursor, str)
        async with db.connect() as conn:
            rows = await repository.list_accounts(
                conn,
                only=request.user.account(None),
                after=after[0] if after else None,
                limit=check_limit(limit) + 1,
                now=clock.now(),
            )
        return page(rows, limit, lambda row: (row.id,), service.to_account)

    @patch("/{account_id:str}", opt={"scope": "admin"}, responses=errors(404))
    async def update_account(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        db: Db,
        account_id: FromPath[str],
        data: JSONBody[AccountUpdate],
    ) -> Account:
        """Change an account's `low_balance_threshold` (credits; null turns the balance.low webhook off)."""
        account_id = request.user.account(account_id)
        await database.transaction(pool, lambda conn: service.update_account(conn, account_id, data, clock.now()))
        async with db.connect() as conn:
            return await service.get_account(conn, account_id, clock.now())

    @get("/{account_id:str}", opt={"scope": "ledger:read"})
    async def get_account(
        self, request: Request[Principal, str, object], clock: NamedDependency[Clock], db: Db, account_id: FromPath[str]
    ) -> Account:
        """One account with its balance, pending holds and available credits."""
        async with db.connect() as conn:
            return await service.get_account(conn, request.user.account(account_id), clock.now())

    @post("/{account_id:str}/grants", opt={"scope": "admin"}, status_code=201)
    async def create_grant(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
        data: JSONBody[GrantCreate],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
    ) -> Response[GrantCreated]:
        """Add credits, optionally expiring; with an `Idempotency-Key`, a retry gets the first answer."""
        account_id = request.user.account(account_id)
        return respond(
            await database.transaction(
                pool,
                lambda conn: service.create_grant(conn, account_id, data, clock.now(), idempotency_key),
            )
        )

    @post("/{account_id:str}/adjustments", opt={"scope": "admin"}, status_code=201)
    async def create_adjustment(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
        data: JSONBody[AdjustmentCreate],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
    ) -> Response[Adjustment]:
        """Credit (positive `amount`) or debit (negative) an account, with a reason; idempotent with a key."""
        account_id = request.user.account(account_id)
        return respond(
            await database.transaction(
                pool, lambda conn: service.adjust(conn, account_id, data, clock.now(), idempotency_key)
            )
        )

    @post("/{account_id:str}/reversals", opt={"scope": "admin"}, status_code=201, responses=errors(409))
    async def create_reversal(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
        data: JSONBody[ReversalCreate],
    ) -> Response[Reversal]:
        """Give back what a usage event was charged, as a new entry; reversing it again replays the first answer."""
        account_id = request.user.account(account_id)
        return respond(
            await database.transaction(pool, lambda conn: service.reverse(conn, account_id, data, clock.now()))
        )

    @get("/{account_id:str}/grants", opt={"scope": "ledger:read"})
    async def list_grants(
        self, request: Request[Principal, str, object], clock: NamedDependency[Clock], db: Db, account_id: FromPath[str]
    ) -> Page[Grant]:
        """The account's grants with what is left of each, oldest first."""
        async with db.connect() as conn:
            account = await service.get_account(conn, request.user.account(account_id), clock.now())
            rows = await repository.list_grants(conn, account.id)
        return Page(data=[service.grant_view(row._mapping) for row in rows], next_cursor=None)

    @get("/{account_id:str}/balance", opt={"scope": "ledger:read"})
    async def get_balance(
        self, request: Request[Principal, str, object], clock: NamedDependency[Clock], db: Db, account_id: FromPath[str]
    ) -> Balance:
        """Balance, credits held by pending authorizations, and what is available."""
        async with db.connect() as conn:
            row = await repository.get_account(conn, request.user.account(account_id), clock.now())
        if row is None:
            raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
        return service.balance_view(row)

    @get("/{account_id:str}/ledger", opt={"scope": "ledger:read"})
    async def list_ledger(
        self,
        request: Request[Principal, str, object],
        clock: NamedDependency[Clock],
        read_db: ReadDb,
        account_id: FromPath[str],
        kind: FromQuery[list[EntryKind] | None] = None,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        format_: Format = None,
    ) -> Page[LedgerEntry]:
        """Ledger entries in posting order, each with `balance_after`; filter by `kind` (repeatable) and [from, to).
        With `format=csv` (or `Accept: text/csv`): every matching entry as one CSV file, for finance."""
        after = decode_cursor(cursor, int)
        export = wants_csv(request, format_)
        async with read_db.connect() as conn:
            account = await service.get_account(conn, request.user.account(account_id), clock.now())
            rows = await repository.list_entries(
                conn,
                account_id=account.id,
                kinds=kind,
                start=aware(from_, "from"),
                end=aware(to, "to"),
                after=after[0] if after else None,
                limit=None if export else check_limit(limit) + 1,
            )
        if export:
            header = list(LedgerEntry.__struct_fields__)
            entries = [service.entry_view(row) for row in rows]
            body = to_csv(header, [[getattr(entry, name) for name in header] for entry in entries])
            return csv_response(body, f"ledger-{account.id}.csv")
        return page(rows, limit, lambda row: (row.id,), service.entry_view)


class AuthorizationController(Controller):
    path = "/authorizations"
    tags = ["authorizations"]
    opt = {"scope": "usage:write"}

    @post("/", status_code=201, responses=errors(402, 404, 422))
    async def create_authorization(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        catalog: NamedDependency[Catalog],
        data: JSONBody[AuthorizationCreate],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
    ) -> Response[Authorization]:
        """Hold the worst-case cost of a call against the available balance, or answer 402 `insufficient_credits`
        (or `spend_limit_exceeded`, when it would pass a spend limit of the account, the end user, a tag or the
        key)."""
        reported.check_counts(await request.json())
        account_id = request.user.account(data.account_id)
        if account_id is None:
            raise InvalidRequest("`account_id` is required for a key not bound to an account", param="account_id")
        return respond(
            await database.transaction(
                pool,
                lambda conn: service.authorize(
                    conn, account_id, data, catalog, clock.now(), idempotency_key, request.user.key_id
                ),
            )
        )

    @post("/{authorization_id:str}/release", status_code=200, responses=errors(409))
    async def release_authorization(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        authorization_id: FromPath[str],
    ) -> Authorization:
        """Release a hold before it expires; releasing again answers the same."""
        return await database.transaction(
            pool, lambda conn: service.release(conn, request.user, authorization_id, clock.now())
        )

    @get("/{authorization_id:str}")
    async def get_authorization(
        self,
        request: Request[Principal, str, object],
        clock: NamedDependency[Clock],
        db: Db,
        authorization_id: FromPath[str],
    ) -> Authorization:
        """One hold with its status: pending, settled, released or expired."""
        async with db.connect() as conn:
            row = await repository.get_authorization(conn, request.user.account_id, authorization_id)
        if row is None or request.user.account_id not in (None, row.account_id):
            raise NotFound(f"Authorization '{authorization_id}' not found", code="authorization_not_found")
        return service.authorization_view(row._mapping, clock.now(), event_id=row.event_id)
