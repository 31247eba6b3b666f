"""Limits: per-key rate limiting, statement timeouts, and the request id and metrics around them."""

import json
import logging
from dataclasses import replace
from decimal import Decimal

import pytest
from litestar import get
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from app.asgi import create_app
from app.db import Db
from app.observability import JsonFormatter
from tests.helpers import assert_error


@pytest.fixture
async def limited(settings, conn_engine, clock):
    async with AsyncTestClient(create_app(replace(settings, rate_limit=3, statement_timeout_ms=200), clock)) as client:
        yield client


async def test_rate_limit_per_key(limited, make_key):
    first, second = {"X-API-Key": await make_key("ledger:read")}, {"X-API-Key": await make_key("ledger:read")}
    statuses = [(await limited.get("/accounts", headers=first)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    error = assert_error(await limited.get("/accounts", headers=first), 429, "rate_limited")
    assert "3" in error["message"]
    response = await limited.get("/accounts", headers=first)
    assert int(response.headers["retry-after"]) >= 1
    # Another key has its own bucket; unauthenticated endpoints are not limited.
    assert (await limited.get("/accounts", headers=second)).status_code == 200
    assert [(await limited.get("/health")).status_code for _ in range(5)] == [200] * 5


async def test_statement_timeout_is_503(limited, admin):
    @get("/slow", opt={"scope": "admin"})
    async def slow(db: Db) -> None:
        async with db.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(2)"))

    limited.app.register(slow)
    response = await limited.get("/slow", headers=admin)
    assert_error(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == "1"


async def test_request_id_is_echoed_or_made(client):
    made = await client.get("/health")
    assert len(made.headers["x-request-id"]) == 16
    echoed = await client.get("/health", headers={"X-Request-ID": "gateway-42"})
    assert echoed.headers["x-request-id"] == "gateway-42"
    hostile = await client.get("/health", headers={"X-Request-ID": "a b\tc" * 50})
    assert hostile.headers["x-request-id"] != "a b\tc" * 50


async def test_metrics(client, admin):
    await client.post(
        "/usage",
        json={"event_id": "m1", "account_id": "nobody", "model": "gpt-4o", "input_tokens": 1},
        headers=admin,
    )
    body = (await client.get("/metrics")).text
    assert 'billing_requests_total{method="POST",route="/usage",status="404"}' in body
    assert 'billing_usage_events_total{outcome="error"}' in body
    assert "billing_coalesced_batch_size_bucket" in body and "billing_db_pool_size" in body
    assert "billing_request_seconds_bucket" in body


async def test_logs_are_json_with_the_request_id_and_no_secrets(client, admin, caplog):
    key = admin["X-API-Key"]
    with caplog.at_level(logging.INFO):
        await client.get("/accounts", headers={**admin, "X-Request-ID": "trace-1"})
        await client.get("/accounts", headers={"X-API-Key": key[:-1] + "x"})
        logging.getLogger("app.test").warning("inside", extra={})
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert all(json.loads(line)["request_id"] for line in lines)
    assert not any(key in line or key[16:] in line for line in lines)


async def test_spend_metrics_by_provider_and_model(client, admin):
    """Credits charged and reversed and upstream USD, from the rollups: the same totals whichever worker answers."""
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    assert (await client.post("/accounts/acme/grants", json={"amount": "100"}, headers=admin)).status_code == 201
    calls = [("e1", "gpt-4o", 1000), ("e2", "gpt-4o", 3000), ("e3", "claude-haiku-4-5", 2000)]
    costs = {}
    for event_id, model, tokens in calls:
        body = {"event_id": event_id, "account_id": "acme", "model": model, "input_tokens": tokens}
        event = (await client.post("/usage", json=body, headers=admin)).json()
        sums = costs.setdefault(event["model"], [Decimal(0), Decimal(0)])
        sums[0] += Decimal(event["cost"])
        sums[1] += Decimal(event["upstream_cost_usd"])
    reversal = await client.post("/accounts/acme/reversals", json={"event_id": "e3", "reason": "x"}, headers=admin)
    assert reversal.status_code == 201
    lines = (await client.get("/metrics")).text.splitlines()
    assert "# TYPE billing_credits_charged_total counter" in lines
    for model, (credits, upstream) in costs.items():
        labels = f'{{provider="{model.split("/")[0]}",model="{model}"}}'
        assert f"billing_credits_charged_total{labels} {format(credits.normalize(), 'f')}" in lines
        assert f"billing_upstream_cost_usd_total{labels} {format(upstream.normalize(), 'f')}" in lines
    reversed_haiku = costs["anthropic/claude-haiku-4-5"][0]
    labels = '{provider="anthropic",model="anthropic/claude-haiku-4-5"}'
    assert f"billing_credits_reversed_total{labels} {format(reversed_haiku.normalize(), 'f')}" in lines
    # One series per model used, whatever the number of accounts or events.
    assert len([line for line in lines if line.startswith("billing_credits_charged_total{")]) == 2
