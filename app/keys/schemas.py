from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.errors import NotFound

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


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    scopes: frozenset[str]
    account_id: str | None

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def is_finance(self) -> bool:
        """Upstream costs and margins are for operator and finance keys only."""
        return self.has("ledger:read")

    def account(self, account_id: str | None) -> str | None:
        """The account this request may act for; another account's id looks like an unknown one."""
        if self.account_id is None:
            return account_id
        if account_id is not None and account_id != self.account_id:
            raise NotFound(f"Account '{account_id}' not found", code="account_not_found")
        return self.account_id
