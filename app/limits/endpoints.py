import asyncpg
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from app import db as database
from app.clock import Clock
from app.keys.schemas import Principal
from app.limits import service
from app.limits.schemas import LimitCreate, LimitList, SpendLimit
from app.openapi import errors


class LimitController(Controller):
    path = "/accounts/{account_id:str}/limits"
    tags = ["spend limits"]

    @post("/", opt={"scope": "admin"}, status_code=201, responses=errors(404, 409))
    async def create_limit(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
        data: JSONBody[LimitCreate],
    ) -> SpendLimit:
        """Limit the account's spend, or one end user's, tag's or reporting key's, per day, week, month or in
        total (`period: none`). A hold that would pass it is refused with 402 `spend_limit_exceeded`; usage past
        it is still recorded, flagged `over_limit`, and announced once per period (`spend_limit.reached`)."""
        account_id = request.user.account(account_id)
        return await database.transaction(pool, lambda conn: service.create(conn, account_id, data, clock.now()))

    @get("/", opt={"scope": "ledger:read"}, responses=errors(404))
    async def list_limits(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
    ) -> LimitList:
        """Each limit with its current period: what was spent in it, what open holds keep, what remains."""
        account_id = request.user.account(account_id)
        async with pool.acquire() as conn:
            return LimitList(data=await service.list_for(conn, account_id, clock.now()))

    @delete("/{limit_id:str}", opt={"scope": "admin"}, status_code=204, responses=errors(404))
    async def delete_limit(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        account_id: FromPath[str],
        limit_id: FromPath[str],
    ) -> None:
        """Remove a limit; usage already flagged past it stays flagged."""
        account_id = request.user.account(account_id)
        await database.transaction(pool, lambda conn: service.delete(conn, account_id, limit_id))
