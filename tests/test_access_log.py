"""The access log: one JSON line per request, as the service writes it to its log stream."""

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """What the service's log handler (set up by `create_app`) writes, instead of stderr."""
    captured = io.StringIO()
    yield captured
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is captured:
            handler.setStream(io.StringIO())


def logged_to(app, stream: io.StringIO):
    (handler,) = logging.getLogger().handlers
    handler.setStream(stream)
    return app


def access_lines(stream: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "app.access"]


@pytest.fixture
async def client(settings, conn_engine, clock, stream) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(logged_to(create_app(settings, clock), stream)) as client:
        yield client


async def test_one_access_line_per_request(client, make_key, stream):
    key = await make_key("ledger:read")
    key_id = key[4:16]
    answered = await client.get("/accounts", params={"limit": 5}, headers={"X-API-Key": key, "X-Request-ID": "t-1"})
    assert answered.status_code == 200, answered.text
    refused = await client.get("/accounts", headers={"X-API-Key": "cmk_wrong"})
    assert refused.status_code == 401
    public = await client.get("/health")
    assert public.status_code == 200
    lines = access_lines(stream)
    assert len(lines) == 3, lines
    first, second, third = lines
    assert first["duration_ms"] >= 0 and isinstance(first["duration_ms"], float)
    assert {k: v for k, v in first.items() if k not in ("time", "duration_ms")} == {
        "level": "INFO",
        "logger": "app.access",
        "request_id": "t-1",
        "message": "GET /accounts 200",
        "method": "GET",
        "path": "/accounts",  # never the query string
        "status": 200,
        "api_key_id": key_id,
    }
    # A key that did not check out is named by nothing; a made-up request id is echoed in the answer.
    assert (second["status"], second["api_key_id"]) == (401, None)
    assert second["request_id"] == refused.headers["x-request-id"] != "t-1"
    assert (third["path"], third["status"], third["api_key_id"]) == ("/health", 200, None)
    assert key not in stream.getvalue() and "cmk_wrong" not in stream.getvalue()


async def test_access_log_can_be_turned_off(settings, conn_engine, clock, stream):
    quiet = replace(settings, access_log=False)
    async with AsyncTestClient(logged_to(create_app(quiet, clock), stream)) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/accounts")).status_code == 401
    assert access_lines(stream) == []
