"""Assertions and database steps shared by the tests (and conftest.py)."""

import asyncio

from app import db
from app.reconcile import reconcile

# Tables the per-test cleanup leaves alone: the schema version and the catalog.
KEEP_TABLES = {"alembic_version", "catalog_version", "providers", "models", "model_aliases", "prices", "margins"}


async def migrate(url: str, revision: str = "head", downgrade: bool = False) -> None:
    from alembic import command

    step = command.downgrade if downgrade else command.upgrade
    # Alembic's async env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(step, db.alembic_config(url), revision)


def assert_error(response, status: int, code: str) -> dict:
    """Every error has the docs/DESIGN.md shape: {"error": {"message", "type", "code"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "code"} <= set(error), error
    assert all(isinstance(error[field], str) and error[field] for field in ("message", "type", "code"))
    assert error["code"] == code, error
    return error


async def assert_reconciled(engine) -> None:
    """Every invariant of `billing reconcile` holds on the test database."""
    async with engine.connect() as conn:
        report = await reconcile(conn)
    assert report.ok, report.violations
