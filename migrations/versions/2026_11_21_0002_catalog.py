"""Catalog: providers, models, aliases, versioned prices and margins.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 04:03:31.323925+00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

CATALOG_TABLES = ("providers", "models", "model_aliases", "prices", "margins")
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("id", name=op.f("ck_catalog_version_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_version")),
    )
    op.create_table(
        "margins",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("margin", sa.Numeric(), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("scope IN ('provider', 'model')", name=op.f("ck_margins_scope")),
        sa.CheckConstraint("margin > 0", name=op.f("ck_margins_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_margins")),
        sa.UniqueConstraint("scope", "target", "effective_from", name=op.f("uq_margins_scope_target_effective_from")),
    )
    op.create_table(
        "providers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id ~ '^[a-z0-9][a-z0-9_.-]*$'", name=op.f("ck_providers_id_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=True),
        sa.Column("max_input_tokens", sa.Integer(), nullable=True),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("supports_tools", sa.Boolean(), nullable=True),
        sa.Column("supports_vision", sa.Boolean(), nullable=True),
        sa.Column("supports_reasoning", sa.Boolean(), nullable=True),
        sa.Column("supports_prompt_caching", sa.Boolean(), nullable=True),
        sa.Column("supports_json_output", sa.Boolean(), nullable=True),
        sa.Column("supports_audio_input", sa.Boolean(), nullable=True),
        sa.Column("created", sa.Date(), nullable=True),
        sa.Column("deprecation_date", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = provider || '/' || name", name=op.f("ck_models_id_is_provider_name")),
        sa.CheckConstraint("type IN ('language', 'embedding')", name=op.f("ck_models_type")),
        sa.ForeignKeyConstraint(["provider"], ["providers.id"], name=op.f("fk_models_provider_providers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
    )
    op.create_index(op.f("ix_models_provider"), "models", ["provider"], unique=False)
    op.create_table(
        "model_aliases",
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_model_aliases_model_id_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alias", name=op.f("pk_model_aliases")),
    )
    op.create_index(op.f("ix_model_aliases_model_id"), "model_aliases", ["model_id"], unique=False)
    op.create_table(
        "prices",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input", sa.Numeric(), nullable=True),
        sa.Column("output", sa.Numeric(), nullable=True),
        sa.Column("cached_input", sa.Numeric(), nullable=True),
        sa.Column("cache_write", sa.Numeric(), nullable=True),
        sa.Column("per_request", sa.Numeric(), server_default="0", nullable=False),
        sa.Column("tiers", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "input >= 0 AND output >= 0 AND cached_input >= 0 AND cache_write >= 0 AND per_request >= 0",
            name=op.f("ck_prices_non_negative"),
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_prices_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
        sa.UniqueConstraint("model_id", "effective_from", name=op.f("uq_prices_model_id_effective_from")),
    )

    op.execute("INSERT INTO catalog_version (id, version) VALUES (true, 0)")
    # Any write to the catalog, from the API, the CLI or plain SQL, bumps the version and tells every
    # worker listening on `catalog_changed` to reload its in-memory copy.
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


def downgrade() -> None:
    for table in CATALOG_TABLES:
        op.execute(f"DROP TRIGGER {table}_changed ON {table}")
    op.execute("DROP FUNCTION catalog_changed()")
    op.drop_table("prices")
    op.drop_index(op.f("ix_model_aliases_model_id"), table_name="model_aliases")
    op.drop_table("model_aliases")
    op.drop_index(op.f("ix_models_provider"), table_name="models")
    op.drop_table("models")
    op.drop_table("providers")
    op.drop_table("margins")
    op.drop_table("catalog_version")
