"""GET /reports/usage, GET /reports/trial-balance, reversals and the ledger CSV export.

The reports are checked against what was recorded: sums computed here from the events POST /usage
answered, the ledger's `usage` entries, and each other (daily rollups vs raw events, JSON vs CSV),
to the last digit."""

import asyncio
import csv
import io
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from tests.helpers import assert_error, assert_reconciled

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

NANO = Decimal("0.000000001")
PERCENT = Decimal("0.01")
CREDITS_PER_USD = Decimal(100)
TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
MONEY = ("credits", "credits_reversed", "credits_usd", "upstream_cost_usd", "gross_margin_usd")
METRICS = ("events", *TOKENS, *MONEY, "gross_margin_pct")
GROUP_KEYS = ("account", "model", "provider", "day", "month")
GROUP_BYS = [
    (),
    *((key,) for key in GROUP_KEYS),
    *itertools.combinations(GROUP_KEYS, 2),
    ("day", "model"),
    ("month", "account"),
    ("account", "model", "day"),
    GROUP_KEYS,
]
ACCOUNTS = ("acme", "globex", "initech", "umbrella")
# Language models priced long before the last 40 days (several providers; cached, cache-write and
# reasoning rates; a long-context tier on claude-sonnet-4-5).
PAST_MODELS = (
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/o4-mini",
    "anthropic/claude-sonnet-4-5",
    "anthropic/claude-haiku-4-5",
    "google/gemini-3-flash-preview",
    "mistral/mistral-small-latest",
    "deepseek/deepseek-v4-pro",
)
# Priced only from the catalog's date on: their events fall between that price and now.
RECENT_MODELS = ("openai/text-embedding-3-small", "cohere/embed-v4.0", "ollama/llama3")
EMBEDDING = {"openai/text-embedding-3-small", "cohere/embed-v4.0"}


@pytest.fixture
async def client(settings, conn_engine, clock) -> AsyncIterator[AsyncTestClient]:
    """The app without its grant-expiry sweeper, so only the test decides when ledger entries are posted."""
    async with AsyncTestClient(create_app(replace(settings, expiry_sweep_seconds=3600), clock)) as client:
        yield client


def usd(cost: Decimal) -> Decimal:
    """An event's credits in USD, rounded once to 9 places, half to even like every amount."""
    return (cost / CREDITS_PER_USD).quantize(NANO, ROUND_HALF_EVEN)


def amount(value: Decimal) -> str:
    return format(value.quantize(NANO), "f")


async def create_account(client, admin, account_id: str, grant: Decimal | None = Decimal(100_000)) -> None:
    response = await client.post("/accounts", json={"id": account_id, "name": account_id}, headers=admin)
    assert response.status_code == 201, response.text
    if grant:
        response = await client.post(f"/accounts/{account_id}/grants", json={"amount": str(grant)}, headers=admin)
        assert response.status_code == 201, response.text


async def get_report(client, headers, path: str = "/reports/usage", **params) -> dict:
    """A report in JSON, every page of it; `from_` stands for `from`. Each page repeats everything
    but its rows (the totals are the whole report's)."""
    if "from_" in params:
        params["from"] = params.pop("from_")
    params = {k: v for k, v in params.items() if v is not None}
    pages = []
    while True:
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        pages.append(response.json())
        if "rows" not in pages[-1]:  # the trial balance, never paged
            return pages[-1]
        if not pages[-1].get("next_cursor"):
            break
        assert len(pages[-1]["rows"]) == int(params.get("limit", 100)), "a page short of its limit is the last"
        params["cursor"] = pages[-1]["next_cursor"]
    rest = [{k: v for k, v in page.items() if k not in ("rows", "next_cursor")} for page in pages]
    assert all(other == rest[0] for other in rest), "pages disagree beyond their rows"
    return pages[-1] | {"rows": [row for page in pages for row in page["rows"]]}


async def get_csv(client, headers, path: str, *, accept: bool = False, **params) -> tuple[list[str], list[dict]]:
    """A report as CSV, via `format=csv` or `Accept: text/csv`, parsed by the csv module."""
    if "from_" in params:
        params["from"] = params.pop("from_")
    params = {k: v for k, v in params.items() if v is not None}
    if accept:
        response = await client.get(path, params=params, headers={**headers, "Accept": "text/csv"})
    else:
        response = await client.get(path, params={**params, "format": "csv"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers.get("content-disposition", "")
    reader = csv.DictReader(io.StringIO(response.text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


async def ledger(client, headers, account_id: str, **params) -> list[dict]:
    """Every entry of an account's ledger, following the cursor; `from_` stands for `from`."""
    if "from_" in params:
        params["from"] = params.pop("from_")
    entries, cursor = [], None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/accounts/{account_id}/ledger", params=query, headers=headers)
        assert response.status_code == 200, response.text
        entries += response.json()["data"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return entries


async def balance(client, headers, account_id: str) -> dict:
    response = await client.get(f"/accounts/{account_id}/balance", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# What the test expects, from the events as recorded


def summary(events: list[dict]) -> dict:
    """A report row's figures for these events, with the report's formatting."""
    credits = sum((e["cost"] for e in events), Decimal(0))
    upstream = sum((e["upstream"] for e in events), Decimal(0))
    credits_usd = sum((usd(e["cost"]) for e in events), Decimal(0))
    margin = credits_usd - upstream
    return {
        "events": len(events),
        **{name: sum(e[name] for e in events) for name in TOKENS},
        "credits": amount(credits),
        "credits_reversed": amount(sum((e["reversed"] for e in events), Decimal(0))),
        "credits_usd": amount(credits_usd),
        "upstream_cost_usd": amount(upstream),
        "gross_margin_usd": amount(margin),
        "gross_margin_pct": str((margin * 100 / credits_usd).quantize(PERCENT, ROUND_HALF_EVEN))
        if credits_usd
        else None,
    }


def expected_rows(events: list[dict], keys: tuple[str, ...]) -> dict[tuple, dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for event in events:
        groups[tuple(event[key] for key in keys)].append(event)
    return {group: summary(members) for group, members in groups.items()}


def figures(row: dict) -> dict:
    return {name: row.get(name) for name in METRICS}


def check_report(report: dict, events: list[dict], keys: tuple[str, ...], source: str) -> None:
    """Rows equal the sums of the events in each group; totals equal the sums of the rows."""
    assert report["source"] == source, report
    assert report["group_by"] == list(keys)
    rows = report["rows"]
    for row in rows:
        assert set(row) == set(METRICS) | set(keys), row
        for name in MONEY:
            assert row[name] == amount(Decimal(row[name])), (name, row)  # 9 places, no exponent
    got = {tuple(row[key] for key in keys): figures(row) for row in rows}
    assert len(got) == len(rows), "a group appears twice"
    assert got == expected_rows(events, keys), keys
    totals = report["totals"]
    assert figures(totals) == summary(events)
    assert totals["events"] == sum(row["events"] for row in rows)
    for name in TOKENS:
        assert totals[name] == sum(row[name] for row in rows), name
    for name in MONEY:
        assert Decimal(totals[name]) == sum((Decimal(row[name]) for row in rows), Decimal(0)), name


def check_csv(header: list[str], csv_rows: list[dict], report: dict, keys: tuple[str, ...]) -> None:
    """Every CSV cell is the JSON row's value: the same integers, the same decimals."""
    assert header == [*keys, *METRICS]
    assert len(csv_rows) == len(report["rows"])
    for line, row in zip(csv_rows, report["rows"], strict=True):
        for key in keys:
            assert line[key] == str(row[key])
        for name in ("events", *TOKENS):
            assert int(line[name]) == row[name], name
        for name in MONEY:
            assert Decimal(line[name]) == Decimal(row[name]), name
            assert line[name] == row[name]
        pct = row["gross_margin_pct"]
        assert (line["gross_margin_pct"] == "") if pct is None else Decimal(line["gross_margin_pct"]) == Decimal(pct)


# Generated usage


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


async def recent_window(client, admin, now: datetime) -> tuple[datetime, datetime] | None:
    """Whole seconds from the latest price version's start of every RECENT_MODELS model to now."""
    starts = []
    for model in RECENT_MODELS:
        response = await client.get(f"/models/{model}", headers=admin)
        assert response.status_code == 200, response.text
        starts.append(datetime.fromisoformat(response.json()["pricing"]["effective_from"]))
    start = max([*starts, now - timedelta(days=38)])
    start = start.replace(microsecond=0) + timedelta(seconds=1 if start.microsecond else 0)
    end = now.replace(microsecond=0)
    return (start, end) if end - start >= timedelta(seconds=2) else None


def generate(seed: int, count: int, today: date, recent: tuple[datetime, datetime] | None) -> list[dict]:
    """`count` events over ACCOUNTS and the models above, on the 38 UTC days before today (and the
    recent window), including events on the first and last second of a day and tier crossings."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        if recent is not None and rng.random() < 0.15:
            model = rng.choice(RECENT_MODELS)
            span = int((recent[1] - recent[0]).total_seconds())
            occurred = recent[0] + timedelta(seconds=rng.randint(0, span - 1))
        else:
            model = rng.choice(PAST_MODELS)
            second = rng.choice((0, 86_399)) if rng.random() < 0.1 else rng.randint(0, 86_399)
            occurred = midnight(today - timedelta(days=rng.randint(1, 38))) + timedelta(seconds=second)
        body = {"event_id": f"ev-{index:04d}", "account_id": rng.choice(ACCOUNTS), "model": model}
        if model in EMBEDDING:
            body["input_tokens"] = rng.randint(1, 100_000)
        else:
            tokens = rng.randint(200_001, 230_000) if rng.random() < 0.1 else rng.randint(0, 40_000)
            cached = rng.randint(0, tokens // 2) if rng.random() < 0.5 else 0
            cache_write = rng.randint(0, (tokens - cached) // 3) if rng.random() < 0.3 else 0
            output = rng.randint(0, 4_000)
            reasoning = rng.randint(0, output) if rng.random() < 0.4 else 0
            body |= {"input_tokens": tokens, "output_tokens": output, "reasoning_tokens": reasoning}
            body |= {"cached_input_tokens": cached, "cache_write_tokens": cache_write}
        # Alternate "Z" and "+00:00" and another offset: all name the same instant.
        offset = [UTC, UTC, timezone(timedelta(hours=2))][index % 3]
        text_time = occurred.astimezone(offset).isoformat()
        body["occurred_at"] = text_time.replace("+00:00", "Z") if index % 3 == 0 else text_time
        events.append(body)
    return events


def recorded(body: dict, event: dict) -> dict:
    """The test's own record of an event: the group keys and what it was charged."""
    occurred = datetime.fromisoformat(body["occurred_at"]).astimezone(UTC)
    assert datetime.fromisoformat(event["occurred_at"]) == occurred
    return {
        "event_id": body["event_id"],
        "account": body["account_id"],
        "model": event["model"],
        "provider": event["model"].split("/", 1)[0],
        "day": occurred.date().isoformat(),
        "month": occurred.strftime("%Y-%m"),
        "occurred_at": occurred,
        **{name: event[name] for name in TOKENS},
        "cost": Decimal(event["cost"]),
        "upstream": Decimal(event["upstream_cost_usd"]),
        "reversed": Decimal(0),
    }


async def record_all(client, admin, bodies: list[dict]) -> list[dict]:
    """Most events in batches, the last ones as concurrent single POST /usage requests."""
    events = []
    singles = 20
    for start in range(0, len(bodies) - singles, 100):
        chunk = bodies[start : min(start + 100, len(bodies) - singles)]
        response = await client.post("/usage/batch", json={"events": chunk}, headers=admin)
        assert response.status_code == 200, response.text
        assert response.json()["created"] == len(chunk), [r for r in response.json()["results"] if "error" in r]
        events += [recorded(body, r["event"]) for body, r in zip(chunk, response.json()["results"], strict=True)]
    responses = await asyncio.gather(*(client.post("/usage", json=body, headers=admin) for body in bodies[-singles:]))
    for body, response in zip(bodies[-singles:], responses, strict=True):
        assert response.status_code == 201, response.text
        events.append(recorded(body, response.json()))
    return events


async def test_usage_report_equals_the_recorded_events_and_the_ledger(client, admin, make_key, clock, conn_engine):
    now = clock.now()
    today = now.date()
    for account_id in ACCOUNTS:
        await create_account(client, admin, account_id)
    bodies = generate(20261121, 320, today, await recent_window(client, admin, now))
    events = await record_all(client, admin, bodies)
    assert len({e["provider"] for e in events}) >= 5 and len({e["day"] for e in events}) >= 20
    assert any(e["cache_write_tokens"] for e in events) and any(e["reasoning_tokens"] for e in events)
    assert any(e["cached_input_tokens"] for e in events) and any(e["input_tokens"] > 200_000 for e in events)

    # A few reversals, shown apart in credits_reversed on the day of their event.
    for event in random.Random(7).sample(events, 6):
        body = {"event_id": event["event_id"], "reason": "refund"}
        response = await client.post(f"/accounts/{event['account']}/reversals", json=body, headers=admin)
        assert response.status_code == 201, response.text
        assert response.json()["amount"] == amount(event["cost"])
        event["reversed"] = event["cost"]

    # Every grouping, from the rollups (no bounds, or whole days) and from the events (any other bound).
    everything = "2001-01-01T12:00:00Z"
    for keys in GROUP_BYS:
        group_by = ",".join(keys)
        rollups = await get_report(client, admin, group_by=group_by)
        check_report(rollups, events, keys, "rollups")
        raw = await get_report(client, admin, group_by=group_by, from_=everything)
        check_report(raw, events, keys, "events")
        assert raw["rows"] == rollups["rows"] and raw["totals"] == rollups["totals"]
        # Rows come in key order, and small pages put together are the report.
        order = [tuple(row[key] for key in keys) for row in rollups["rows"]]
        assert order == sorted(order)
        assert await get_report(client, admin, group_by=group_by, limit=13) == rollups
        assert await get_report(client, admin, group_by=group_by, limit=13, from_=everything) == raw

    # Totals are minus the sum of the `usage` entries of the ledgers, to the last digit.
    usage_entries = [e for account_id in ACCOUNTS for e in await ledger(client, admin, account_id, kind="usage")]
    assert len(usage_entries) == len(events)
    totals = (await get_report(client, admin))["totals"]
    assert Decimal(totals["credits"]) == -sum(Decimal(e["amount"]) for e in usage_entries)
    per_account = {row["account"]: row for row in (await get_report(client, admin, group_by="account"))["rows"]}
    for account_id in ACCOUNTS:
        entries = await ledger(client, admin, account_id, kind="usage")
        assert Decimal(per_account[account_id]["credits"]) == -sum(Decimal(e["amount"]) for e in entries)
        reversals = await ledger(client, admin, account_id, kind="reversal")
        assert Decimal(per_account[account_id]["credits_reversed"]) == sum(Decimal(e["amount"]) for e in reversals)

    # A free model's group is worth nothing, and has no margin percentage.
    models = {row["model"]: row for row in (await get_report(client, admin, group_by="model"))["rows"]}
    if "ollama/llama3" in models:
        assert models["ollama/llama3"]["credits_usd"] == "0.000000000"
        assert models["ollama/llama3"]["gross_margin_pct"] is None

    # The same days three ways from the rollups, and from the raw events (bounds a microsecond off
    # midnight, which no event, all stamped on whole seconds, falls between).
    first, last = today - timedelta(days=30), today - timedelta(days=9)
    in_range = [e for e in events if midnight(first) <= e["occurred_at"] < midnight(last)]
    assert 0 < len(in_range) < len(events)
    tick = timedelta(microseconds=1)
    for keys in [(), ("model", "day"), ("account", "month"), ("provider",)]:
        group_by = ",".join(keys)
        by_date = await get_report(client, admin, group_by=group_by, from_=first.isoformat(), to=last.isoformat())
        check_report(by_date, in_range, keys, "rollups")
        assert by_date["from"] is not None and datetime.fromisoformat(by_date["from"]) == midnight(first)
        by_time = await get_report(
            client, admin, group_by=group_by, from_=f"{first}T00:00:00Z", to=f"{last}T00:00:00+00:00"
        )
        by_offset = await get_report(
            client,
            admin,
            group_by=group_by,
            from_=f"{first}T02:00:00+02:00",
            to=f"{last - timedelta(days=1)}T19:00:00-05:00",
        )
        raw = await get_report(
            client,
            admin,
            group_by=group_by,
            from_=(midnight(first) - tick).isoformat(),
            to=(midnight(last) - tick).isoformat(),
        )
        check_report(raw, in_range, keys, "events")
        for other in (by_time, by_offset):
            assert other["source"] == "rollups"
            assert (other["rows"], other["totals"]) == (by_date["rows"], by_date["totals"])
        assert (raw["rows"], raw["totals"]) == (by_date["rows"], by_date["totals"])

    # Ranges holding whole months (summed from the monthly rollups) and days around them (from the
    # daily ones), against the events, and against the daily rollups (grouped by day as well).
    month = today.replace(day=1)
    previous = (month - timedelta(days=1)).replace(day=1)
    for lo, hi in [(previous, today), (previous + timedelta(days=3), month), (previous, month), (None, month)]:
        in_range = [
            e for e in events if (lo is None or midnight(lo) <= e["occurred_at"]) and e["occurred_at"] < midnight(hi)
        ]
        bounds = {"from_": lo and lo.isoformat(), "to": hi.isoformat()}
        for keys in [(), ("month",), ("account", "model"), ("provider", "month")]:
            report = await get_report(client, admin, group_by=",".join(keys), **bounds)
            check_report(report, in_range, keys, "rollups")
            by_day = await get_report(client, admin, group_by=",".join([*keys, "day"]), **bounds)
            assert by_day["totals"] == report["totals"]

    # A range that is not whole days, from the events only.
    start, end = midnight(first) + timedelta(hours=6, minutes=30), midnight(last) + timedelta(hours=18)
    partial = [e for e in events if start <= e["occurred_at"] < end]
    for keys in [("day",), ("account", "model")]:
        report = await get_report(
            client, admin, group_by=",".join(keys), from_=start.isoformat(), to=end.isoformat().replace("+00:00", "Z")
        )
        check_report(report, partial, keys, "events")
    # Only one bound.
    since = [e for e in events if e["occurred_at"] >= midnight(last)]
    check_report(await get_report(client, admin, group_by="day", from_=last.isoformat()), since, ("day",), "rollups")
    before = [e for e in events if e["occurred_at"] < midnight(first)]
    check_report(await get_report(client, admin, group_by="model", to=first.isoformat()), before, ("model",), "rollups")

    # The account filter, and an account-bound key, which sees its own account only.
    globex = [e for e in events if e["account"] == "globex"]
    for keys in [("model",), ("day",), ("account", "month")]:
        report = await get_report(client, admin, group_by=",".join(keys), account_id="globex")
        check_report(report, globex, keys, "rollups")
        raw = await get_report(client, admin, group_by=",".join(keys), account_id="globex", from_=everything)
        check_report(raw, globex, keys, "events")
    bound = {"X-API-Key": await make_key("ledger:read", account_id="globex")}
    check_report(await get_report(client, bound, group_by="account,model"), globex, ("account", "model"), "rollups")
    check_report(await get_report(client, bound, account_id="globex"), globex, (), "rollups")
    assert_error(
        await client.get("/reports/usage", params={"account_id": "acme"}, headers=bound), 404, "account_not_found"
    )

    # CSV, by `format=csv` and by `Accept: text/csv`, parses into the JSON rows' numbers.
    for keys, params in [
        (("model", "day"), {}),
        (("account", "month"), {"from_": first.isoformat(), "to": last.isoformat()}),
        (("provider",), {"from_": everything}),
        ((), {}),
        (GROUP_KEYS, {"account_id": "initech"}),
    ]:
        report = await get_report(client, admin, group_by=",".join(keys), **params)
        for accept in (False, True):
            header, rows = await get_csv(
                client, admin, "/reports/usage", accept=accept, group_by=",".join(keys), **params
            )
            check_csv(header, rows, report, keys)
    # `format=json` wins over the Accept header.
    response = await client.get("/reports/usage", params={"format": "json"}, headers={**admin, "Accept": "text/csv"})
    assert response.status_code == 200 and response.json()["totals"]["events"] == len(events)

    await assert_reconciled(conn_engine)


async def test_usage_report_of_nothing(client, admin):
    for params in ({}, {"group_by": "model,day"}, {"from": "2001-01-01T12:00:00Z"}):
        report = await get_report(client, admin, **params)
        assert report["rows"] == []
        assert report["totals"] == summary([])
    header, rows = await get_csv(client, admin, "/reports/usage", group_by="model")
    assert header == ["model", *METRICS] and rows == []


async def test_credits_usd_rounds_half_to_even(client, admin, clock, scratch):
    """3 tokens at 0.0125 USD per 1M, margin 1.4: 0.00000525 credits, worth 0.0000000525 USD, a tie at
    the 9th place that ROUND_HALF_EVEN (the one rounding rule of docs/DESIGN.md) makes 0.000000052."""
    model = f"{scratch}/tie"
    created = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "tie", "type": "language"}, headers=admin
    )
    assert created.status_code == 200, created.text
    price = await client.post("/catalog/prices", json={"model": model, "input": "0.0125", "output": "1"}, headers=admin)
    assert price.status_code == 201, price.text
    clock.at = datetime.now(UTC)  # the price is in effect from now on
    await create_account(client, admin, "acme")
    body = {"event_id": "tie", "account_id": "acme", "model": model, "input_tokens": 3}
    response = await client.post("/usage", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert (response.json()["cost"], response.json()["upstream_cost_usd"]) == ("0.000005250", "0.000000038")
    assert usd(Decimal("0.000005250")) == Decimal("0.000000052")
    for params in ({}, {"from": "2001-01-01T12:00:00Z"}):
        totals = (await get_report(client, admin, **params))["totals"]
        assert (totals["credits_usd"], totals["gross_margin_usd"]) == ("0.000000052", "0.000000014"), params


async def test_group_by_repeated_or_comma_separated(client, admin):
    """`group_by=account&group_by=model` groups by both, like `group_by=account,model`; an unknown or repeated
    key is a 400 that names it."""
    for account in ("acme", "globex"):
        await create_account(client, admin, account)
        for model in ("openai/gpt-4o", "openai/gpt-4o-mini"):
            body = {"event_id": f"{account}-{model}", "account_id": account, "model": model, "input_tokens": 10}
            response = await client.post("/usage", json=body, headers=admin)
            assert response.status_code == 201, response.text
    repeated = await get_report(client, admin, group_by=["account", "model"])
    assert repeated == await get_report(client, admin, group_by="account,model")
    assert repeated["group_by"] == ["account", "model"]
    assert sorted((row["account"], row["model"]) for row in repeated["rows"]) == [
        (account, model) for account in ("acme", "globex") for model in ("openai/gpt-4o", "openai/gpt-4o-mini")
    ]
    mixed = await get_report(client, admin, group_by=["model", "account,day"])
    assert mixed["group_by"] == ["model", "account", "day"]
    header, _ = await get_csv(client, admin, "/reports/usage", group_by=["account", "model"])
    assert header[:2] == ["account", "model"]
    for group_by, named in ((["account", "colour"], "'colour'"), (["model", "day,model"], "'model'")):
        response = await client.get("/reports/usage", params={"group_by": group_by}, headers=admin)
        error = assert_error(response, 400, "validation_error")
        assert (error["param"], named in error["message"]) == ("group_by", True), error


async def test_usage_report_validation(client, admin, make_key):
    cases = [
        ({"group_by": "model,colour"}, "group_by"),
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "model,day,model"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-1"}, "from"),
        ({"from": "2026-11-01T00:00:00"}, "from"),  # naive
        ({"to": "2026-11-01T12:30:00"}, "to"),  # naive
        ({"from": "2026-11-02", "to": "2026-11-02"}, "from"),
        ({"from": "2026-11-03", "to": "2026-11-02"}, "from"),
        ({"from": "2026-11-02T10:00:00Z", "to": "2026-11-02T09:59:59Z"}, "from"),
        ({"from": "2026-11-02T10:00:00Z", "to": "2026-11-02T12:00:00+02:00"}, "from"),  # the same instant
        ({"format": "xml"}, "format"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"group_by": "model", "cursor": "not a cursor"}, "cursor"),
        # A cursor of another grouping: its values are not this grouping's keys.
        ({"group_by": "model,day", "cursor": "WyJvcGVuYWkvZ3B0LTRvIl0"}, "cursor"),
        ({"group_by": "day", "cursor": "WyJvcGVuYWkvZ3B0LTRvIl0"}, "cursor"),
    ]
    wrong = []
    for params, param in cases:
        error = assert_error(await client.get("/reports/usage", params=params, headers=admin), 400, "validation_error")
        if error.get("param") != param:  # the query parameter as sent: `from`, not `from_`
            wrong.append((params, param, error))
    assert wrong == [], "errors naming another field than the one sent:\n" + "\n".join(map(str, wrong))
    # ledger:read is needed: a gateway's key is refused.
    writer = {"X-API-Key": await make_key("usage:write", "catalog:read")}
    assert_error(await client.get("/reports/usage", headers=writer), 403, "insufficient_scope")
    assert_error(await client.get("/reports/trial-balance", headers=writer), 403, "insufficient_scope")
    assert_error(await client.get("/reports/usage"), 401, "invalid_api_key")


# Reversals


async def test_reversal_shows_in_credits_reversed_of_its_group(client, admin, make_key, clock, conn_engine):
    now = clock.now()
    await create_account(client, admin, "acme", grant=Decimal(100))
    await create_account(client, admin, "globex", grant=Decimal(100))
    yesterday, earlier = now - timedelta(days=1), now - timedelta(days=3)
    gpt, haiku = "openai/gpt-4o", "anthropic/claude-haiku-4-5"
    bodies = [
        {"event_id": "a", "model": gpt, "input_tokens": 10_000, "output_tokens": 1000, "occurred_at": yesterday},
        {"event_id": "b", "model": gpt, "input_tokens": 20_000, "output_tokens": 500, "occurred_at": earlier},
        {"event_id": "c", "model": haiku, "input_tokens": 5000, "output_tokens": 100, "occurred_at": yesterday},
    ]
    costs = {}
    for body in bodies:
        body = body | {"account_id": "acme", "occurred_at": body["occurred_at"].isoformat()}
        response = await client.post("/usage", json=body, headers=admin)
        assert response.status_code == 201, response.text
        costs[body["event_id"]] = Decimal(response.json()["cost"])
    assert costs["b"] == Decimal("7.7")  # (20000 x 2.5 + 500 x 10) / 1e6 USD x 140
    before = Decimal((await balance(client, admin, "acme"))["balance"])

    clock.advance(minutes=5)
    response = await client.post("/accounts/acme/reversals", json={"event_id": "b", "reason": "outage"}, headers=admin)
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    first = response.json()
    assert (first["account_id"], first["event_id"], first["amount"], first["reason"]) == (
        "acme",
        "b",
        "7.700000000",
        "outage",
    )
    assert first["balance_after"] == amount(before + costs["b"]) and first.get("replay", False) is False
    assert datetime.fromisoformat(first["created_at"]) == clock.now()

    # Reversing it again replays the first answer (even with another reason) and credits nothing more.
    clock.advance(minutes=5)
    again = await client.post("/accounts/acme/reversals", json={"event_id": "b", "reason": "again"}, headers=admin)
    assert again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first | {"replay": True}
    assert Decimal((await balance(client, admin, "acme"))["balance"]) == before + costs["b"]
    reversals = await ledger(client, admin, "acme", kind="reversal")
    assert [(e["kind"], e["amount"], e["event_id"], e["description"]) for e in reversals] == [
        ("reversal", "7.700000000", "b", "outage")
    ]

    # The report keeps the charge in `credits` and shows the reversal apart, in the event's group.
    for params in ({}, {"from": "2001-01-01T12:00:00Z"}):
        report = await get_report(client, admin, group_by="model,day", **params)
        reversed_by_group = {(r["model"], r["day"]): r["credits_reversed"] for r in report["rows"]}
        assert reversed_by_group == {
            ("anthropic/claude-haiku-4-5", yesterday.date().isoformat()): "0.000000000",
            ("openai/gpt-4o", earlier.date().isoformat()): "7.700000000",
            ("openai/gpt-4o", yesterday.date().isoformat()): "0.000000000",
        }, params
        assert report["totals"]["credits"] == amount(sum(costs.values()))
        assert report["totals"]["credits_reversed"] == "7.700000000"
        # The reversed event's day from the rollups, and a microsecond around the event from the events.
        day, tick = earlier.date(), timedelta(microseconds=1)
        for bounds in ({"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
                       {"from": (earlier - tick).isoformat(), "to": (earlier + tick).isoformat()}):  # fmt: skip
            report = await get_report(client, admin, **bounds)
            totals = report["totals"]
            assert (totals["events"], totals["credits_reversed"]) == (1, "7.700000000"), bounds

    # Concurrent reversals of one event credit it once.
    responses = await asyncio.gather(
        *(
            client.post("/accounts/acme/reversals", json={"event_id": "c", "reason": "race"}, headers=admin)
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201], [r.text for r in responses]
    assert len(await ledger(client, admin, "acme", kind="reversal")) == 2
    assert Decimal((await balance(client, admin, "acme"))["balance"]) == before + costs["b"] + costs["c"]

    # Unknown events, and another account's event, are not found; other keys may not reverse.
    error = assert_error(
        await client.post("/accounts/acme/reversals", json={"event_id": "zzz", "reason": "x"}, headers=admin),
        404,
        "usage_event_not_found",
    )
    assert error.get("param") == "event_id"
    assert_error(
        await client.post("/accounts/globex/reversals", json={"event_id": "a", "reason": "x"}, headers=admin),
        404,
        "usage_event_not_found",
    )
    assert_error(
        await client.post("/accounts/ghost/reversals", json={"event_id": "a", "reason": "x"}, headers=admin),
        404,
        "account_not_found",
    )
    assert_error(
        await client.post("/accounts/acme/reversals", json={"event_id": "a"}, headers=admin), 400, "validation_error"
    )
    finance = {"X-API-Key": await make_key("ledger:read", "usage:write")}
    assert_error(
        await client.post("/accounts/acme/reversals", json={"event_id": "a", "reason": "x"}, headers=finance),
        403,
        "insufficient_scope",
    )
    await assert_reconciled(conn_engine)


# Trial balance


TB_MOVEMENTS = ("grants", "usage", "adjustments", "reversals", "expirations")
TB_FIELDS = ("account_id", "opening", *TB_MOVEMENTS, "closing")
KIND_OF = {"grants": "grant", "usage": "usage", "adjustments": "adjustment", "reversals": "reversal",
           "expirations": "expiration"}  # fmt: skip


def check_trial_row(row: dict, entries: list[dict], start: datetime | None, end: datetime | None) -> None:
    """A row's figures are sums of the account's ledger entries before and within [start, end)."""

    def at(entry) -> datetime:
        return datetime.fromisoformat(entry["created_at"])

    def total(selected) -> str:
        return amount(sum((Decimal(e["amount"]) for e in selected), Decimal(0)))

    inside = [e for e in entries if (start is None or at(e) >= start) and (end is None or at(e) < end)]
    assert row["opening"] == total(e for e in entries if start is not None and at(e) < start), row
    for name in TB_MOVEMENTS:
        assert row[name] == total(e for e in inside if e["kind"] == KIND_OF[name]), (name, row)
    assert row["closing"] == total(e for e in entries if end is None or at(e) < end), row
    movements = sum((Decimal(row[name]) for name in TB_MOVEMENTS), Decimal(0))
    assert Decimal(row["opening"]) + movements == Decimal(row["closing"]), row


async def test_trial_balance(client, admin, make_key, clock, conn_engine):
    t0 = clock.now()
    await create_account(client, admin, "acme", grant=Decimal(100))
    await create_account(client, admin, "globex", grant=None)
    response = await client.post(
        "/accounts/globex/grants",
        json={"amount": "50", "expires_at": (t0 + timedelta(minutes=90)).isoformat()},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    await create_account(client, admin, "initech", grant=None)  # no entries at all

    async def use(account_id: str, event_id: str, tokens: int) -> Decimal:
        body = {"event_id": event_id, "account_id": account_id, "model": "openai/gpt-4o", "input_tokens": tokens}
        response = await client.post("/usage", json=body, headers=admin)
        assert response.status_code == 201, response.text
        return Decimal(response.json()["cost"])

    async def adjust(account_id: str, value: str) -> None:
        body = {"amount": value, "reason": "correction"}
        response = await client.post(f"/accounts/{account_id}/adjustments", json=body, headers=admin)
        assert response.status_code == 201, response.text

    t1 = clock.advance(hours=1)
    await use("acme", "a1", 10_000)
    await use("acme", "a2", 30_000)
    await use("globex", "g1", 20_000)
    await adjust("acme", "5.5")
    await adjust("acme", "-2.25")
    t2 = clock.advance(hours=1)  # globex's grant has expired: its next write posts the expiration first
    await use("globex", "g2", 1000)
    response = await client.post("/accounts/acme/reversals", json={"event_id": "a2", "reason": "x"}, headers=admin)
    assert response.status_code == 201, response.text
    t3 = clock.advance(hours=1)
    await client.post("/accounts/acme/grants", json={"amount": "10"}, headers=admin)
    await adjust("globex", "3")
    clock.advance(hours=1)

    entries = {a: await ledger(client, admin, a) for a in ("acme", "globex", "initech")}
    assert {e["kind"] for e in entries["globex"]} == {"grant", "usage", "expiration", "adjustment"}
    assert {e["kind"] for e in entries["acme"]} == {"grant", "usage", "adjustment", "reversal"}

    # All time: closing is the balance.
    report = await get_report(client, admin, "/reports/trial-balance")
    assert report["from"] is None and report["to"] is None
    rows = {row["account_id"]: row for row in report["accounts"]}
    assert set(rows) == {"acme", "globex", "initech"}
    for account_id, row in rows.items():
        assert list(row) == list(TB_FIELDS)
        check_trial_row(row, entries[account_id], None, None)
        assert row["opening"] == "0.000000000"
        assert row["closing"] == (await balance(client, admin, account_id))["balance"]
    assert rows["initech"] == dict.fromkeys(TB_FIELDS, "0.000000000") | {"account_id": "initech"}
    assert Decimal(rows["globex"]["expirations"]) < 0

    # Consecutive periods chain: each opening is the previous closing; each row adds up.
    cuts = [None, t1 + timedelta(minutes=30), t2 + timedelta(minutes=30), t3, None]
    closings = {}
    for start, end in itertools.pairwise(cuts):
        params = {"from_": start.isoformat() if start else None, "to": end.isoformat() if end else None}
        period = await get_report(client, admin, "/reports/trial-balance", **params)
        assert (period["from"] is None) == (start is None) and (period["to"] is None) == (end is None)
        for row in period["accounts"]:
            check_trial_row(row, entries[row["account_id"]], start, end)
            if start is not None:
                assert row["opening"] == closings[row["account_id"]], (start, row)
            closings[row["account_id"]] = row["closing"]
    assert closings == {a: rows[a]["closing"] for a in rows}

    # The middle period holds the expiration and the reversal; a whole-day `to` works too.
    middle = await get_report(
        client,
        admin,
        "/reports/trial-balance",
        from_=cuts[1].isoformat(),
        to=cuts[2].isoformat().replace("+00:00", "Z"),
    )
    middle_rows = {row["account_id"]: row for row in middle["accounts"]}
    assert Decimal(middle_rows["globex"]["expirations"]) < 0 and Decimal(middle_rows["acme"]["reversals"]) > 0
    tomorrow = (t0 + timedelta(days=2)).date().isoformat()
    assert (await get_report(client, admin, "/reports/trial-balance", to=tomorrow))["accounts"] == report["accounts"]

    # The account filter, an account-bound key, and CSV.
    only = await get_report(client, admin, "/reports/trial-balance", account_id="globex", from_=cuts[1].isoformat())
    assert [row["account_id"] for row in only["accounts"]] == ["globex"]
    check_trial_row(only["accounts"][0], entries["globex"], cuts[1], None)
    bound = {"X-API-Key": await make_key("ledger:read", account_id="acme")}
    mine = await get_report(client, bound, "/reports/trial-balance")
    assert mine["accounts"] == [rows["acme"]]
    assert_error(
        await client.get("/reports/trial-balance", params={"account_id": "globex"}, headers=bound),
        404,
        "account_not_found",
    )
    for params in ({}, {"from_": cuts[1].isoformat(), "to": cuts[3].isoformat()}):
        json_rows = (await get_report(client, admin, "/reports/trial-balance", **params))["accounts"]
        for accept in (False, True):
            header, csv_rows = await get_csv(client, admin, "/reports/trial-balance", accept=accept, **params)
            assert header == list(TB_FIELDS)
            assert len(csv_rows) == len(json_rows)
            for line, row in zip(csv_rows, json_rows, strict=True):
                assert line["account_id"] == row["account_id"]
                for name in TB_FIELDS[1:]:
                    assert Decimal(line[name]) == Decimal(row[name]) and line[name] == row[name], name
    await assert_reconciled(conn_engine)


async def test_trial_balance_validation(client, admin, clock):
    t0 = clock.now()
    await create_account(client, admin, "acme", grant=Decimal(100))
    t1 = clock.advance(hours=1)
    response = await client.post("/accounts/acme/adjustments", json={"amount": "5", "reason": "x"}, headers=admin)
    assert response.status_code == 201, response.text
    clock.advance(hours=1)
    cases = [
        ({"from": "soon"}, "from"),
        ({"to": "2026-11-01T00:00:00"}, "to"),  # naive
        ({"format": "pdf"}, "format"),
        ({"from": "2026-11-02", "to": "2026-11-02"}, "from"),
        ({"from": "2026-11-03", "to": "2026-11-02"}, "from"),
        # An inverted period cannot add up: its opening (100) is past its closing and nothing moves in it.
        ({"from": (t1 + timedelta(minutes=1)).isoformat(), "to": (t0 + timedelta(minutes=1)).isoformat()}, "from"),
    ]
    wrong = []
    for params, param in cases:
        response = await client.get("/reports/trial-balance", params=params, headers=admin)
        if response.status_code != 400:
            wrong.append((params, response.status_code, response.text))
            continue
        error = assert_error(response, 400, "validation_error")
        if error.get("param") != param:
            wrong.append((params, param, error))
    assert wrong == [], "accepted, or another field named:\n" + "\n".join(map(str, wrong))


# Ledger CSV


async def test_ledger_csv_has_every_entry(client, admin, make_key, clock, conn_engine):
    await create_account(client, admin, "acme", grant=Decimal(1000))
    await create_account(client, admin, "globex", grant=None)
    rng = random.Random(5)
    bodies = [
        {"event_id": f"e{i:03d}", "account_id": "acme", "model": rng.choice(PAST_MODELS[:4]),
         "input_tokens": rng.randint(1, 30_000), "output_tokens": rng.randint(0, 3000)}
        for i in range(146)
    ]  # fmt: skip
    response = await client.post("/usage/batch", json={"events": bodies}, headers=admin)
    assert response.status_code == 200 and response.json()["created"] == 146, response.text
    for value, reason in [("12.5", "goodwill, with a comma"), ("-0.000000001", 'a "quoted" reason'), ("3", "x\ny")]:
        clock.advance(seconds=1)
        adjusted = await client.post(
            "/accounts/acme/adjustments", json={"amount": value, "reason": reason}, headers=admin
        )
        assert adjusted.status_code == 201, adjusted.text
    response = await client.post("/accounts/acme/reversals", json={"event_id": "e007", "reason": "r"}, headers=admin)
    assert response.status_code == 201, response.text

    # JSON: two pages of the default size.
    pages, cursor = [], None
    while True:
        params = {"cursor": cursor} if cursor else {}
        page = await client.get("/accounts/acme/ledger", params=params, headers=admin)
        assert page.status_code == 200, page.text
        pages.append(page.json()["data"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [100, 51]
    entries = [entry for p in pages for entry in p]
    assert len({e["id"] for e in entries}) == 151

    def same(line: dict, entry: dict) -> None:
        assert int(line["id"]) == entry["id"]
        for name in ("account_id", "kind", "counterparty"):
            assert line[name] == entry[name], name
        for name in ("amount", "balance_after"):
            assert Decimal(line[name]) == Decimal(entry[name]) and line[name] == entry[name], name
        assert line["event_id"] == (entry["event_id"] or "")
        assert line["grant_id"] == ("" if entry["grant_id"] is None else str(entry["grant_id"]))
        assert line["description"] == (entry["description"] or "")
        assert datetime.fromisoformat(line["created_at"]) == datetime.fromisoformat(entry["created_at"])

    bound = {"X-API-Key": await make_key("ledger:read", account_id="acme")}
    for headers, accept in [(admin, False), (admin, True), (bound, False)]:
        header, lines = await get_csv(client, headers, "/accounts/acme/ledger", accept=accept)
        assert header == [
            "id", "account_id", "kind", "amount", "balance_after", "counterparty", "event_id", "grant_id",
            "description", "created_at",
        ]  # fmt: skip
        assert len(lines) == len(entries)
        for line, entry in zip(lines, entries, strict=True):
            same(line, entry)
    # The balance is the sum of the amounts, and the last balance_after.
    header, lines = await get_csv(client, admin, "/accounts/acme/ledger")
    total = sum(Decimal(line["amount"]) for line in lines)
    assert total == Decimal(lines[-1]["balance_after"]) == Decimal((await balance(client, admin, "acme"))["balance"])
    # Filters apply to the export too.
    _, usage_lines = await get_csv(client, admin, "/accounts/acme/ledger", kind="usage")
    assert len(usage_lines) == 146 and {line["kind"] for line in usage_lines} == {"usage"}
    json_usage = await ledger(client, admin, "acme", kind="usage")
    for line, entry in zip(usage_lines, json_usage, strict=True):
        same(line, entry)
    _, adjustment_lines = await get_csv(client, admin, "/accounts/acme/ledger", kind=["adjustment", "reversal"])
    assert [line["kind"] for line in adjustment_lines] == ["adjustment"] * 3 + ["reversal"]
    assert [line["description"] for line in adjustment_lines[:3]] == [
        "goodwill, with a comma",
        'a "quoted" reason',
        "x\ny",
    ]
    other = {"X-API-Key": await make_key("ledger:read", account_id="globex")}
    response = await client.get("/accounts/acme/ledger", params={"format": "csv"}, headers=other)
    assert_error(response, 404, "account_not_found")
    await assert_reconciled(conn_engine)
