import secrets
from decimal import Decimal

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Conflict, NotFound
from app.ledger import repository
from app.ledger.schemas import Account, AccountCreate
from app.money import check_amount, money


def to_account(row: Row) -> Account:
    # Holds arrive with authorizations; until then nothing is pending.
    pending = Decimal(0)
    return Account(
        id=row.id,
        name=row.name,
        status=row.status,
        overdraft_limit=money(row.overdraft_limit),
        balance=money(row.balance),
        pending=money(pending),
        available=money(row.balance - pending),
        created_at=row.created_at,
    )


async def create_account(conn: AsyncConnection, data: AccountCreate) -> Account:
    account_id = data.id or f"acct_{secrets.token_hex(8)}"
    overdraft_limit = check_amount(data.overdraft_limit, "overdraft_limit")
    row = await repository.insert_account(conn, account_id=account_id, name=data.name, overdraft_limit=overdraft_limit)
    if row is None:
        raise Conflict(f"Account '{account_id}' already exists", code="account_exists", param="id")
    return to_account(row)


async def get_account(conn: AsyncConnection, account_id: str) -> Account:
    row = await repository.get_account(conn, account_id)
    if row is None:
        raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
    return to_account(row)
