"""Spend limits per account, end user, tag and reporting key, over periods that reset: holds past a limit
are refused (402 spend_limit_exceeded), usage past one is recorded, flagged and announced once per
period (`spend_limit.reached`), and GET /accounts/{id}/limits shows spent, pending and remaining."""

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text

from app import db
from app.keys.format import KEY_ID_LENGTH, KEY_PREFIX
from app.limits.service import period_bounds
from app.webhooks.worker import Deliverer
from tests.helpers import assert_error
from tests.test_webhooks import Receiver, create_webhook, deliver_all, events

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

# openai/gpt-4o at 2.5 USD per 1M input tokens: 1000 tokens = 0.35 credits (x 1.4 x 100).
CALL = {"model": "openai/gpt-4o", "input_tokens": 1000}
COST = Decimal("0.35")
HOLD = {"model": "openai/gpt-4o", "input_tokens": 1000, "max_output_tokens": 0, "ttl_seconds": 600}


@pytest.fixture
async def pool(settings):
    pool = await db.create_pool(settings.database_url, 4)
    yield pool
    await pool.close()


@pytest.fixture
def clock(clock):
    """Business time at noon UTC on a Wednesday, so a day, a week and a month lie ahead."""
    clock.at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    return clock


@pytest.fixture
async def acme(client, admin) -> str:
    await create_webhook(client, admin, "https://example.com/hooks")  # events are kept for a subscriber
    assert (await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)).status_code == 201
    assert (await client.post("/accounts/acme/grants", json={"amount": "1000"}, headers=admin)).status_code == 201
    return "acme"


async def limit(client, admin, **body) -> dict:
    response = await client.post("/accounts/acme/limits", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def limits(client, headers) -> dict[str, dict]:
    response = await client.get("/accounts/acme/limits", headers=headers)
    assert response.status_code == 200, response.text
    return {(row["scope"], row["value"]): row for row in response.json()["data"]}


async def use(client, headers, event_id: str, **fields) -> dict:
    body = {"event_id": event_id, "account_id": "acme", **CALL, **fields}
    response = await client.post("/usage", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def hold(client, headers, **fields):
    return await client.post("/authorizations", json={"account_id": "acme", **HOLD, **fields}, headers=headers)


def test_periods_are_utc_days_iso_weeks_and_calendar_months():
    at = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert period_bounds("day", at) == (datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert period_bounds("week", at) == (datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC))
    assert period_bounds("month", at) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert period_bounds("none", at) == (None, None)


async def test_an_account_limit_refuses_holds_and_flags_usage_past_it(client, admin, acme, clock, conn_engine):
    made = await limit(client, admin, scope="account", amount="1", period="day")
    assert (made["amount"], made["spent"], made["remaining"], made["reached"]) == ("1.000000000", "0.000000000",
                                                                                    "1.000000000", False)  # fmt: skip
    assert made["period_start"] == "2026-12-02T00:00:00Z" and made["period_end"] == "2026-12-03T00:00:00Z"
    await use(client, admin, "e1")
    await use(client, admin, "e2")
    # 0.70 spent, a hold of 0.35 fits (1.05 > 1 does not): holds count what open holds keep too.
    fits = await hold(client, admin, max_output_tokens=0, input_tokens=800)  # 0.28
    assert fits.status_code == 201, fits.text
    state = (await limits(client, admin))[("account", None)]
    assert (state["spent"], state["pending"], state["remaining"]) == ("0.700000000", "0.280000000", "0.020000000")
    refused = assert_error(await hold(client, admin), 402, "spend_limit_exceeded")
    assert "1.000000000 credits per day for the account" in refused["message"]

    third = await use(client, admin, "e3")  # 1.05: past the limit, recorded all the same
    assert third["status"] == "charged" and third["over_limit"] is True
    fourth = await use(client, admin, "e4")
    assert fourth["over_limit"] is True
    reached = [data for _, kind, data in await events(conn_engine) if kind == "spend_limit.reached"]
    assert len(reached) == 1, "announced once per period"
    assert reached[0] | {"limit_id": None} == {
        "account_id": "acme", "limit_id": None, "scope": "account", "value": None, "period": "day",
        "period_start": "2026-12-02T00:00:00Z", "period_end": "2026-12-03T00:00:00Z", "amount": "1.000000000",
        "spent": "1.050000000",
    }  # fmt: skip
    listed = (await client.get("/usage", params={"account_id": "acme"}, headers=admin)).json()["data"]
    assert [e.get("over_limit", False) for e in listed] == [False, False, True, True]
    state = (await limits(client, admin))[("account", None)]
    assert (state["spent"], state["remaining"], state["reached"]) == ("1.400000000", "0.000000000", True)

    # The next day the limit starts again, and is announced again when reached.
    clock.advance(days=1)
    assert (await limits(client, admin))[("account", None)]["spent"] == "0.000000000"
    assert (await hold(client, admin)).status_code == 201
    for n in range(3):
        await use(client, admin, f"d2-{n}")
    assert (await use(client, admin, "d2-3"))["over_limit"] is True
    reached = [data for _, kind, data in await events(conn_engine) if kind == "spend_limit.reached"]
    assert [data["period_start"] for data in reached] == ["2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"]


async def test_end_user_tag_and_key_limits_apply_only_to_their_own(client, admin, acme, make_key, clock):
    reporter = {"X-API-Key": await make_key("usage:write", account_id="acme")}
    key_id = reporter["X-API-Key"][len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]
    await limit(client, admin, scope="end_user", value="alice", amount="0.5", period="week")
    await limit(client, admin, scope="tag", value="beta", amount="0.5", period="month")
    await limit(client, admin, scope="api_key", value=key_id, amount="0.5", period="none")

    await use(client, admin, "a1", end_user="alice")
    assert_error(await hold(client, admin, end_user="alice"), 402, "spend_limit_exceeded")
    assert (await hold(client, admin, end_user="bob")).status_code == 201  # another end user
    await use(client, admin, "t1", tags=["beta", "x"])
    assert_error(await hold(client, admin, tags=["x", "beta"]), 402, "spend_limit_exceeded")
    assert (await hold(client, admin, tags=["x"])).status_code == 201
    await use(client, reporter, "k1")
    assert_error(await hold(client, reporter), 402, "spend_limit_exceeded")
    assert (await hold(client, admin)).status_code == 201  # another key

    assert (await use(client, admin, "a2", end_user="alice"))["over_limit"] is True
    assert (await use(client, admin, "b1", end_user="bob")).get("over_limit", False) is False
    state = await limits(client, admin)
    assert state[("end_user", "alice")]["spent"] == "0.700000000" and state[("end_user", "alice")]["reached"]
    assert state[("end_user", "alice")]["period_start"] == "2026-11-30T00:00:00Z"  # the Monday
    assert state[("tag", "beta")]["spent"] == "0.350000000"
    assert state[("api_key", key_id)]["period_start"] is None and state[("api_key", key_id)]["period_end"] is None

    # A limit for good never resets.
    clock.advance(days=40)
    assert (await limits(client, admin))[("api_key", key_id)]["spent"] == "0.350000000"
    assert (await limits(client, admin))[("end_user", "alice")]["spent"] == "0.000000000"


async def test_a_reversal_gives_back_room_under_the_limit(client, admin, acme):
    await limit(client, admin, scope="account", amount="0.5", period="month")
    await use(client, admin, "e1")
    assert_error(await hold(client, admin), 402, "spend_limit_exceeded")
    reversal = await client.post("/accounts/acme/reversals", json={"event_id": "e1", "reason": "x"}, headers=admin)
    assert reversal.status_code == 201
    assert (await limits(client, admin))[("account", None)]["spent"] == "0.000000000"
    assert (await hold(client, admin)).status_code == 201


async def test_accounts_without_limits_are_never_limited(client, admin, acme, conn_engine):
    made = await limit(client, admin, scope="account", amount="0.1", period="day")
    deleted = await client.delete(f"/accounts/acme/limits/{made['id']}", headers=admin)
    assert deleted.status_code == 204
    assert await limits(client, admin) == {}
    assert (await hold(client, admin)).status_code == 201
    assert (await use(client, admin, "e1")).get("over_limit", False) is False
    assert "spend_limit.reached" not in [kind for _, kind, _ in await events(conn_engine)]
    assert_error(await client.delete(f"/accounts/acme/limits/{made['id']}", headers=admin), 404, "limit_not_found")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"scope": "account", "amount": "0", "period": "day"}, "amount"),
        ({"scope": "account", "amount": "-1", "period": "day"}, "amount"),
        ({"scope": "account", "amount": "1.0000000001", "period": "day"}, "amount"),
        ({"scope": "account", "amount": "1", "period": "year"}, "period"),
        ({"scope": "team", "amount": "1", "period": "day"}, "scope"),
        ({"scope": "account", "value": "x", "amount": "1", "period": "day"}, "value"),
        ({"scope": "end_user", "amount": "1", "period": "day"}, "value"),
        ({"scope": "tag", "value": "", "amount": "1", "period": "day"}, "value"),
        ({"scope": "account", "amount": "1"}, "period"),
    ],
)
async def test_bad_limits_are_refused(client, admin, acme, body, param):
    error = assert_error(await client.post("/accounts/acme/limits", json=body, headers=admin), 400, "validation_error")
    assert error.get("param") == param or param in error["message"]
    assert await limits(client, admin) == {}


async def test_limits_of_unknown_accounts_repeats_and_scopes(client, admin, acme, make_key):
    body = {"scope": "account", "amount": "1", "period": "day"}
    assert_error(await client.post("/accounts/nobody/limits", json=body, headers=admin), 404, "account_not_found")
    assert_error(await client.get("/accounts/nobody/limits", headers=admin), 404, "account_not_found")
    await limit(client, admin, **body)
    assert_error(await client.post("/accounts/acme/limits", json=body, headers=admin), 409, "limit_exists")
    await limit(client, admin, **(body | {"period": "week"}))  # another period is another limit

    reader = {"X-API-Key": await make_key("ledger:read")}
    listed = await client.get("/accounts/acme/limits", headers=reader)
    assert sorted(row["period"] for row in listed.json()["data"]) == ["day", "week"]
    assert (await client.post("/accounts/acme/limits", json=body, headers=reader)).status_code == 403
    assert (await client.get("/accounts/acme/limits", headers=reader)).status_code == 200
    assert (await client.post("/accounts", json={"id": "globex", "name": "G"}, headers=admin)).status_code == 201
    bound = {"X-API-Key": await make_key("ledger:read", account_id="globex")}
    assert_error(await client.get("/accounts/acme/limits", headers=bound), 404, "account_not_found")


async def test_a_limit_is_delivered_signed(client, admin, clock, pool, conn_engine):
    clock.at = datetime.now(UTC)  # receivers refuse a signature more than five minutes off their clock
    receiver = Receiver()
    receiver.start()
    try:
        await create_webhook(client, admin, receiver.url, ["spend_limit.reached"])
        assert (await client.post("/accounts", json={"id": "acme", "name": "A"}, headers=admin)).status_code == 201
        await limit(client, admin, scope="account", amount="0.3", period="month")
        await use(client, admin, "e1")
        async with httpx.AsyncClient() as http:
            assert await deliver_all(Deliverer(pool, clock), http) == 1
        async with conn_engine.connect() as conn:
            secret = (await conn.execute(text("SELECT secret FROM webhook_endpoints"))).scalar_one()
        [message] = receiver.verified(secret)
        assert message["type"] == "spend_limit.reached" and message["data"]["spent"] == "0.350000000"
    finally:
        receiver.stop()
