from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

AccountId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Status = Literal["active", "suspended", "closed"]
EntryKind = Literal["grant", "usage", "adjustment", "expiration", "reversal"]


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    id: AccountId | None = None
    overdraft_limit: Decimal = Decimal(0)


class Account(msgspec.Struct):
    id: str
    name: str
    status: str
    # Amounts are decimal strings with 9 places, e.g. "12.345000000".
    overdraft_limit: str
    balance: str
    pending: str
    available: str
    created_at: datetime


class GrantCreate(msgspec.Struct, forbid_unknown_fields=True):
    amount: Decimal
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    expires_at: datetime | None = None


class Grant(msgspec.Struct):
    id: int
    account_id: str
    amount: str
    remaining: str
    description: str | None
    expires_at: datetime | None
    expired_at: datetime | None
    created_at: datetime


class GrantCreated(Grant, omit_defaults=True):
    balance_after: str
    replay: bool = False


class Balance(msgspec.Struct):
    account_id: str
    balance: str
    pending: str
    available: str
    overdraft_limit: str


class LedgerEntry(msgspec.Struct):
    id: int
    account_id: str
    kind: str
    amount: str
    balance_after: str
    counterparty: str
    event_id: str | None
    grant_id: int | None
    description: str | None
    created_at: datetime
