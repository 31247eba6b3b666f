"""The error shape of docs/DESIGN.md for every class of error."""

from litestar import get
from sqlalchemy.ext.asyncio import create_async_engine

from tests.helpers import assert_error


async def test_unknown_route_is_404(client, admin):
    error = assert_error(await client.get("/no/such/thing", headers=admin), 404, "not_found")
    assert error["type"] == "not_found_error"


async def test_unknown_model_is_an_invalid_request(client, make_key):
    """OpenAI and document 001 type a missing model as the request's fault."""
    reader = {"X-API-Key": await make_key("catalog:read")}
    for path in ("/models/openai/no-such-model", "/v1/models/no-such-model"):
        error = assert_error(await client.get(path, headers=reader), 404, "model_not_found")
        assert error["type"] == "invalid_request_error" and error["param"] == "model"
    response = await client.post("/estimate", json={"model": "no-such-model", "input_tokens": 1}, headers=reader)
    assert assert_error(response, 404, "model_not_found")["type"] == "invalid_request_error"


async def test_wrong_method_is_405(client, admin):
    assert_error(await client.put("/accounts", headers=admin, json={}), 405, "method_not_allowed")
    assert_error(await client.post("/health"), 405, "method_not_allowed")


async def test_validation_names_the_field(client, admin):
    error = assert_error(await client.post("/accounts", json={"name": 5}, headers=admin), 400, "validation_error")
    assert error["param"] == "name" and "name" in error["message"]
    error = assert_error(await client.post("/accounts", json={}, headers=admin), 400, "validation_error")
    assert "name" in error["message"]
    error = assert_error(
        await client.post("/accounts", json={"name": "x", "colour": "red"}, headers=admin), 400, "validation_error"
    )
    assert "colour" in error["message"]
    error = assert_error(
        await client.get("/accounts", params={"limit": "many"}, headers=admin), 400, "validation_error"
    )
    assert "limit" in error["message"]


async def test_malformed_json(client, admin):
    response = await client.post(
        "/accounts", content=b"{not json", headers={**admin, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "validation_error")


async def test_oversized_body_is_413(client, admin, settings):
    body = b'{"name": "' + b"x" * settings.max_body_bytes + b'"}'
    response = await client.post("/accounts", content=body, headers={**admin, "Content-Type": "application/json"})
    assert_error(response, 413, "request_too_large")


async def test_unexpected_error_is_500_without_internals(client, admin):
    @get("/boom", opt={"scope": "admin"})
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    client.app.register(boom)
    response = await client.get("/boom", headers=admin)
    error = assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.text and error["message"] == "Internal server error"


async def test_route_without_a_scope_is_closed(client, admin, make_key):
    @get("/unscoped")
    async def unscoped() -> dict:
        return {}

    client.app.register(unscoped)
    key = {"X-API-Key": await make_key("ledger:read", "catalog:read", "usage:write")}
    assert_error(await client.get("/unscoped", headers=key), 403, "insufficient_scope")


async def test_health_and_ready_need_no_key(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).json() == {"status": "ready"}


async def test_ready_is_503_when_the_database_is_down(client):
    state = client.app.state
    working = state.engine
    # A port nothing listens on: the real driver fails to connect, as with a stopped server.
    state.engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    try:
        response = await client.get("/ready")
    finally:
        await state.engine.dispose()
        state.engine = working
    assert_error(response, 503, "database_unavailable")
    assert response.headers["retry-after"]


async def test_openapi_schema(client):
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "name": "X-API-Key", "in": "header"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description"), f"{method.upper()} {path} has no description"
