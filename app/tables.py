"""The schema as SQLAlchemy Core tables; migrations/ is what actually builds it."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from app.db import metadata
from app.pricing import SERVICE_TIERS

# Credits and USD: 38 digits, 9 of them fractional (see docs/DESIGN.md, "Units and rounding").
Money = Numeric(38, 9)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("overdraft_limit", Money, nullable=False, server_default="0"),
    Column("balance", Money, nullable=False, server_default="0"),
    # Earliest expiry among the account's grants with credits left: writers expire grants when it
    # has passed, without looking at the grants on every write.
    Column("next_expiry_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # balance.low fires when the balance falls to the threshold while armed, and re-arms once above it.
    Column("low_balance_threshold", Money),
    Column("low_balance_armed", Boolean, nullable=False, server_default=true()),
    # Whether any spend limit is set: recording usage of an account without one reads no limits.
    Column("has_spend_limits", Boolean, nullable=False, server_default=false()),
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
    # No foreign key: a reference table points into no per-account table (the API checks the account).
    Column("account_id", Text, nullable=True),
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

# Rates are upstream USD per 1M tokens, unscaled NUMERIC so no published digit is ever lost.
Rate = Numeric()

providers = Table(
    "providers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    # A disabled provider's models stay in the catalog but answer `provider_not_configured`.
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("id ~ '^[a-z0-9][a-z0-9_.-]*$'", name="id_format"),
)

models = Table(
    "models",
    metadata,
    Column("id", Text, primary_key=True),
    Column("provider", Text, ForeignKey("providers.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("context_window", Integer),
    Column("max_output_tokens", Integer),
    Column("max_input_tokens", Integer),
    Column("dimensions", Integer),
    # Capabilities: NULL means unknown, which is not the same as false.
    Column("supports_tools", Boolean),
    Column("supports_vision", Boolean),
    Column("supports_reasoning", Boolean),
    Column("supports_prompt_caching", Boolean),
    Column("supports_json_output", Boolean),
    Column("supports_audio_input", Boolean),
    Column("created", Date),
    Column("deprecation_date", Date),
    # The data's match clause (genai-prices' JSON form: equals, starts_with, ..., or, and), which
    # resolves the dated snapshots of the model (app/catalog/resolve.py).
    Column("match", JSONB),
    # What the model takes in and gives out ("text", "image", "audio", ...); NULL: unknown.
    Column("input_modalities", ARRAY(Text)),
    Column("output_modalities", ARRAY(Text)),
    # Where each fact came from: {"context_window": "litellm 1.109.1", ...}.
    Column("facts", JSONB, nullable=False, server_default="{}"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("type IN ('language', 'embedding')", name="type"),
    CheckConstraint("id = provider || '/' || name", name="id_is_provider_name"),
    Index(None, "provider"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    # The provider whose calls the alias names ('' = any): an Azure deployment name means a model
    # only when Azure served the call.
    Column("provider", Text, primary_key=True, server_default=""),
    Column("model_id", Text, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    # catalog (from an import) or operator (POST /catalog/aliases): imports never touch an operator's.
    Column("source", Text, nullable=False, server_default="catalog"),
    CheckConstraint("source IN ('catalog', 'operator')", name="source"),
    Index(None, "model_id"),
    # Names resolve case-insensitively, so two aliases may not differ only in case.
    Index("uq_model_aliases_lower_alias", text("lower(alias)"), "provider", unique=True),
)

prices = Table(
    "prices",
    metadata,
    # Append-only: a changed price is a new row, so past events keep the version they were priced by.
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), nullable=False),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("input", Rate),
    Column("output", Rate),
    Column("cached_input", Rate),
    Column("cache_write", Rate),
    Column("per_request", Rate, nullable=False, server_default="0"),
    # 1-hour cache writes; cache_write is the 5-minute rate.
    Column("cache_write_1h", Rate),
    # [{"above_input_tokens": int, "input": "decimal string" | null, ...}]: the cliff tiers.
    Column("tiers", JSONB, nullable=False, server_default="[]"),
    # Rate sets that replace the base rates for some calls: a service tier, a region, a window of the
    # UTC day ([{"service_tier": "flex", "input": "0.625", ...}]; app/pricing.py says which applies).
    Column("variants", JSONB, nullable=False, server_default="[]"),
    Column("source", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("model_id", "effective_from"),
    CheckConstraint(
        "input >= 0 AND output >= 0 AND cached_input >= 0 AND cache_write >= 0 AND per_request >= 0"
        " AND cache_write_1h >= 0",
        name="non_negative",
    ),
)

margins = Table(
    "margins",
    metadata,
    # Versioned overrides of DEFAULT_MARGIN; NULL margin ends an override from effective_from on.
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("scope", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("margin", Numeric),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("scope", "target", "effective_from"),
    CheckConstraint("scope IN ('provider', 'model')", name="scope"),
    CheckConstraint("margin > 0", name="positive"),
)

# One row: bumped by every catalog write, so each worker knows when its in-memory copy is stale.
catalog_version = Table(
    "catalog_version",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=true()),
    Column("version", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("id", name="single_row"),
)

Tokens = BigInteger
SERVICE_TIERS_CHECK = f"service_tier IN ({', '.join(repr(t) for t in SERVICE_TIERS)})"

# Ledger: every entry moves `amount` credits between a customer account and a system account
# (`counterparty`), so its two legs, +amount and -amount, sum to zero. System balances are sums of
# entries, never rows of their own: no single row is written by every transaction.
SYSTEM_ACCOUNTS = ("system:grants", "system:revenue", "system:expired", "system:adjustments")
ENTRY_KINDS = ("grant", "usage", "adjustment", "expiration", "reversal")

grants = Table(
    "grants",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("amount", Money, nullable=False),
    # What is left to consume; usage draws from the earliest-expiring grant first.
    Column("remaining", Money, nullable=False),
    Column("description", Text),
    Column("expires_at", DateTime(timezone=True)),
    Column("expired_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account_id", "id"),
    CheckConstraint("amount > 0 AND remaining >= 0 AND remaining <= amount", name="amounts"),
    Index("ix_grants_open", "account_id", "expires_at", postgresql_where=text("remaining > 0")),
    # When grant.expiring was sent for it (once, ahead of expires_at).
    Column("expiry_announced_at", DateTime(timezone=True)),
    # Made by a recurring grant: the schedule, and the start of the period it is for (once per period).
    Column("schedule_id", Text),
    Column("period_start", DateTime(timezone=True)),
    Index(
        "uq_grants_schedule_period",
        "account_id",
        "schedule_id",
        "period_start",
        unique=True,
        postgresql_where=text("schedule_id IS NOT NULL"),
    ),
    Index(
        "ix_grants_expiry_unannounced",
        "expires_at",
        postgresql_where=text("expiry_announced_at IS NULL AND remaining > 0 AND expires_at IS NOT NULL"),
    ),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("model_id", Text, ForeignKey("models.id"), nullable=False),
    # Everything needed to recompute the charge later: the price version, margin and credit unit used.
    Column("price_id", BigInteger, ForeignKey("prices.id"), nullable=False),
    Column("margin", Numeric, nullable=False),
    Column("credits_per_usd", Numeric, nullable=False),
    Column("input_tokens", Tokens, nullable=False),
    Column("output_tokens", Tokens, nullable=False),
    Column("cached_input_tokens", Tokens, nullable=False),
    Column("cache_write_tokens", Tokens, nullable=False),
    Column("reasoning_tokens", Tokens, nullable=False),
    Column("cost", Money, nullable=False),
    Column("upstream_cost_usd", Money, nullable=False),
    # The cost's worth in USD (cost / credits_per_usd, rounded once): revenue in reports.
    Column("credits_usd", Money, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("authorization_id", Text),
    Column("metadata", JSONB),
    # Past the overdraft limit: still recorded (the usage happened), and flagged.
    Column("overdrawn", Boolean, nullable=False),
    # What the client reported: the model string when it is not `model_id`, the provider that served
    # the call, and the provider's usage object with its format (so any charge can be explained).
    Column("reported_model", Text),
    Column("provider", Text),
    Column("usage", JSONB),
    Column("usage_format", Text),
    # Part of cache_write_tokens.
    Column("cache_write_1h_tokens", Tokens, nullable=False, server_default="0"),
    # When the event was first recorded unrated, if it was; recorded_at is when it was charged.
    Column("unrated_since", DateTime(timezone=True)),
    # How the call was served: the provider's service tier, and the region (where prices differ by it).
    Column("service_tier", Text, nullable=False, server_default="default"),
    Column("region", Text),
    # Attribution: the customer's own user, its tags, and the API key that reported the event.
    Column("end_user", Text),
    Column("tags", ARRAY(Text)),
    Column("api_key_id", Text),
    # Recorded past a spend limit: usage that happened is kept, and flagged.
    Column("over_limit", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("account_id", "id"),
    UniqueConstraint("account_id", "event_id"),
    CheckConstraint(SERVICE_TIERS_CHECK, name="service_tier"),
    Index(None, "account_id", "occurred_at"),
    Index(None, "occurred_at"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", Money, nullable=False),
    Column("balance_after", Money, nullable=False),
    Column("counterparty", Text, nullable=False),
    Column("usage_event_id", BigInteger),
    Column("grant_id", BigInteger),
    Column("description", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"kind IN ({', '.join(repr(k) for k in ENTRY_KINDS)})", name="kind"),
    CheckConstraint(f"counterparty IN ({', '.join(repr(a) for a in SYSTEM_ACCOUNTS)})", name="counterparty"),
    PrimaryKeyConstraint("account_id", "id"),
    ForeignKeyConstraint(["account_id", "usage_event_id"], ["usage_events.account_id", "usage_events.id"]),
    ForeignKeyConstraint(["account_id", "grant_id"], ["grants.account_id", "grants.id"]),
    Index(None, "account_id", "usage_event_id", unique=True, postgresql_where=text("kind = 'usage'")),
    # A usage event is reversed at most once.
    Index(
        "uq_ledger_entries_reversal",
        "account_id",
        "usage_event_id",
        unique=True,
        postgresql_where=text("kind = 'reversal'"),
    ),
    Index(None, "account_id", "grant_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # The account the key belongs to, also named in `scope` with the endpoint. No foreign key: a key
    # is claimed before the account is looked up (an unknown account's claim rolls back with its 404).
    Column("account_id", Text, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request", JSONB, nullable=False),
    Column("status", Integer, nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

authorizations = Table(
    "authorizations",
    metadata,
    # A hold is a memo, not a posting: it moves no credits, so it is no ledger entry. It reduces what
    # is available (balance - pending) until it is settled by a usage event, released, or expires.
    Column("id", Text, nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("model_id", Text, ForeignKey("models.id"), nullable=False),
    Column("amount", Money, nullable=False),
    Column("input_tokens", Tokens, nullable=False),
    Column("max_output_tokens", Tokens, nullable=False),
    Column("price_id", BigInteger, ForeignKey("prices.id"), nullable=False),
    Column("margin", Numeric, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True)),
    Column("settled_at", DateTime(timezone=True)),
    Column("usage_event_id", BigInteger),
    Column("settled_amount", Money),
    # How the call was served: the provider's service tier, and the region (where prices differ by it).
    Column("service_tier", Text, nullable=False, server_default="default"),
    Column("region", Text),
    PrimaryKeyConstraint("account_id", "id"),
    ForeignKeyConstraint(["account_id", "usage_event_id"], ["usage_events.account_id", "usage_events.id"]),
    CheckConstraint("amount >= 0", name="amount"),
    CheckConstraint(SERVICE_TIERS_CHECK, name="service_tier"),
    Index("ix_authorizations_open", "account_id", postgresql_where=text("settled_at IS NULL AND released_at IS NULL")),
    # What it holds for, as a usage event names it: counted against the same spend limits.
    Column("end_user", Text),
    Column("tags", ARRAY(Text)),
    Column("api_key_id", Text),
    # When authorization.expired was sent for it (once, after it expired unsettled).
    Column("expiry_announced_at", DateTime(timezone=True)),
    Index(
        "ix_authorizations_expiry_unannounced",
        "expires_at",
        postgresql_where=text("expiry_announced_at IS NULL AND settled_at IS NULL AND released_at IS NULL"),
    ),
)


unrated_usage = Table(
    "unrated_usage",
    metadata,
    # Usage the catalog could not price when it was reported: stored, never charged, and moved into
    # usage_events (with its ledger entry) by the rating that prices it (app/usage/rating.py). Ids
    # come from usage_events' sequence, so one listing of both pages by (occurred_at, id).
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("id", BigInteger, primary_key=True, server_default=text("nextval('usage_events_id_seq')")),
    Column("event_id", Text, nullable=False),
    Column("reported_model", Text, nullable=False),
    Column("provider", Text),
    # model_not_found, or model_unpriced: the model is known, its price for this usage is not.
    Column("reason", Text, nullable=False),
    Column("model_id", Text),
    Column("input_tokens", Tokens, nullable=False),
    Column("output_tokens", Tokens, nullable=False),
    Column("cached_input_tokens", Tokens, nullable=False),
    Column("cache_write_tokens", Tokens, nullable=False),
    Column("reasoning_tokens", Tokens, nullable=False),
    Column("cache_write_1h_tokens", Tokens, nullable=False, server_default="0"),
    Column("usage", JSONB),
    Column("usage_format", Text),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("metadata", JSONB),
    # How the call was served: the provider's service tier, and the region (where prices differ by it).
    Column("service_tier", Text, nullable=False, server_default="default"),
    Column("region", Text),
    Column("end_user", Text),
    Column("tags", ARRAY(Text)),
    Column("api_key_id", Text),
    UniqueConstraint("account_id", "event_id"),
    CheckConstraint(SERVICE_TIERS_CHECK, name="service_tier"),
    CheckConstraint("reason IN ('model_not_found', 'model_unpriced')", name="reason"),
    Index("ix_unrated_usage_occurred_at", "occurred_at", "id"),
)


def rollup_sums() -> list[Column]:
    """The sums a usage rollup keeps, daily or monthly. Unbounded NUMERIC: each event is bounded
    (MAX_TOKENS, the ledger's amounts), a sum of any number of them is not (migration 0010)."""
    return [
        Column("events", BigInteger, nullable=False),
        Column("input_tokens", Numeric, nullable=False),
        Column("output_tokens", Numeric, nullable=False),
        Column("cached_input_tokens", Numeric, nullable=False),
        Column("cache_write_tokens", Numeric, nullable=False),
        Column("reasoning_tokens", Numeric, nullable=False),
        Column("cost", Numeric, nullable=False),
        Column("upstream_cost_usd", Numeric, nullable=False),
        # The credits' USD value: each event's cost / its credits_per_usd, rounded to 9 places, summed.
        Column("credits_usd", Numeric, nullable=False),
        # Credits given back by reversals of these events (counted on the day the event occurred).
        Column("reversed", Numeric, nullable=False, server_default="0"),
    ]


usage_rollups = Table(
    "usage_rollups",
    metadata,
    # Daily sums per account, model and reporting key, kept in the transaction that records the events,
    # so reports read thousands of rows instead of millions. Days are UTC days of occurred_at; `''`
    # stands for no key (events recorded before keys were; a key column cannot be NULL).
    Column("day", Date, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), primary_key=True),
    *rollup_sums(),
    Column("api_key_id", Text, primary_key=True, server_default=""),
    Index(None, "account_id", "day"),
    Index(None, "model_id", "day"),
    # Updated in place again and again: room on each page keeps the updates HOT.
    postgresql_with={"fillfactor": 70},
)

usage_rollups_monthly = Table(
    "usage_rollups_monthly",
    metadata,
    # The daily rollups summed by UTC month, written by the same statements as the daily ones
    # (app/usage/repository.py): a report over whole months reads a thirtieth of the rows. The end
    # users' and the tags' rollups have monthly twins of their own, below them.
    Column("month", Date, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), primary_key=True),
    *rollup_sums(),
    Column("api_key_id", Text, primary_key=True, server_default=""),
    postgresql_with={"fillfactor": 70},
)

usage_rollups_end_users = Table(
    "usage_rollups_end_users",
    metadata,
    # Daily sums per end user (and model and reporting key), written only for events that name one, by
    # the statement that records them: reports about anything else read none of these rows.
    Column("day", Date, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("end_user", Text, primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), primary_key=True),
    Column("api_key_id", Text, primary_key=True),
    *rollup_sums(),
    Index(None, "account_id", "end_user", "day"),
    postgresql_with={"fillfactor": 70},
)

usage_rollups_tags = Table(
    "usage_rollups_tags",
    metadata,
    # Daily sums per tag: an event counts once under each of its tags. Written only for events that
    # carry tags, by the statement that records them.
    Column("day", Date, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("tag", Text, primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), primary_key=True),
    *rollup_sums(),
    Index(None, "account_id", "tag", "day"),
    postgresql_with={"fillfactor": 70},
)

usage_rollups_end_users_monthly = Table(
    "usage_rollups_end_users_monthly",
    metadata,
    # usage_rollups_end_users summed by UTC month, written by the same statements.
    Column("month", Date, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("end_user", Text, primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), primary_key=True),
    Column("api_key_id", Text, primary_key=True),
    *rollup_sums(),
    Index(None, "account_id", "end_user", "month"),
    postgresql_with={"fillfactor": 70},
)

usage_rollups_tags_monthly = Table(
    "usage_rollups_tags_monthly",
    metadata,
    # usage_rollups_tags summed by UTC month, written by the same statements.
    Column("month", Date, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("tag", Text, primary_key=True),
    Column("model_id", Text, ForeignKey("models.id"), primary_key=True),
    *rollup_sums(),
    Index(None, "account_id", "tag", "month"),
    postgresql_with={"fillfactor": 70},
)

grant_schedules = Table(
    "grant_schedules",
    metadata,
    # A recurring grant: `amount` credits each day, week or month from `starts_at` (until `ends_at`),
    # issued as ordinary grants. Rollover: `none` (each grant expires when its period ends), `all`
    # (they do not, unless `grant_ttl_seconds` says when), `capped` (each expires when its period
    # ends, and the next grant adds back what expired, up to `rollover_cap`).
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("id", Text, nullable=False),
    Column("amount", Money, nullable=False),
    Column("period", Text, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True)),
    Column("rollover", Text, nullable=False),
    Column("rollover_cap", Money),
    Column("grant_ttl_seconds", BigInteger),
    Column("description", Text),
    Column("next_period_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("account_id", "id"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("period IN ('day', 'week', 'month')", name="period"),
    CheckConstraint("rollover IN ('none', 'all', 'capped')", name="rollover"),
    CheckConstraint(
        "(rollover = 'capped') = (rollover_cap IS NOT NULL) AND coalesce(rollover_cap, 0) >= 0", name="cap"
    ),
    Index("ix_grant_schedules_due", "next_period_at", postgresql_where=text("ended_at IS NULL")),
)

spend_limits = Table(
    "spend_limits",
    metadata,
    # At most `amount` credits per period (UTC day, ISO week from Monday, calendar month, or `none`: for
    # good) for the account, one end user, one tag or one reporting key (`value`) of it.
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("value", Text),
    Column("amount", Money, nullable=False),
    Column("period", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account_id", "id"),
    CheckConstraint("scope IN ('account', 'end_user', 'tag', 'api_key')", name="scope"),
    CheckConstraint("period IN ('day', 'week', 'month', 'none')", name="period"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("(scope = 'account') = (value IS NULL)", name="value"),
    Index("uq_spend_limits_target", "account_id", "scope", text("coalesce(value, '')"), "period", unique=True),
)

spend_limit_periods = Table(
    "spend_limit_periods",
    metadata,
    # The periods in which a limit was reached: `spend_limit.reached` is announced when the row is made.
    Column("account_id", Text, nullable=False),
    Column("limit_id", Text, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("reached_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account_id", "limit_id", "period_start"),
    ForeignKeyConstraint(
        ["account_id", "limit_id"], ["spend_limits.account_id", "spend_limits.id"], ondelete="CASCADE"
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    # Who did what to keys and money, kept apart from the ledger; never holds a secret.
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default="{}"),
    Index(None, "target"),
)

# Webhooks (migration 0012). Endpoints are global, like the catalog: no key into per-account tables.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Text, primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(Text), nullable=False),
    Column("description", Text),
    # Deliveries are signed with it, so it is kept as is (unlike API keys, which are only compared).
    Column("secret", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("cardinality(events) > 0", name="events"),
)

# The outbox: written by the statement that makes the change an event announces.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    # The webhook-id header: the same for every attempt and every endpoint.
    Column("id", Text, primary_key=True, server_default=text("'msg_' || replace(gen_random_uuid()::text, '-', '')")),
    Column("type", Text, nullable=False),
    # The body sent: {"type", "timestamp", "data"}.
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("endpoint_id", Text, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Pending: when it is due (or, while a worker sends it, when its claim lapses).
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_status", Integer),
    Column("last_response", Text),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Failed attempts are retried for a day from this (the creation, or a retry asked for by hand).
    Column("retry_since", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["account_id", "event_id"], ["webhook_events.account_id", "webhook_events.id"], ondelete="CASCADE"
    ),
    UniqueConstraint("account_id", "event_id", "endpoint_id"),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index(None, "endpoint_id", "id"),
)
