from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

AccountId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Status = Literal["active", "suspended", "closed"]


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
