"""Attribution: usage events name the customer's end user and tags, the reporting API key is recorded,
and GET /reports/usage groups and filters by all three, from the rollups and from the events alike."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.keys.format import KEY_ID_LENGTH, KEY_PREFIX
from tests.helpers import assert_error, assert_reconciled
from tests.test_reports import create_account, get_csv, get_report
from tests.test_unrated import priced_model, until_charged

pytestmark = pytest.mark.shared_app

MODEL = "openai/gpt-4o"


def key_id(headers: dict[str, str]) -> str:
    return headers["X-API-Key"][len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]


@pytest.fixture
async def reporters(client, admin, make_key) -> tuple[dict[str, str], dict[str, str]]:
    """Two reporting keys of one account, which a finance key reports on."""
    await create_account(client, admin, "acme")
    first = {"X-API-Key": await make_key("usage:write", account_id="acme", name="chat")}
    second = {"X-API-Key": await make_key("usage:write", account_id="acme", name="search")}
    return first, second


@pytest.fixture
async def finance(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("ledger:read")}


async def record(client, headers, event_id: str, *, at: datetime | None = None, tokens: int = 1000, **fields) -> dict:
    body = {"event_id": event_id, "model": MODEL, "input_tokens": tokens, "output_tokens": tokens // 2, **fields}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    response = await client.post("/usage", json=body, headers=headers)
    assert response.status_code in (201, 202), response.text
    return response.json()


async def test_an_event_keeps_its_end_user_tags_and_reporting_key(client, reporters, finance):
    chat, _ = reporters
    event = await record(client, chat, "e1", end_user="user-42", tags=["beta", "support", "beta"])
    # A tag said twice is one tag: the event counts once under it.
    assert (event["end_user"], event["tags"], event["api_key_id"]) == ("user-42", ["beta", "support"], key_id(chat))
    listed = (await client.get("/usage", params={"account_id": "acme"}, headers=finance)).json()["data"]
    assert [(e["end_user"], e["tags"], e["api_key_id"]) for e in listed] == [
        ("user-42", ["beta", "support"], key_id(chat))
    ]
    plain = await record(client, chat, "e2")
    assert (plain.get("end_user"), plain.get("tags"), plain["api_key_id"]) == (None, None, key_id(chat))


async def test_a_retry_must_name_the_same_end_user_and_tags(client, reporters):
    chat, search = reporters
    await record(client, chat, "e1", end_user="u1", tags=["a"])
    # The same event from another key of the account is the same event: a replay.
    again = await client.post(
        "/usage",
        json={"event_id": "e1", "model": MODEL, "input_tokens": 1000, "output_tokens": 500, "end_user": "u1",
              "tags": ["a"]},
        headers=search,
    )  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["replay"] is True and again.json()["api_key_id"] == key_id(chat)
    for changed in ({"end_user": "u2", "tags": ["a"]}, {"end_user": "u1", "tags": ["b"]}, {"end_user": "u1"}):
        body = {"event_id": "e1", "model": MODEL, "input_tokens": 1000, "output_tokens": 500, **changed}
        assert_error(await client.post("/usage", json=body, headers=chat), 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"end_user": ""}, "end_user"),
        ({"end_user": "u" * 201}, "end_user"),
        ({"end_user": "a\x00b"}, "end_user"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["t" * 65]}, "tags"),
        ({"tags": [f"t{n}" for n in range(11)]}, "tags"),
        ({"tags": ["a\x1fb"]}, "tags"),
        ({"tags": "beta"}, "tags"),
    ],
)
async def test_bad_attribution_is_refused_and_records_nothing(client, reporters, finance, fields, param):
    chat, _ = reporters
    body = {"event_id": "bad", "model": MODEL, "input_tokens": 10, "output_tokens": 5, **fields}
    error = assert_error(await client.post("/usage", json=body, headers=chat), 400, "validation_error")
    assert param in (error.get("param") or error["message"])
    batch = await client.post("/usage/batch", json={"events": [body]}, headers=chat)
    assert batch.status_code == 200 and batch.json()["errors"] == 1
    assert (await client.get("/usage", params={"account_id": "acme"}, headers=finance)).json()["data"] == []


async def seed(client, reporters, clock) -> list[dict]:
    """Events over three days by two keys, three end users (and none), tags (one, two, none)."""
    chat, search = reporters
    day = clock.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=3)
    plan = [
        (chat, "alice", ["beta"]),
        (chat, "alice", ["beta", "support"]),
        (chat, "bob", None),
        (search, "bob", ["support"]),
        (search, None, None),
        (search, "carol", ["beta"]),
    ]
    events = []
    for n in range(12):
        headers, end_user, tags = plan[n % len(plan)]
        fields = {k: v for k, v in (("end_user", end_user), ("tags", tags)) if v is not None}
        at = day + timedelta(days=n % 3, minutes=n)
        events.append(await record(client, headers, f"e{n}", at=at, tokens=1000 + n * 100, **fields))
    return events


def expected(events: list[dict], key) -> dict:
    """Events and credits by the value(s) `key` gives each event."""
    sums = defaultdict(lambda: [0, Decimal(0)])
    for event in events:
        for value in key(event):
            sums[value][0] += 1
            sums[value][1] += Decimal(event["cost"])
    return {value: (count, credits) for value, (count, credits) in sums.items()}


def found(report: dict, name: str) -> dict:
    return {row[name]: (row["events"], Decimal(row["credits"])) for row in report["rows"]}


@pytest.mark.parametrize("whole_days", [True, False], ids=["rollups", "events"])
async def test_reports_by_end_user_tag_and_key(client, reporters, finance, clock, whole_days):
    chat, search = reporters
    events = await seed(client, reporters, clock)
    today = clock.now().date()
    bounds = (
        {"from_": str(today - timedelta(days=5)), "to": str(today + timedelta(days=1))}
        if whole_days
        else {"from_": (clock.now() - timedelta(days=5, hours=1)).isoformat(), "to": clock.now().isoformat()}
    )
    source = "rollups" if whole_days else "events"
    total_credits = sum(Decimal(e["cost"]) for e in events)

    by_user = await get_report(client, finance, group_by="end_user", **bounds)
    assert by_user["source"] == source
    # Events that name no end user are in no row, but in the totals.
    assert found(by_user, "end_user") == expected(events, lambda e: [e["end_user"]] if e.get("end_user") else [])
    assert (by_user["totals"]["events"], Decimal(by_user["totals"]["credits"])) == (len(events), total_credits)

    by_key = await get_report(client, finance, group_by="api_key", **bounds)
    assert found(by_key, "api_key") == expected(events, lambda e: [e["api_key_id"]])
    assert set(found(by_key, "api_key")) == {key_id(chat), key_id(search)}

    by_tag = await get_report(client, finance, group_by="tag", **bounds)
    assert found(by_tag, "tag") == expected(events, lambda e: e.get("tags") or [])
    # Each event once in the totals, though a two-tag event is in two rows and untagged ones in none.
    assert (by_tag["totals"]["events"], Decimal(by_tag["totals"]["credits"])) == (len(events), total_credits)

    by_tag_and_day = await get_report(client, finance, group_by="tag,day", limit=2, **bounds)
    assert sum(row["events"] for row in by_tag_and_day["rows"]) == sum(len(e.get("tags") or []) for e in events)
    assert by_tag_and_day["totals"]["events"] == len(events)

    only_alice = await get_report(client, finance, group_by="model", end_user="alice", **bounds)
    alice = [e for e in events if e.get("end_user") == "alice"]
    assert only_alice["totals"]["events"] == len(alice)
    assert Decimal(only_alice["totals"]["credits"]) == sum(Decimal(e["cost"]) for e in alice)

    support = [e for e in events if "support" in (e.get("tags") or [])]
    only_support = await get_report(client, finance, group_by="day", tag="support", **bounds)
    assert sum(row["events"] for row in only_support["rows"]) == only_support["totals"]["events"] == len(support)

    searched = [e for e in events if e["api_key_id"] == key_id(search)]
    only_search = await get_report(client, finance, group_by="end_user", api_key=key_id(search), **bounds)
    assert found(only_search, "end_user") == expected(searched, lambda e: [e["end_user"]] if e.get("end_user") else [])
    assert only_search["totals"]["events"] == len(searched)

    header, rows = await get_csv(client, finance, "/reports/usage", group_by="end_user,model", **bounds)
    assert header[:2] == ["end_user", "model"]
    assert {row["end_user"] for row in rows} == {"alice", "bob", "carol"}


async def test_the_rollups_and_the_events_agree_to_the_last_digit(client, reporters, finance, clock, conn_engine):
    await seed(client, reporters, clock)
    today = clock.now().date()
    # A few days (the daily rollups), and whole months around them (the monthly ones).
    ranges = [(today - timedelta(days=5), today + timedelta(days=1))]
    ranges.append(((today - timedelta(days=40)).replace(day=1), (today + timedelta(days=40)).replace(day=1)))
    for lo, hi in ranges:
        whole = {"from": str(lo), "to": str(hi)}
        # The same days, as times: not on a day boundary by a microsecond, so summed from the events.
        start = datetime.fromisoformat(whole["from"]).replace(tzinfo=UTC) - timedelta(microseconds=1)
        exact = {"from": start.isoformat(), "to": whole["to"] + "T00:00:00Z"}
        for group_by in ("end_user", "tag", "api_key", "tag,model,day", "end_user,api_key,provider", "tag,month"):
            rollups = await get_report(client, finance, group_by=group_by, **whole)
            events = await get_report(client, finance, group_by=group_by, **exact)
            assert (rollups["source"], events["source"]) == ("rollups", "events")
            assert rollups["rows"] == events["rows"] and rollups["totals"] == events["totals"], group_by
            assert rollups["totals"]["events"] == 12
    await assert_reconciled(conn_engine)


async def test_a_reversal_is_counted_under_the_end_user_and_each_tag(client, reporters, finance, admin, conn_engine):
    chat, _ = reporters
    event = await record(client, chat, "e1", end_user="alice", tags=["beta", "support"])
    response = await client.post("/accounts/acme/reversals", json={"event_id": "e1", "reason": "outage"}, headers=admin)
    assert response.status_code == 201, response.text
    for group_by, value in (("end_user", "alice"), ("tag", "beta"), ("tag", "support")):
        report = await get_report(client, finance, group_by=group_by, to="2999-01-01")
        row = next(row for row in report["rows"] if row[group_by] == value)
        assert row["credits_reversed"] == event["cost"]
    await assert_reconciled(conn_engine)


async def test_unrated_usage_keeps_its_attribution_until_it_is_charged(client, reporters, finance, admin):
    chat, _ = reporters
    body = {"event_id": "u1", "model": "acme-private-llm", "input_tokens": 1000, "output_tokens": 500,
            "end_user": "alice", "tags": ["beta"]}  # fmt: skip
    response = await client.post("/usage", json=body, headers=chat)
    assert response.status_code == 202, response.text
    waiting = await get_report(client, finance, end_user="alice", to="2999-01-01")
    assert waiting["unrated"]["events"] == 1
    assert (await get_report(client, finance, end_user="bob", to="2999-01-01"))["unrated"]["events"] == 0
    assert (await get_report(client, finance, tag="beta", to="2999-01-01"))["unrated"]["events"] == 1
    listed = (await client.get("/usage", params={"status": "unrated"}, headers=finance)).json()["data"]
    assert [(e["end_user"], e["tags"], e["api_key_id"]) for e in listed] == [("alice", ["beta"], key_id(chat))]


async def test_rating_carries_the_attribution_into_the_charged_event(
    client, reporters, finance, admin, scratch, conn_engine
):
    chat, _ = reporters
    body = {"event_id": "u1", "model": "acme-private-llm", "input_tokens": 1000, "output_tokens": 500,
            "end_user": "alice", "tags": ["beta"]}  # fmt: skip
    assert (await client.post("/usage", json=body, headers=chat)).status_code == 202
    # The operator names the model: the worker's rater charges the waiting event.
    model = await priced_model(client, admin, scratch)
    alias = await client.post("/catalog/aliases", json={"alias": "acme-private-llm", "model": model}, headers=admin)
    assert alias.status_code == 201, alias.text
    charged = await until_charged(client, finance, "u1")
    assert (charged["end_user"], charged["tags"], charged["api_key_id"]) == ("alice", ["beta"], key_id(chat))
    report = await get_report(client, finance, group_by="tag", to="2999-01-01")
    assert [(row["tag"], row["events"]) for row in report["rows"]] == [("beta", 1)]
    await assert_reconciled(conn_engine)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "tag,end_user"}, "group_by"),
        ({"group_by": "api_key", "tag": "beta"}, "group_by"),
        ({"group_by": "tag", "end_user": "alice"}, "end_user"),
        ({"tag": "beta", "api_key": "abc"}, "api_key"),
        ({"group_by": "user"}, "group_by"),
    ],
)
async def test_a_report_by_tag_and_by_user_or_key_at_once_is_refused(client, reporters, finance, params, param):
    error = assert_error(await client.get("/reports/usage", params=params, headers=finance), 400, "validation_error")
    assert error["param"] == param


async def test_an_account_bound_key_reports_only_its_own_end_users(client, reporters, admin, make_key, clock):
    chat, _ = reporters
    await create_account(client, admin, "globex")
    other = {"X-API-Key": await make_key("usage:write", account_id="globex")}
    await record(client, chat, "a1", end_user="shared-name")
    await record(client, other, "g1", end_user="shared-name")
    acme_finance = {"X-API-Key": await make_key("ledger:read", account_id="acme")}
    report = await get_report(client, acme_finance, group_by="end_user,account", to="2999-01-01")
    assert [(row["end_user"], row["account"], row["events"]) for row in report["rows"]] == [("shared-name", "acme", 1)]


async def test_only_events_that_name_end_users_and_tags_add_to_their_rollups(client, reporters, conn_engine):
    chat, _ = reporters
    for n in range(20):
        await record(
            client, chat, f"e{n}", end_user=f"user-{n % 2}" if n % 4 else None, tags=["beta"] if n % 2 else None
        )
    counts = {}
    async with conn_engine.connect() as conn:
        for table in ("usage_rollups", "usage_rollups_end_users", "usage_rollups_tags"):
            query = text(f"SELECT count(*), sum(events) FROM {table} WHERE account_id = 'acme'")  # noqa: S608
            counts[table] = tuple((await conn.execute(query)).one())
    # One day, one model, one key: a row each, summing the events that name one.
    assert counts == {"usage_rollups": (1, 20), "usage_rollups_end_users": (2, 15), "usage_rollups_tags": (1, 10)}


async def test_a_batch_adds_to_the_rollups_its_events_need(client, reporters, conn_engine):
    chat, _ = reporters

    def event(n: int, **fields) -> dict:
        return {"event_id": f"b{n}", "model": MODEL, "input_tokens": 1000, "output_tokens": 500, **fields}

    # Batches recorded by the four statement texts: neither rollup, end users only, tags only, both.
    batches = [
        [event(n) for n in range(4)],
        [event(n, end_user="alice" if n % 2 else None) for n in range(4, 8)],
        [event(n, tags=["beta", "eu"] if n % 2 else None) for n in range(8, 12)],
        [event(12, end_user="bob", tags=["beta"]), event(13, tags=["eu"]), event(14, end_user="bob")],
    ]
    for events in batches:
        response = await client.post("/usage/batch", json={"events": events}, headers=chat)
        assert response.status_code == 200 and response.json()["errors"] == 0, response.text
    async with conn_engine.connect() as conn:
        users = dict((await conn.execute(text("SELECT end_user, events FROM usage_rollups_end_users"))).all())
        tags = dict((await conn.execute(text("SELECT tag, events FROM usage_rollups_tags"))).all())
        total = (await conn.execute(text("SELECT sum(events) FROM usage_rollups"))).scalar_one()
    assert (users, tags, total) == ({"alice": 2, "bob": 2}, {"beta": 3, "eu": 3}, 15)
    await assert_reconciled(conn_engine)
