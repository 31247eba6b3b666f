"""API-key changes are announced: workers that cache validated keys drop them at once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Any change that can make a key stop working, from the API, the CLI or plain SQL, tells every
    # worker listening on `api_keys_changed`. Recording last use (last_used_at) is not such a change.
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


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION api_keys_changed()")
