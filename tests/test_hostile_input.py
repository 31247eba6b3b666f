"""Hostile input through the real app and PostgreSQL: every refusal is a 400 in the error shape that
changes nothing, and nothing a client can send breaks later requests."""

import asyncio
import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.bodies import MAX_JSON_DEPTH
from app.catalog import repository as catalog_repository
from app.catalog.service import MAX_MARGIN, MIN_MARGIN
from app.pricing import MAX_TOKENS
from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

BIGINT_MAX = 2**63 - 1
EVENT = {"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5}
JSON = {"Content-Type": "application/json"}


async def create_account(client, admin, account_id: str = "acme", grant: str | None = "100") -> str:
    response = await client.post("/accounts", json={"id": account_id, "name": account_id}, headers=admin)
    assert response.status_code == 201, response.text
    if grant:
        response = await client.post(f"/accounts/{account_id}/grants", json={"amount": grant}, headers=admin)
        assert response.status_code == 201, response.text
    return account_id


async def count(engine, table: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608


async def ledger_size(engine) -> tuple[int, int, int]:
    return (await count(engine, "usage_events"), await count(engine, "ledger_entries"), await count(engine, "accounts"))


# 1. Token counts per event are bounded, rollups cannot overflow, and one event never fails a batch.


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"])
@pytest.mark.parametrize("value", [BIGINT_MAX, MAX_TOKENS + 1])
async def test_a_token_count_above_the_maximum_is_refused(client, admin, conn_engine, field, value):
    await create_account(client, admin)
    body = {"event_id": "huge", "account_id": "acme", **EVENT, field: value}
    if field == "cached_input_tokens":
        body["input_tokens"] = value  # the subset rule is not what refuses it
    if field == "reasoning_tokens":
        body["output_tokens"] = value
    before = await ledger_size(conn_engine)
    error = assert_error(await client.post("/usage", json=body, headers=admin), 400, "validation_error")
    assert error["param"] in (field, "input_tokens", "output_tokens") and str(MAX_TOKENS) in error["message"]
    assert await ledger_size(conn_engine) == before
    usage = {"prompt_tokens": value, "completion_tokens": 1}
    body = {"event_id": "huge-usage", "account_id": "acme", "model": "gpt-4o", "usage": usage}
    error = assert_error(await client.post("/usage", json=body, headers=admin), 400, "validation_error")
    assert error["param"] == "usage.prompt_tokens"


async def test_the_maximum_is_charged_and_the_account_goes_on(client, admin, conn_engine):
    await create_account(client, admin)
    body = {"event_id": "max", "account_id": "acme", "model": "gpt-4o", "input_tokens": MAX_TOKENS}
    response = await client.post("/usage", json=body, headers=admin)
    assert response.status_code == 201, response.text
    # 10^12 tokens at 2.5 USD per 1M, x 1.4 x 100 credits per USD.
    assert response.json()["cost"] == "350000000.000000000" and response.json()["overdrawn"]
    for i in range(3):
        response = await client.post(
            "/usage", json={"event_id": f"after-{i}", "account_id": "acme", **EVENT}, headers=admin
        )
        assert response.status_code == 201, response.text
    await assert_reconciled(conn_engine)


async def test_a_day_past_two_to_the_63_tokens_still_records_and_reports(client, admin, conn_engine):
    """Rollup sums are NUMERIC: a day of one account and model may sum past any bigint."""
    await create_account(client, admin)
    response = await client.post("/usage", json={"event_id": "first", "account_id": "acme", **EVENT}, headers=admin)
    assert response.status_code == 201, response.text
    async with conn_engine.begin() as conn:  # as if 9.2 million events of 10^12 tokens had been recorded
        for table in ("usage_rollups", "usage_rollups_monthly"):  # the one day is the whole month
            query = f"UPDATE {table} SET input_tokens = :n, output_tokens = :n"  # noqa: S608 (constants)
            await conn.execute(text(query), {"n": BIGINT_MAX})
    events = [{"event_id": f"b{i}", "account_id": "acme", **EVENT, "input_tokens": MAX_TOKENS} for i in range(3)]
    response = await client.post("/usage/batch", json={"events": events}, headers=admin)
    assert response.status_code == 200 and response.json()["created"] == 3, response.text
    response = await client.post("/usage", json={"event_id": "later", "account_id": "acme", **EVENT}, headers=admin)
    assert response.status_code == 201, response.text
    for params in ({}, {"group_by": "day"}, {"group_by": "month"}):
        report = await client.get("/reports/usage", params=params, headers=admin)
        assert report.status_code == 200, report.text
        assert report.json()["totals"]["input_tokens"] == BIGINT_MAX + 3 * MAX_TOKENS + 10
        assert report.json()["totals"]["output_tokens"] == BIGINT_MAX + 4 * 5
    async with conn_engine.connect() as conn:
        monthly = (await conn.execute(text("SELECT sum(input_tokens) FROM usage_rollups_monthly"))).scalar_one()
    assert monthly == BIGINT_MAX + 3 * MAX_TOKENS + 10


async def test_one_bad_event_fails_alone_in_its_batch(client, admin, conn_engine):
    await create_account(client, admin)
    events = [
        {"event_id": "ok-1", "account_id": "acme", **EVENT},
        {"event_id": "huge", "account_id": "acme", **EVENT, "input_tokens": BIGINT_MAX},
        {"event_id": "ok-2", "account_id": "acme", **EVENT, "input_tokens": MAX_TOKENS},
        {"event_id": "text", "account_id": "acme", **EVENT, "output_tokens": "12"},
        {"event_id": "usage", "account_id": "acme", "model": "gpt-4o", "usage": {"prompt_tokens": BIGINT_MAX}},
        {"event_id": "ok-3", "account_id": "acme", **EVENT},
    ]
    response = await client.post("/usage/batch", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "error", "created", "error", "error", "created"]
    assert [r["error"]["param"] for r in results if r["status"] == "error"] == [
        "input_tokens",
        "output_tokens",
        "usage.prompt_tokens",
    ]
    # The same batch again: the good ones are duplicates, the bad ones still refused alone.
    again = (await client.post("/usage/batch", json={"events": events}, headers=admin)).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "error", "duplicate", "error", "error", "duplicate"]
    await assert_reconciled(conn_engine)


async def test_a_cost_beyond_the_ledger_fails_alone_in_its_batch(client, admin, clock, conn_engine, scratch):
    """Rates an operator may set can price an event past NUMERIC(38, 9): that event is refused, not its batch."""
    model = f"{scratch}/dear"
    response = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "dear", "type": "language"}, headers=admin
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        "/catalog/prices", json={"model": model, "input": "1E+24", "output": "1"}, headers=admin
    )
    assert response.status_code == 201, response.text
    clock.at = datetime.now(UTC)
    await create_account(client, admin)
    events = [
        {"event_id": "ok", "account_id": "acme", **EVENT},
        {"event_id": "dear", "account_id": "acme", "model": model, "input_tokens": MAX_TOKENS},
        {"event_id": "cheap", "account_id": "acme", "model": model, "input_tokens": 1, "output_tokens": 1},
    ]
    response = await client.post("/usage/batch", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["created", "error", "created"]
    assert response.json()["results"][1]["error"]["code"] == "validation_error"
    await assert_reconciled(conn_engine)


# 2. A body that is not UTF-8.

ENDPOINTS = [
    ("POST", "/usage"),
    ("POST", "/usage/batch"),
    ("POST", "/estimate"),
    ("POST", "/authorizations"),
    ("POST", "/accounts"),
    ("POST", "/accounts/acme/grants"),
    ("POST", "/accounts/acme/adjustments"),
    ("PUT", "/catalog/margins"),
    ("POST", "/api-keys"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("body", [b'{"event_id": "\xff\xfe", "name": "\xc3"}', b"\xff", b'{"a": "\xed\xa0\x80"}'])
async def test_a_body_that_is_not_utf8_is_400(client, admin, conn_engine, method, path, body):
    await create_account(client, admin)
    before = await ledger_size(conn_engine)
    response = await client.request(method, path, content=body, headers={**admin, **JSON})
    error = assert_error(response, 400, "validation_error")
    assert "UTF-8" in error["message"] or body == b"\xff"  # not JSON at all, before it is not UTF-8
    assert await ledger_size(conn_engine) == before


# 3. Deeply nested JSON.


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_deeply_nested_json_is_400(client, admin, conn_engine, method, path):
    await create_account(client, admin)
    before = await ledger_size(conn_engine)
    for body in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = await client.request(method, path, content=body, headers={**admin, **JSON})
        assert_error(response, 400, "validation_error")
    assert await ledger_size(conn_engine) == before


def nested(depth: int) -> dict:
    value: dict = {"x": "y"}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


async def test_deep_metadata_and_usage_objects_are_400(client, admin, conn_engine):
    await create_account(client, admin)
    before = await ledger_size(conn_engine)
    metadata = '{"a":' * 3000 + '"x"' + "}" * 3000
    body = f'{{"event_id": "deep", "account_id": "acme", "model": "gpt-4o", "input_tokens": 1, "metadata": {metadata}}}'
    assert_error(await client.post("/usage", content=body.encode(), headers={**admin, **JSON}), 400, "validation_error")
    batch = f'{{"events": [{body}]}}'
    response = await client.post("/usage/batch", content=batch.encode(), headers={**admin, **JSON})
    assert_error(response, 400, "validation_error")
    # A provider's usage object is kept verbatim: it nests at most MAX_JSON_DEPTH levels.
    for path, extra in [("/usage", {"event_id": "u", "account_id": "acme"}), ("/estimate", {})]:
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "extra": nested(MAX_JSON_DEPTH)}
        body = {**extra, "model": "gpt-4o", "usage": usage}
        error = assert_error(await client.post(path, json=body, headers=admin), 400, "validation_error")
        assert error["param"] == "usage" and str(MAX_JSON_DEPTH) in error["message"]
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "extra": nested(MAX_JSON_DEPTH - 1)}
    response = await client.post("/estimate", json={"model": "gpt-4o", "usage": usage}, headers=admin)
    assert response.status_code == 200, response.text
    assert await ledger_size(conn_engine) == before


# 4. Reconcile sums exactly.


async def test_reconcile_balances_an_adjustment_of_29_integer_digits(client, admin, conn_engine):
    await create_account(client, admin, grant=None)
    for amount in ("12345678901234567890123456789.123456789", "-0.000000001", "-12345678901234567890123456789"):
        response = await client.post(
            "/accounts/acme/adjustments", json={"amount": amount, "reason": "large"}, headers=admin
        )
        assert response.status_code == 201, response.text
        await assert_reconciled(conn_engine)


# 5. Margins within bounds; reports over anything stored.


@pytest.mark.parametrize("margin", ["1e-30", "0", "-1", "0.009", "1000.000001", "1e4", "1.2345678", "NaN", "Infinity"])
async def test_a_margin_out_of_bounds_is_refused(client, admin, scratch, margin):
    body = {"scope": "provider", "target": scratch, "margin": margin}
    error = assert_error(await client.put("/catalog/margins", json=body, headers=admin), 400, "validation_error")
    assert error["param"] == "margin"
    listed = await client.get("/catalog/margins", headers=admin)
    assert scratch not in {m["target"] for m in listed.json()["margins"]}


@pytest.mark.parametrize("margin", [str(MIN_MARGIN), str(MAX_MARGIN), "1.234567", "1.40000000", "2E+2"])
async def test_a_margin_within_bounds_is_kept(client, admin, scratch, margin):
    body = {"scope": "provider", "target": scratch, "margin": margin}
    response = await client.put("/catalog/margins", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert Decimal(response.json()["margin"]) == Decimal(margin)


async def test_reports_total_whatever_the_service_stored(client, admin, clock, conn_engine, scratch):
    """A margin stored before the bound (or by plain SQL), and amounts at the ends of NUMERIC(38, 9)."""
    model = f"{scratch}/m"
    response = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin
    )
    assert response.status_code == 200, response.text
    response = await client.post("/catalog/prices", json={"model": model, "input": "10", "output": "10"}, headers=admin)
    assert response.status_code == 201, response.text
    async with conn_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO margins (scope, target, margin, effective_from) VALUES ('model', :m, 1e-30, now())"),
            {"m": model},
        )
        await conn.execute(text(catalog_repository.CHANGED))  # what every catalog writer runs
    clock.at = datetime.now(UTC)  # the margin is in effect from the database's now on
    for _ in range(100):  # the app learns of catalog changes by LISTEN/NOTIFY
        listed = await client.get(f"/models/{model}", headers=admin)
        if Decimal(listed.json().get("margin") or 1) == Decimal("1E-30"):
            break
        await asyncio.sleep(0.05)
    assert Decimal(listed.json()["margin"]) == Decimal("1E-30"), listed.text
    await create_account(client, admin)
    events = [
        {"event_id": "tiny", "account_id": "acme", "model": model, "input_tokens": MAX_TOKENS},
        {"event_id": "one", "account_id": "acme", **EVENT, "input_tokens": 1, "output_tokens": 0},
    ]
    response = await client.post("/usage/batch", json={"events": events}, headers=admin)
    assert response.status_code == 200 and response.json()["created"] == 2, response.text
    assert Decimal(response.json()["results"][0]["event"]["margin"]) == Decimal("1E-30")
    for params in ({}, {"group_by": "model"}, {"from": "2001-01-01T12:00:00Z"}):
        report = await client.get("/reports/usage", params=params, headers=admin)
        assert report.status_code == 200, report.text
    # Sums at the ends of what NUMERIC holds: 10^29 USD upstream against a nano-dollar of credits.
    async with conn_engine.begin() as conn:
        for table in ("usage_rollups", "usage_rollups_monthly"):  # each day is its model's whole month
            query = f"UPDATE {table} SET upstream_cost_usd = :u, credits_usd = 0.000000001, cost = 0.0000001"  # noqa: S608
            await conn.execute(text(query), {"u": Decimal("99999999999999999999999999999.999999999")})
    for params in ({}, {"group_by": "model"}, {"group_by": "model", "limit": 1}):
        report = await client.get("/reports/usage", params=params, headers=admin)
        assert report.status_code == 200, report.text
        totals = report.json()["totals"]
        # Two rows: 2 x 10^-9 of credits less 2 x (10^29 - 10^-9) upstream, to the last digit.
        assert totals["gross_margin_usd"] == "-199999999999999999999999999999.999999996"
        assert Decimal(totals["gross_margin_pct"]) < Decimal("-9.99E+39")


# 6. CSV exports neutralise formulas.

FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "@x", "-2+3", "\tab", "\r=1+1", "-", "=1"]


def parse(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_csv_exports_neutralise_formulas(client, admin, conn_engine):
    await create_account(client, admin, grant=None)
    for formula in FORMULAS:
        response = await client.post(
            "/accounts/acme/grants", json={"amount": "1.5", "description": formula}, headers=admin
        )
        assert response.status_code == 201, response.text
        response = await client.post(
            "/accounts/acme/adjustments", json={"amount": "-1.5", "reason": formula}, headers=admin
        )
        assert response.status_code == 201, response.text
    lines = parse(await client.get("/accounts/acme/ledger", params={"format": "csv", "limit": 1000}, headers=admin))
    texts = [line["description"] for line in lines]
    assert sorted(texts) == sorted("'" + formula for formula in FORMULAS for _ in range(2)), texts
    amounts = sorted(line["amount"] for line in lines)
    assert set(amounts) == {"-1.500000000", "1.500000000"}  # plain numbers, negative ones included
    assert {line["balance_after"] for line in lines} >= {"0.000000000", "1.500000000"}
    # Reports: negative amounts stay numbers.
    trial = parse(await client.get("/reports/trial-balance", params={"format": "csv"}, headers=admin))
    assert trial and all(not value.startswith("'") for row in trial for value in row.values())
    assert trial[0]["adjustments"] == f"-{Decimal('1.5') * len(FORMULAS):.9f}"


# 7. Token counts are JSON integers.

NOT_INTEGERS = ["12", "1e3", 1.0, 12.5, True, [1], {"n": 1}]


@pytest.mark.parametrize("value", NOT_INTEGERS)
@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"])
async def test_token_counts_must_be_integers_in_events(client, admin, conn_engine, value, field):
    await create_account(client, admin)
    before = await ledger_size(conn_engine)
    body = {
        "event_id": "e",
        "account_id": "acme",
        "model": "gpt-4o",
        "input_tokens": 20,
        "output_tokens": 20,
        field: value,
    }
    error = assert_error(await client.post("/usage", json=body, headers=admin), 400, "validation_error")
    assert error["param"] == field
    response = await client.post("/usage/batch", json={"events": [body]}, headers=admin)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] == "error" and result["error"]["param"] == field
    assert await ledger_size(conn_engine) == before


@pytest.mark.parametrize("value", NOT_INTEGERS)
@pytest.mark.parametrize("field", ["input_tokens", "max_output_tokens", "cached_input_tokens", "cache_write_tokens"])
async def test_token_counts_must_be_integers_in_estimates_and_holds(client, admin, conn_engine, value, field):
    await create_account(client, admin)
    body = {"model": "gpt-4o", "input_tokens": 20, "max_output_tokens": 20, field: value}
    error = assert_error(await client.post("/estimate", json=body, headers=admin), 400, "validation_error")
    assert error["param"] == field
    error = assert_error(
        await client.post("/authorizations", json={**body, "account_id": "acme"}, headers=admin),
        400,
        "validation_error",
    )
    assert error["param"] == field
    assert await count(conn_engine, "authorizations") == 0


@pytest.mark.parametrize("value", ["12", "1e3", 1.0])
async def test_provider_usage_counts_must_be_integers(client, admin, conn_engine, value):
    await create_account(client, admin)
    usage = {"prompt_tokens": value, "completion_tokens": 1}
    body = {"event_id": "e", "account_id": "acme", "model": "gpt-4o", "usage": usage}
    error = assert_error(await client.post("/usage", json=body, headers=admin), 400, "validation_error")
    assert error["param"] == "usage.prompt_tokens"
    error = assert_error(
        await client.post("/estimate", json={"model": "gpt-4o", "usage": usage}, headers=admin), 400, "validation_error"
    )
    assert error["param"] == "usage.prompt_tokens"
    hold = {"account_id": "acme", "model": "gpt-4o", "usage": usage}
    error = assert_error(await client.post("/authorizations", json=hold, headers=admin), 400, "validation_error")
    assert error["param"] == "usage.prompt_tokens"
