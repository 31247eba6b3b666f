"""Expiry notices: when `grant.expiring` was sent for a grant and `authorization.expired` for a hold,
so that each is announced once, whatever the number of workers sweeping.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("grants", sa.Column("expiry_announced_at", sa.DateTime(timezone=True)))
    op.add_column("authorizations", sa.Column("expiry_announced_at", sa.DateTime(timezone=True)))
    # The sweep reads what is still to announce, soonest first; announced and spent rows leave the index.
    op.create_index(
        "ix_grants_expiry_unannounced",
        "grants",
        ["expires_at"],
        postgresql_where=sa.text("expiry_announced_at IS NULL AND remaining > 0 AND expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_authorizations_expiry_unannounced",
        "authorizations",
        ["expires_at"],
        postgresql_where=sa.text("expiry_announced_at IS NULL AND settled_at IS NULL AND released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_authorizations_expiry_unannounced", table_name="authorizations")
    op.drop_index("ix_grants_expiry_unannounced", table_name="grants")
    op.drop_column("authorizations", "expiry_announced_at")
    op.drop_column("grants", "expiry_announced_at")
