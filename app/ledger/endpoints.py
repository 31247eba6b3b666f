from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from app.auth import Principal
from app.db import Db
from app.ledger import repository, service
from app.ledger.schemas import Account, AccountCreate
from app.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]

    @post("/", opt={"scope": "admin"}, status_code=201)
    async def create_account(self, db: Db, data: JSONBody[AccountCreate]) -> Account:
        """Create a customer account; `id` is generated when omitted."""
        async with db.begin() as conn:
            return await service.create_account(conn, data)

    @get("/", opt={"scope": "ledger:read"})
    async def list_accounts(
        self,
        request: Request[Principal, str, object],
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
            )
        return page(rows, limit, lambda row: (row.id,), service.to_account)

    @get("/{account_id:str}", opt={"scope": "ledger:read"})
    async def get_account(self, request: Request[Principal, str, object], db: Db, account_id: FromPath[str]) -> Account:
        """One account with its balance, pending holds and available credits."""
        async with db.connect() as conn:
            return await service.get_account(conn, request.user.account(account_id))
