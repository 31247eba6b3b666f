from datetime import datetime
from typing import Annotated, Literal

import msgspec

Scope = Literal["catalog:read", "usage:write", "ledger:read", "admin"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1)]
    account_id: str | None = None
    expires_at: datetime | None = None


class Key(msgspec.Struct):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    account_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class CreatedKey(Key):
    key: str
    """The secret, shown only in this response."""


class AuditEntry(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict
