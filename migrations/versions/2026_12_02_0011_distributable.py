"""A schema that Citus can distribute by account (docs/scale-out.md, "Schema rules").

Per-account tables are keyed by the account first: primary keys (account_id, id), the ledger's
unique indexes and the idempotency keys name the account, and foreign keys between per-account
tables are composite, to (account_id, id). API keys become a reference table, with no foreign key
into accounts (the API checks the account when a key is made). No table has a trigger: the code
that writes keeps the monthly rollups in the statement that writes the daily ones, bumps the catalog
version and sends the notifications in the writer's transaction.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CATALOG_TABLES = ("providers", "models", "model_aliases", "prices", "margins")
# Composite foreign keys between per-account tables: (table, column, referred table), old name.
LINKS = (
    ("ledger_entries", "usage_event_id", "usage_events"),
    ("ledger_entries", "grant_id", "grants"),
    ("authorizations", "usage_event_id", "usage_events"),
)
KEYED = ("grants", "usage_events", "ledger_entries", "authorizations")
SUMS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost", "upstream_cost_usd", "credits_usd", "reversed",
)  # fmt: skip


def upgrade() -> None:
    for table, column, referred in LINKS:
        op.drop_constraint(op.f(f"fk_{table}_{column}_{referred}"), table, type_="foreignkey")
    for table in KEYED:
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.create_primary_key(op.f(f"pk_{table}"), table, ["account_id", "id"])
    for table, column, referred in LINKS:
        op.create_foreign_key(
            op.f(f"fk_{table}_account_id_{referred}"), table, referred, ["account_id", column], ["account_id", "id"]
        )
    # The primary key (account_id, id) is the index the ledger's listings read.
    op.drop_index(op.f("ix_ledger_entries_account_id_id"), table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_usage_event_id"), table_name="ledger_entries")
    op.create_index(
        op.f("ix_ledger_entries_account_id_usage_event_id"),
        "ledger_entries",
        ["account_id", "usage_event_id"],
        unique=True,
        postgresql_where="kind = 'usage'",
    )
    op.drop_index("uq_ledger_entries_reversal", table_name="ledger_entries")
    op.create_index(
        "uq_ledger_entries_reversal",
        "ledger_entries",
        ["account_id", "usage_event_id"],
        unique=True,
        postgresql_where="kind = 'reversal'",
    )
    op.drop_index(op.f("ix_ledger_entries_grant_id"), table_name="ledger_entries")
    op.create_index(op.f("ix_ledger_entries_account_id_grant_id"), "ledger_entries", ["account_id", "grant_id"])

    # Idempotency keys belong to the account their scope names ("grant:<account id>", ...). No
    # foreign key: a key is claimed before the account is looked up, and an unknown account's
    # claim is rolled back with its 404.
    op.execute("ALTER TABLE idempotency_keys ADD COLUMN account_id text")
    op.execute("UPDATE idempotency_keys SET account_id = substr(scope, strpos(scope, ':') + 1)")
    op.execute("ALTER TABLE idempotency_keys ALTER COLUMN account_id SET NOT NULL")
    op.drop_constraint(op.f("pk_idempotency_keys"), "idempotency_keys", type_="primary")
    op.create_primary_key(op.f("pk_idempotency_keys"), "idempotency_keys", ["account_id", "scope", "key"])

    # A reference table holds no foreign key into a distributed one.
    op.drop_constraint(op.f("fk_api_keys_account_id_accounts"), "api_keys", type_="foreignkey")

    op.execute("DROP TRIGGER usage_rollups_to_months ON usage_rollups")
    op.execute("DROP FUNCTION usage_rollups_to_months()")
    op.execute("DROP TRIGGER api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION api_keys_changed()")
    for table in CATALOG_TABLES:
        op.execute(f"DROP TRIGGER {table}_changed ON {table}")
    op.execute("DROP FUNCTION catalog_changed()")


def downgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE catalog_version SET version = version + 1;
            PERFORM pg_notify('catalog_changed', '');
            RETURN NULL;
        END $$
        """
    )
    for table in CATALOG_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION catalog_changed()"
        )
    op.execute(
        """
        CREATE FUNCTION api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('api_keys_changed', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER api_keys_changed "
        "AFTER UPDATE OF id, secret_hash, scopes, account_id, expires_at, revoked_at OR DELETE OR TRUNCATE "
        "ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed()"
    )
    op.execute(
        f"""
        CREATE FUNCTION usage_rollups_to_months() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND (OLD.day, OLD.account_id, OLD.model_id)
                    IS NOT DISTINCT FROM (NEW.day, NEW.account_id, NEW.model_id) THEN
                {_add_to_month("NEW", [f"NEW.{c} - OLD.{c}" for c in SUMS])}
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN {_add_to_month("OLD", [f"-OLD.{c}" for c in SUMS])} END IF;
            IF TG_OP IN ('UPDATE', 'INSERT') THEN {_add_to_month("NEW", [f"NEW.{c}" for c in SUMS])} END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER usage_rollups_to_months AFTER INSERT OR UPDATE OR DELETE ON usage_rollups "
        "FOR EACH ROW EXECUTE FUNCTION usage_rollups_to_months()"
    )

    op.create_foreign_key(op.f("fk_api_keys_account_id_accounts"), "api_keys", "accounts", ["account_id"], ["id"])

    op.drop_constraint(op.f("pk_idempotency_keys"), "idempotency_keys", type_="primary")
    op.create_primary_key(op.f("pk_idempotency_keys"), "idempotency_keys", ["scope", "key"])
    op.drop_column("idempotency_keys", "account_id")

    op.drop_index(op.f("ix_ledger_entries_account_id_grant_id"), table_name="ledger_entries")
    op.create_index(op.f("ix_ledger_entries_grant_id"), "ledger_entries", ["grant_id"])
    op.drop_index("uq_ledger_entries_reversal", table_name="ledger_entries")
    op.create_index(
        "uq_ledger_entries_reversal",
        "ledger_entries",
        ["usage_event_id"],
        unique=True,
        postgresql_where="kind = 'reversal'",
    )
    op.drop_index(op.f("ix_ledger_entries_account_id_usage_event_id"), table_name="ledger_entries")
    op.create_index(
        op.f("ix_ledger_entries_usage_event_id"),
        "ledger_entries",
        ["usage_event_id"],
        unique=True,
        postgresql_where="kind = 'usage'",
    )
    op.create_index(op.f("ix_ledger_entries_account_id_id"), "ledger_entries", ["account_id", "id"])
    for table, _, referred in LINKS:
        op.drop_constraint(op.f(f"fk_{table}_account_id_{referred}"), table, type_="foreignkey")
    for table in KEYED:
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.create_primary_key(op.f(f"pk_{table}"), table, ["id"])
    for table, column, referred in LINKS:
        op.create_foreign_key(op.f(f"fk_{table}_{column}_{referred}"), table, referred, [column], ["id"])


def _add_to_month(row: str, values: list[str]) -> str:
    """An upsert adding `values` (the sums, in SUMS order) to the month of the daily rollup `row`."""
    return f"""
        INSERT INTO usage_rollups_monthly AS m (month, account_id, model_id, {", ".join(SUMS)})
        VALUES (date_trunc('month', {row}.day)::date, {row}.account_id, {row}.model_id, {", ".join(values)})
        ON CONFLICT (month, account_id, model_id) DO UPDATE SET
            {", ".join(f"{c} = m.{c} + excluded.{c}" for c in SUMS)};
    """  # noqa: S608 (built from constants only)
