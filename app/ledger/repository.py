from decimal import Decimal

from sqlalchemy import Row, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.tables import accounts


async def account_exists(conn: AsyncConnection, account_id: str) -> bool:
    query = select(accounts.c.id).where(accounts.c.id == account_id)
    return (await conn.execute(query)).first() is not None


async def insert_account(conn: AsyncConnection, *, account_id: str, name: str, overdraft_limit: Decimal) -> Row | None:
    """The new account, or None when the id is taken."""
    query = (
        insert(accounts)
        .values(id=account_id, name=name, overdraft_limit=overdraft_limit)
        .on_conflict_do_nothing(index_elements=[accounts.c.id])
        .returning(accounts)
    )
    return (await conn.execute(query)).first()


async def get_account(conn: AsyncConnection, account_id: str) -> Row | None:
    return (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()


async def list_accounts(conn: AsyncConnection, *, only: str | None, after: str | None, limit: int) -> list[Row]:
    query = select(accounts).order_by(accounts.c.id).limit(limit)
    if only is not None:
        query = query.where(accounts.c.id == only)
    if after is not None:
        query = query.where(accounts.c.id > after)
    return list((await conn.execute(query)).all())
