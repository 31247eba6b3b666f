"""Recurring grants: a schedule turned into ordinary grants on time, exactly once per period with several
issuers and after downtime, with rollover none, all or capped, ending when it says."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app import db
from app.ledger.service import expire_due_grants
from app.schedules.service import issue_due, next_start
from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(clock):
    clock.at = START
    return clock


@pytest.fixture
async def pool(settings):
    pool = await db.create_pool(settings.database_url, 4)
    yield pool
    await pool.close()


@pytest.fixture
async def acme(client, admin) -> str:
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    return "acme"


async def schedule(client, admin, **body) -> dict:
    response = await client.post("/accounts/acme/grant-schedules", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def grants(client, admin) -> list[dict]:
    response = await client.get("/accounts/acme/grants", params={"limit": 1000}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def balance(client, admin) -> Decimal:
    return Decimal((await client.get("/accounts/acme/balance", headers=admin)).json()["balance"])


async def spend(client, admin, event_id: str, tokens: int) -> None:
    """openai/gpt-4o input at 2.5 USD per 1M: 1000 tokens = 0.35 credits."""
    body = {"event_id": event_id, "account_id": "acme", "model": "openai/gpt-4o", "input_tokens": tokens}
    assert (await client.post("/usage", json=body, headers=admin)).status_code == 201


def test_periods_follow_the_anchor():
    anchor = datetime(2026, 1, 31, 8, tzinfo=UTC)
    feb = next_start("month", anchor, anchor)
    assert feb == datetime(2026, 2, 28, 8, tzinfo=UTC)
    assert next_start("month", feb, anchor) == datetime(2026, 3, 31, 8, tzinfo=UTC)
    assert next_start("month", datetime(2026, 12, 31, 8, tzinfo=UTC), anchor) == datetime(2027, 1, 31, 8, tzinfo=UTC)
    assert next_start("week", anchor, anchor) == anchor + timedelta(days=7)
    assert next_start("day", anchor, anchor) == anchor + timedelta(days=1)


async def test_a_schedule_grants_each_period_once_and_catches_up(client, admin, acme, pool, clock, conn_engine):
    made = await schedule(client, admin, amount="10", period="day", rollover="all", description="daily allowance")
    assert made["next_grant_at"] == (START + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    [first] = await grants(client, admin)  # the first period's grant at once
    assert (first["schedule_id"], first["period_start"], first["amount"]) == (
        made["id"],
        START.isoformat().replace("+00:00", "Z"),
        "10.000000000",
    )
    assert first["expires_at"] is None and first["description"] == "daily allowance"
    assert await issue_due(pool, clock.now()) == 0  # nothing more due today

    # Down for three days and a half: each missed day gets its grant, once.
    clock.advance(days=3, hours=12)
    assert await issue_due(pool, clock.now()) == 3
    assert await issue_due(pool, clock.now()) == 0
    starts = [g["period_start"] for g in await grants(client, admin)]
    assert len(starts) == len(set(starts)) == 4
    assert await balance(client, admin) == Decimal(40)
    listed = (await client.get(f"/accounts/acme/grant-schedules/{made['id']}", headers=admin)).json()
    assert listed["next_grant_at"] == (START + timedelta(days=4)).isoformat().replace("+00:00", "Z")
    await assert_reconciled(conn_engine)


async def test_two_issuers_make_one_grant_per_period(client, admin, acme, pool, clock, conn_engine):
    await schedule(client, admin, amount="5", period="week", rollover="all")
    clock.advance(days=7 * 5)
    counts = await asyncio.gather(*(issue_due(pool, clock.now()) for _ in range(4)))
    assert sum(counts) == 5
    assert len(await grants(client, admin)) == 6 and await balance(client, admin) == Decimal(30)
    await assert_reconciled(conn_engine)


async def test_rollover_none_expires_each_grant_with_its_period(client, admin, acme, pool, clock, conn_engine):
    await schedule(client, admin, amount="1", period="day")
    await spend(client, admin, "e1", 1000)  # 0.35 of the first day's 1
    clock.advance(days=1)
    assert await issue_due(pool, clock.now()) == 1
    # The first day's 0.65 expired when the second began; the second day's 1 is all there is.
    assert await balance(client, admin) == Decimal(1)
    first, second = await grants(client, admin)
    assert first["remaining"] == "0.000000000" and first["expired_at"] is not None
    assert second["expires_at"] == (START + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    await assert_reconciled(conn_engine)


async def test_rollover_capped_carries_over_at_most_the_cap(client, admin, acme, pool, clock, conn_engine):
    await schedule(client, admin, amount="1", period="day", rollover="capped", rollover_cap="0.5")
    await spend(client, admin, "e1", 1000)  # 0.65 left of 1: 0.5 carries over
    clock.advance(days=1)
    assert await issue_due(pool, clock.now()) == 1
    assert await balance(client, admin) == Decimal("1.5")
    second = (await grants(client, admin))[-1]
    assert second["amount"] == "1.500000000" and "0.500000000 carried over" in second["description"]
    await spend(client, admin, "e2", 4000)  # 1.4 of 1.5: 0.1 carries over
    clock.advance(days=1)
    assert await issue_due(pool, clock.now()) == 1
    assert await balance(client, admin) == Decimal("1.1")
    await assert_reconciled(conn_engine)


async def test_rollover_all_keeps_credits_unless_each_grant_has_a_lifetime(client, admin, acme, pool, clock):
    await schedule(client, admin, amount="2", period="day", rollover="all", grant_ttl_seconds=36 * 3600)
    clock.advance(days=1)
    await issue_due(pool, clock.now())
    assert await balance(client, admin) == Decimal(4)
    clock.advance(hours=13)  # the first grant's 36 hours are over: the expiry sweep takes it
    await expire_due_grants(pool, clock.now())
    assert await balance(client, admin) == Decimal(2)


async def test_a_schedule_ends_on_its_date_or_when_ended(client, admin, acme, pool, clock):
    bounded = await schedule(client, admin, amount="1", period="day", rollover="all",
                             ends_at=(START + timedelta(days=2, hours=1)).isoformat())  # fmt: skip
    later = await schedule(client, admin, amount="3", period="week", rollover="all",
                           starts_at=(START + timedelta(days=1)).isoformat())  # fmt: skip
    assert later["next_grant_at"] == (START + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert await balance(client, admin) == Decimal(1)  # the later one has not started
    clock.advance(days=10)
    await issue_due(pool, clock.now())
    # Days 0, 1, 2 of the bounded one (the third starts before its end); weeks from day 1: days 1 and 8.
    assert await balance(client, admin) == Decimal(3 + 6)
    ended = (await client.get(f"/accounts/acme/grant-schedules/{bounded['id']}", headers=admin)).json()
    assert ended["next_grant_at"] is None and ended["ended_at"] is not None
    assert (await client.delete(f"/accounts/acme/grant-schedules/{later['id']}", headers=admin)).status_code == 204
    clock.advance(days=30)
    assert await issue_due(pool, clock.now()) == 0
    assert await balance(client, admin) == Decimal(9)
    listed = (await client.get("/accounts/acme/grant-schedules", headers=admin)).json()["data"]
    assert {s["id"] for s in listed} == {bounded["id"], later["id"]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": "0", "period": "day"}, "amount"),
        ({"amount": "-1", "period": "day"}, "amount"),
        ({"amount": "1", "period": "year"}, "period"),
        ({"amount": "1", "period": "day", "rollover": "some"}, "rollover"),
        ({"amount": "1", "period": "day", "rollover": "capped"}, "rollover_cap"),
        ({"amount": "1", "period": "day", "rollover_cap": "1"}, "rollover_cap"),
        ({"amount": "1", "period": "day", "rollover": "capped", "rollover_cap": "-1"}, "rollover_cap"),
        ({"amount": "1", "period": "day", "grant_ttl_seconds": 60}, "grant_ttl_seconds"),
        ({"amount": "1", "period": "day", "starts_at": "2026-12-05T00:00:00Z", "ends_at": "2026-12-04T00:00:00Z"},
         "ends_at"),
        ({"amount": "1", "period": "day", "starts_at": "2026-12-05T00:00:00"}, "starts_at"),
    ],
)  # fmt: skip
async def test_bad_schedules_are_refused(client, admin, acme, body, param):
    response = await client.post("/accounts/acme/grant-schedules", json=body, headers=admin)
    error = assert_error(response, 400, "validation_error")
    assert error.get("param") == param or param in error["message"]
    assert (await client.get("/accounts/acme/grant-schedules", headers=admin)).json()["data"] == []
    assert await grants(client, admin) == []


async def test_scopes_and_unknown_ids(client, admin, acme, make_key):
    body = {"amount": "1", "period": "day"}
    assert_error(await client.post("/accounts/nobody/grant-schedules", json=body, headers=admin), 404,
                 "account_not_found")  # fmt: skip
    assert_error(await client.get("/accounts/acme/grant-schedules/gs_none", headers=admin), 404, "schedule_not_found")
    assert_error(await client.delete("/accounts/acme/grant-schedules/gs_none", headers=admin), 404,
                 "schedule_not_found")  # fmt: skip
    reader = {"X-API-Key": await make_key("ledger:read")}
    assert (await client.post("/accounts/acme/grant-schedules", json=body, headers=reader)).status_code == 403
    assert (await client.get("/accounts/acme/grant-schedules", headers=reader)).status_code == 200
    assert (await client.post("/accounts", json={"id": "globex", "name": "G"}, headers=admin)).status_code == 201
    bound = {"X-API-Key": await make_key("ledger:read", account_id="globex")}
    assert_error(await client.get("/accounts/acme/grant-schedules", headers=bound), 404, "account_not_found")
