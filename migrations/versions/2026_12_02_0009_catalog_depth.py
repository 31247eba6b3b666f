"""Catalog depth: model facts with their sources, and the price dimensions beyond tokens (service
tiers, regions, time of day), with the tier and region of each event and hold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SERVICE_TIERS = "service_tier IN ('default', 'batch', 'flex', 'priority')"
PRICED = ("usage_events", "unrated_usage", "authorizations")


def upgrade() -> None:
    # What a model takes in and gives out ("text", "image", "audio", "video", "file", "embedding"),
    # and where each fact came from: {"context_window": "litellm 1.109.1", ...}.
    op.add_column("models", sa.Column("input_modalities", postgresql.ARRAY(sa.Text())))
    op.add_column("models", sa.Column("output_modalities", postgresql.ARRAY(sa.Text())))
    op.add_column("models", sa.Column("facts", postgresql.JSONB(), nullable=False, server_default="{}"))

    # Rates that replace the base ones for some calls: a service tier, a region, a window of the UTC
    # day ([{"service_tier": "flex", "input": "0.625", ...}], see app/pricing.py).
    op.add_column("prices", sa.Column("variants", postgresql.JSONB(), nullable=False, server_default="[]"))

    # How each call was served: the service tier as the provider reported it, and the region.
    for table in PRICED:
        op.add_column(table, sa.Column("service_tier", sa.Text(), nullable=False, server_default="default"))
        op.add_column(table, sa.Column("region", sa.Text()))
        op.create_check_constraint(op.f(f"ck_{table}_service_tier"), table, SERVICE_TIERS)


def downgrade() -> None:
    for table in PRICED:
        op.drop_constraint(op.f(f"ck_{table}_service_tier"), table, type_="check")
        op.drop_column(table, "region")
        op.drop_column(table, "service_tier")
    op.drop_column("prices", "variants")
    for column in ("facts", "output_modalities", "input_modalities"):
        op.drop_column("models", column)
