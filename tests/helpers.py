"""Assertions shared by the tests."""


def assert_error(response, status: int, code: str) -> dict:
    """Every error has the DESIGN.md shape: {"error": {"message", "type", "code"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "code"} <= set(error), error
    assert all(isinstance(error[field], str) and error[field] for field in ("message", "type", "code"))
    assert error["code"] == code, error
    return error
