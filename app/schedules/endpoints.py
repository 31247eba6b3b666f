import asyncpg
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from app import db as database
from app.clock import Clock
from app.keys.schemas import Principal
from app.openapi import errors
from app.schedules import service
from app.schedules.schemas import Schedule, ScheduleCreate, ScheduleList


class ScheduleController(Controller):
    path = "/accounts/{account_id:str}/grant-schedules"
    tags = ["grants"]

    @post("/", opt={"scope": "admin"}, status_code=201, responses=errors(404))
    async def create_schedule(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
        data: JSONBody[ScheduleCreate],
    ) -> Schedule:
        """A recurring grant: `amount` credits each day, week or month, issued as ordinary grants (each naming
        the schedule), once per period even with several workers or after downtime. A schedule that has started
        gives its first grant at once."""
        account_id = request.user.account(account_id)
        return await database.transaction(pool, lambda conn: service.create(conn, account_id, data, clock.now()))

    @get("/", opt={"scope": "ledger:read"}, responses=errors(404))
    async def list_schedules(
        self, request: Request[Principal, str, object], pool: NamedDependency[asyncpg.Pool], account_id: FromPath[str]
    ) -> ScheduleList:
        """The account's grant schedules, ended ones included, with when each gives its next grant."""
        account_id = request.user.account(account_id)
        async with pool.acquire() as conn:
            return ScheduleList(data=await service.list_for(conn, account_id))

    @get("/{schedule_id:str}", opt={"scope": "ledger:read"}, responses=errors(404))
    async def get_schedule(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        account_id: FromPath[str],
        schedule_id: FromPath[str],
    ) -> Schedule:
        """One grant schedule."""
        account_id = request.user.account(account_id)
        async with pool.acquire() as conn:
            return await service.get(conn, account_id, schedule_id)

    @delete("/{schedule_id:str}", opt={"scope": "admin"}, status_code=204, responses=errors(404))
    async def end_schedule(
        self,
        request: Request[Principal, str, object],
        pool: NamedDependency[asyncpg.Pool],
        clock: NamedDependency[Clock],
        account_id: FromPath[str],
        schedule_id: FromPath[str],
    ) -> None:
        """End the schedule: no grant after now; those issued stay."""
        account_id = request.user.account(account_id)
        await database.transaction(pool, lambda conn: service.end(conn, account_id, schedule_id, clock.now()))
