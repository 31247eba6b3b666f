"""Assertions shared by the tests."""

from app.ledger.reconcile import reconcile


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
