"""The schema as SQLAlchemy Core tables; migrations/ is what actually builds it."""

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY

from app.db import metadata

# Credits and USD: 38 digits, 9 of them fractional (see DESIGN.md "Units and money").
Money = Numeric(38, 9)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("overdraft_limit", Money, nullable=False, server_default="0"),
    Column("balance", Money, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('active', 'suspended', 'closed')", name="status"),
    CheckConstraint("overdraft_limit >= 0", name="overdraft_limit"),
    CheckConstraint("id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'", name="id_format"),
)

api_keys = Table(
    "api_keys",
    metadata,
    # The public part of the key; the secret is only ever stored as its SHA-256.
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(
        "cardinality(scopes) > 0 AND scopes <@ ARRAY['catalog:read', 'usage:write', 'ledger:read', 'admin']",
        name="scopes",
    ),
    CheckConstraint("octet_length(secret_hash) = 32", name="secret_hash"),
    Index(None, "account_id"),
)
