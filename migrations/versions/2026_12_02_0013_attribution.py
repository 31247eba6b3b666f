"""Attribution: each usage event names the customer's end user, its tags and the API key that
reported it, and reports group and filter by them.

The daily rollups gain the reporting API key in their key (`''` for events recorded before keys were:
a key column cannot be NULL); an account reports through a few keys, so this adds few rows. End users
and tags get rollups of their own, written only for the events that name them, so that reports that
are about neither read no more rows than before: a customer with a hundred thousand end users adds
that many rows to its end users' rollups only. An event with two tags counts once under each, so sums
over tags are not sums over events.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SUMS = (
    "events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost", "upstream_cost_usd", "credits_usd",
)  # fmt: skip


def sums() -> list[sa.Column]:
    return [
        *(sa.Column(name, sa.BigInteger() if name == "events" else sa.Numeric(), nullable=False) for name in SUMS),
        sa.Column("reversed", sa.Numeric(), server_default="0", nullable=False),
    ]


def upgrade() -> None:
    for table in ("usage_events", "unrated_usage"):
        op.add_column(table, sa.Column("end_user", sa.Text()))
        op.add_column(table, sa.Column("tags", sa.ARRAY(sa.Text())))
        op.add_column(table, sa.Column("api_key_id", sa.Text()))

    op.add_column("usage_rollups", sa.Column("api_key_id", sa.Text(), nullable=False, server_default=""))
    op.drop_constraint(op.f("pk_usage_rollups"), "usage_rollups", type_="primary")
    op.create_primary_key(op.f("pk_usage_rollups"), "usage_rollups", ["day", "account_id", "model_id", "api_key_id"])

    op.create_table(
        "usage_rollups_end_users",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("end_user", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("api_key_id", sa.Text(), nullable=False),
        *sums(),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_rollups_end_users_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_usage_rollups_end_users_model_id_models")),
        sa.PrimaryKeyConstraint(
            "day", "account_id", "end_user", "model_id", "api_key_id", name=op.f("pk_usage_rollups_end_users")
        ),
        postgresql_with={"fillfactor": 70},
    )
    op.create_index(
        op.f("ix_usage_rollups_end_users_account_id_end_user_day"),
        "usage_rollups_end_users",
        ["account_id", "end_user", "day"],
    )

    op.create_table(
        "usage_rollups_tags",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        *sums(),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_usage_rollups_tags_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_usage_rollups_tags_model_id_models")),
        sa.PrimaryKeyConstraint("day", "account_id", "tag", "model_id", name=op.f("pk_usage_rollups_tags")),
        postgresql_with={"fillfactor": 70},
    )
    op.create_index(
        op.f("ix_usage_rollups_tags_account_id_tag_day"), "usage_rollups_tags", ["account_id", "tag", "day"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_rollups_tags_account_id_tag_day"), table_name="usage_rollups_tags")
    op.drop_table("usage_rollups_tags")
    op.drop_index(op.f("ix_usage_rollups_end_users_account_id_end_user_day"), table_name="usage_rollups_end_users")
    op.drop_table("usage_rollups_end_users")
    # Rows that differ only by key become one again.
    sums = ", ".join(f"sum({name}) AS {name}" for name in (*SUMS, "reversed"))
    op.execute(
        f"""
        CREATE TEMPORARY TABLE merged_rollups ON COMMIT DROP AS
        SELECT day, account_id, model_id, {sums} FROM usage_rollups GROUP BY 1, 2, 3
        """  # noqa: S608 (constants only)
    )
    op.execute("DELETE FROM usage_rollups")
    op.drop_constraint(op.f("pk_usage_rollups"), "usage_rollups", type_="primary")
    op.drop_column("usage_rollups", "api_key_id")
    columns = ", ".join(("day", "account_id", "model_id", *SUMS, "reversed"))
    op.execute(f"INSERT INTO usage_rollups ({columns}) SELECT * FROM merged_rollups")  # noqa: S608
    op.create_primary_key(op.f("pk_usage_rollups"), "usage_rollups", ["day", "account_id", "model_id"])
    for table in ("unrated_usage", "usage_events"):
        op.drop_column(table, "api_key_id")
        op.drop_column(table, "tags")
        op.drop_column(table, "end_user")
