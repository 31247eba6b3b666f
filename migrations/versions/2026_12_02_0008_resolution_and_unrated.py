"""Model resolution and unrated usage: match rules and scoped operator aliases in the catalog,
1-hour cache write rates, provider usage objects on events, and events waiting to be rated.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
NON_NEGATIVE = "input >= 0 AND output >= 0 AND cached_input >= 0 AND cache_write >= 0 AND per_request >= 0"


def upgrade() -> None:
    # The data's match clause (genai-prices' JSON form), which resolves dated snapshots to the model.
    op.add_column("models", sa.Column("match", postgresql.JSONB()))

    # An alias may be scoped to the provider that served the call ('' = any provider), and says who
    # made it: a catalog import never removes an operator's alias.
    op.add_column("model_aliases", sa.Column("provider", sa.Text(), nullable=False, server_default=""))
    op.add_column("model_aliases", sa.Column("source", sa.Text(), nullable=False, server_default="catalog"))
    op.drop_constraint(op.f("pk_model_aliases"), "model_aliases", type_="primary")
    op.create_primary_key(op.f("pk_model_aliases"), "model_aliases", ["alias", "provider"])
    op.create_check_constraint(op.f("ck_model_aliases_source"), "model_aliases", "source IN ('catalog', 'operator')")
    # Names are resolved case-insensitively, so two aliases may not differ only in case.
    op.create_index("uq_model_aliases_lower_alias", "model_aliases", [sa.text("lower(alias)"), "provider"], unique=True)

    # 1-hour cache writes have a rate of their own (Anthropic: 2x input, against 1.25x for 5 minutes).
    op.add_column("prices", sa.Column("cache_write_1h", sa.Numeric()))
    op.drop_constraint(op.f("ck_prices_non_negative"), "prices", type_="check")
    op.create_check_constraint(op.f("ck_prices_non_negative"), "prices", NON_NEGATIVE + " AND cache_write_1h >= 0")

    # What the client reported, beside what it was priced as: the string as sent (when it is not the
    # model id), the provider that served the call, and the provider's usage object.
    op.add_column("usage_events", sa.Column("reported_model", sa.Text()))
    op.add_column("usage_events", sa.Column("provider", sa.Text()))
    op.add_column("usage_events", sa.Column("usage", postgresql.JSONB()))
    op.add_column("usage_events", sa.Column("usage_format", sa.Text()))
    # Part of cache_write_tokens.
    op.add_column(
        "usage_events", sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False, server_default="0")
    )
    # When an event was first recorded unrated; it was charged (recorded_at) once the catalog could price it.
    op.add_column("usage_events", sa.Column("unrated_since", sa.DateTime(timezone=True)))

    # Usage that could not be priced when it was reported: stored, never charged, and moved to
    # usage_events (with its ledger entry) by the rating that prices it. Ids come from usage_events'
    # sequence, so one listing of both tables pages by (occurred_at, id).
    op.create_table(
        "unrated_usage",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('usage_events_id_seq')"), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("reported_model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text()),
        # model_not_found, or model_unpriced when the model is known but has no price for this usage.
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text()),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in TOKENS),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("usage", postgresql.JSONB()),
        sa.Column("usage_format", sa.Text()),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", postgresql.JSONB()),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_unrated_usage_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_unrated_usage")),
        sa.UniqueConstraint("account_id", "event_id", name=op.f("uq_unrated_usage_account_id_event_id")),
        sa.CheckConstraint("reason IN ('model_not_found', 'model_unpriced')", name=op.f("ck_unrated_usage_reason")),
    )
    op.create_index("ix_unrated_usage_occurred_at", "unrated_usage", ["occurred_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_unrated_usage_occurred_at", table_name="unrated_usage")
    op.drop_table("unrated_usage")
    for column in ("unrated_since", "cache_write_1h_tokens", "usage_format", "usage", "provider", "reported_model"):
        op.drop_column("usage_events", column)
    op.drop_constraint(op.f("ck_prices_non_negative"), "prices", type_="check")
    op.create_check_constraint(op.f("ck_prices_non_negative"), "prices", NON_NEGATIVE)
    op.drop_column("prices", "cache_write_1h")
    op.drop_index("uq_model_aliases_lower_alias", table_name="model_aliases")
    op.drop_constraint(op.f("ck_model_aliases_source"), "model_aliases", type_="check")
    op.drop_constraint(op.f("pk_model_aliases"), "model_aliases", type_="primary")
    # One model per name again: scoped aliases cannot be kept.
    op.execute("DELETE FROM model_aliases WHERE provider <> ''")
    op.create_primary_key(op.f("pk_model_aliases"), "model_aliases", ["alias"])
    op.drop_column("model_aliases", "source")
    op.drop_column("model_aliases", "provider")
    op.drop_column("models", "match")
