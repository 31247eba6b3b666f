"""Reads: balances, the ledger (kind and time filters, cursor pages, the balance_after chain), GET /usage
(filters and pages), and account-bound keys seeing their own account only."""

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


ZERO = "0.000000000"


@pytest.fixture
async def reader(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("ledger:read")}


async def create_account(client, admin, account_id: str, overdraft_limit: str = "0") -> None:
    body = {"id": account_id, "name": account_id, "overdraft_limit": overdraft_limit}
    assert (await client.post("/accounts", json=body, headers=admin)).status_code == 201


async def grant(client, admin, account_id: str, amount: str, **fields) -> dict:
    response = await client.post(f"/accounts/{account_id}/grants", json={"amount": amount, **fields}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def use(client, admin, account_id: str, event_id: str, model: str = "openai/gpt-4o", **tokens) -> dict:
    body = {"event_id": event_id, "account_id": account_id, "model": model, "input_tokens": 1000, **tokens}
    response = await client.post("/usage", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def pages(client, headers, path: str, **params) -> list[list[dict]]:
    """Every page of a cursor-paginated list."""
    result, cursor = [], None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_cursor"}
        result.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return result
        assert len(result) < 100


async def test_balance(client, admin, reader):
    await create_account(client, admin, "acme", overdraft_limit="12.5")
    await grant(client, admin, "acme", "10")
    charged = await use(client, admin, "acme", "e1")  # 1000 x 2.5 / 1e6 x 140 = 0.35
    assert charged["cost"] == "0.350000000"
    response = await client.get("/accounts/acme/balance", headers=reader)
    assert response.status_code == 200
    assert response.json() == {
        "account_id": "acme",
        "balance": "9.650000000",
        "pending": ZERO,
        "available": "9.650000000",
        "overdraft_limit": "12.500000000",
    }
    account = (await client.get("/accounts/acme", headers=reader)).json()
    assert account["balance"] == "9.650000000"
    assert_error(await client.get("/accounts/ghost/balance", headers=reader), 404, "account_not_found")
    assert_error(await client.get("/accounts/ghost/ledger", headers=reader), 404, "account_not_found")
    assert_error(await client.get("/accounts/ghost/grants", headers=reader), 404, "account_not_found")


async def test_ledger_kinds_times_pages_and_chain(client, admin, reader, clock):
    await create_account(client, admin, "acme")
    times = []
    times.append(clock.now())
    await grant(client, admin, "acme", "10")  # 1: +10
    times.append(clock.advance(hours=1))
    await use(client, admin, "acme", "u1")  # 2: -0.35
    times.append(clock.advance(hours=1))
    await use(client, admin, "acme", "u2", output_tokens=1000)  # 3: -0.35 - 1.4 = -1.75
    times.append(clock.advance(hours=1))
    promo = await grant(client, admin, "acme", "2.5", description="promo")  # 4: +2.5
    times.append(clock.advance(hours=1))
    await use(client, admin, "acme", "u3", input_tokens=2006, cached_input_tokens=1920, output_tokens=300)  # 5
    path = "/accounts/acme/ledger"

    (everything,) = await pages(client, reader, path)
    assert [e["kind"] for e in everything] == ["grant", "usage", "usage", "grant", "usage"]
    assert [e["amount"] for e in everything] == [
        "10.000000000",
        "-0.350000000",
        "-1.750000000",
        "2.500000000",
        "-0.786100000",
    ]
    assert [e["event_id"] for e in everything] == [None, "u1", "u2", None, "u3"]
    assert everything[3]["grant_id"] == promo["id"] and everything[3]["description"] == "promo"
    assert {e["counterparty"] for e in everything if e["kind"] == "usage"} == {"system:revenue"}
    assert all(e["account_id"] == "acme" for e in everything)
    assert [e["created_at"] for e in everything] == [t.isoformat().replace("+00:00", "Z") for t in times]
    # The chain: each balance_after is the one before plus the amount, and the last is the balance.
    running = Decimal(0)
    for entry in everything:
        running += Decimal(entry["amount"])
        assert Decimal(entry["balance_after"]) == running, entry
    balance = (await client.get("/accounts/acme/balance", headers=reader)).json()["balance"]
    assert everything[-1]["balance_after"] == balance == "9.613900000"

    # Pages of 2 over the 5 entries: 2 + 2 + 1, in order, nothing repeated or lost.
    paged = await pages(client, reader, path, limit=2)
    assert [len(page) for page in paged] == [2, 2, 1]
    assert [e for page in paged for e in page] == everything

    # Kind filters, repeatable.
    def ids(entries):
        return [e["id"] for e in entries]

    (usage,) = await pages(client, reader, path, kind="usage")
    assert ids(usage) == ids(everything[1:3] + everything[4:])
    (grants,) = await pages(client, reader, path, kind="grant")
    assert ids(grants) == ids([everything[0], everything[3]])
    both = await client.get(f"{path}?kind=grant&kind=usage", headers=reader)
    assert ids(both.json()["data"]) == ids(everything)
    assert (await client.get(path, params={"kind": "expiration"}, headers=reader)).json()["data"] == []
    assert [len(page) for page in await pages(client, reader, path, kind="usage", limit=2)] == [2, 1]

    # Time filters on posting time, [from, to).
    async def window(**params):
        return ids([e for page in await pages(client, reader, path, **params) for e in page])

    assert await window(**{"from": times[1].isoformat()}) == ids(everything[1:])
    assert await window(to=times[3].isoformat()) == ids(everything[:3])
    assert await window(**{"from": times[1].isoformat(), "to": times[3].isoformat()}) == ids(everything[1:3])
    assert await window(**{"from": times[1].isoformat(), "kind": "usage", "limit": 1}) == ids(
        everything[1:3] + everything[4:]
    )
    assert await window(**{"from": (times[4] + timedelta(seconds=1)).isoformat()}) == []

    for params, field in (
        ({"kind": "refund"}, "kind"),
        ({"from": times[0].replace(tzinfo=None).isoformat()}, "from"),
        ({"to": "tomorrow"}, "to"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
    ):
        error = assert_error(await client.get(path, params=params, headers=reader), 400, "validation_error")
        assert error.get("param") == field or field in error["message"], (params, error)


async def test_usage_list_filters_and_pages(client, admin, reader, clock):
    for account in ("acme", "other"):
        await create_account(client, admin, account)
        await grant(client, admin, account, "100")
    times, made = [], []
    plan = [
        ("acme", "a1", "gpt-4o"),
        ("acme", "a2", "anthropic/claude-sonnet-4-5"),
        ("other", "o1", "google/gemini-2.5-pro"),
        ("acme", "a3", "openai/text-embedding-3-small"),
        ("other", "o2", "openai/gpt-4o"),
    ]
    for account, event_id, model in plan:
        times.append(clock.advance(minutes=10))
        made.append(await use(client, admin, account, event_id, model))

    async def listed(**params) -> list[str]:
        return [e["event_id"] for page in await pages(client, reader, "/usage", **params) for e in page]

    assert await listed() == ["a1", "a2", "o1", "a3", "o2"]
    (everything,) = await pages(client, reader, "/usage")
    assert everything == made  # as recorded, upstream cost included for a ledger:read key
    assert all("upstream_cost_usd" in e for e in everything)
    assert await listed(account_id="acme") == ["a1", "a2", "a3"]
    assert await listed(model="gpt-4o") == ["a1", "o2"]  # an alias filters by the model it names
    assert await listed(model="openai/gpt-4o", account_id="other") == ["o2"]
    assert await listed(provider="openai") == ["a1", "a3", "o2"]
    assert await listed(provider="anthropic") == ["a2"]
    assert await listed(provider="cohere") == []
    assert await listed(**{"from": times[1].isoformat()}) == ["a2", "o1", "a3", "o2"]
    assert await listed(to=times[2].isoformat()) == ["a1", "a2"]
    assert await listed(**{"from": times[1].isoformat(), "to": times[4].isoformat()}) == ["a2", "o1", "a3"]
    assert await listed(**{"from": times[1].isoformat(), "account_id": "acme", "provider": "openai"}) == ["a3"]

    paged = await pages(client, reader, "/usage", limit=2)
    assert [[e["event_id"] for e in page] for page in paged] == [["a1", "a2"], ["o1", "a3"], ["o2"]]
    paged = await pages(client, reader, "/usage", limit=2, account_id="acme")
    assert [[e["event_id"] for e in page] for page in paged] == [["a1", "a2"], ["a3"]]

    assert_error(await client.get("/usage", params={"model": "nobody/nothing"}, headers=reader), 404, "model_not_found")
    # An account filter matching no account is an empty list, for keys that may read every account.
    assert (await client.get("/usage", params={"account_id": "ghost"}, headers=reader)).json()["data"] == []
    for params in ({"from": "2026-01-01T00:00:00"}, {"cursor": "zzz"}, {"limit": 0}):
        assert_error(await client.get("/usage", params=params, headers=reader), 400, "validation_error")


async def test_usage_list_orders_by_occurred_at(client, admin, reader, clock):
    """Events reported late sit where they happened, and pages stay exact across equal times."""
    await create_account(client, admin, "acme")
    start = clock.now()
    clock.advance(hours=2)
    await use(client, admin, "acme", "late-2", occurred_at=(start + timedelta(hours=1)).isoformat())
    await use(client, admin, "acme", "now")
    await use(client, admin, "acme", "late-1", occurred_at=start.isoformat())
    for event_id in ("same-a", "same-b", "same-c"):
        await use(client, admin, "acme", event_id, occurred_at=(start + timedelta(minutes=30)).isoformat())
    paged = await pages(client, reader, "/usage", limit=2)
    order = [e["event_id"] for page in paged for e in page]
    assert order == ["late-1", "same-a", "same-b", "same-c", "late-2", "now"]


async def test_reads_need_ledger_read(client, admin, make_key):
    await create_account(client, admin, "acme")
    writer = {"X-API-Key": await make_key("usage:write")}
    for path in ("/usage", "/accounts/acme/balance", "/accounts/acme/ledger", "/accounts/acme/grants"):
        assert_error(await client.get(path, headers=writer), 403, "insufficient_scope")


async def test_account_bound_key_sees_its_own_account_only(client, admin, make_key):
    for account in ("acme", "other"):
        await create_account(client, admin, account)
        await grant(client, admin, account, "5")
        await use(client, admin, account, f"{account}-1")
    bound = {"X-API-Key": await make_key("ledger:read", "usage:write", account_id="acme")}

    assert [e["account_id"] for e in (await client.get("/usage", headers=bound)).json()["data"]] == ["acme"]
    own = await client.get("/usage", params={"account_id": "acme"}, headers=bound)
    assert [e["event_id"] for e in own.json()["data"]] == ["acme-1"]
    assert [a["id"] for a in (await client.get("/accounts", headers=bound)).json()["data"]] == ["acme"]
    for path in ("/accounts/acme", "/accounts/acme/balance", "/accounts/acme/ledger", "/accounts/acme/grants"):
        assert (await client.get(path, headers=bound)).status_code == 200, path
    assert len((await client.get("/accounts/acme/ledger", headers=bound)).json()["data"]) == 2

    # Another account looks like one that does not exist, on every read.
    for path, params in (
        ("/usage", {"account_id": "other"}),
        ("/accounts/other", {}),
        ("/accounts/other/balance", {}),
        ("/accounts/other/ledger", {}),
        ("/accounts/other/grants", {}),
    ):
        response = await client.get(path, params=params, headers=bound)
        error = assert_error(response, 404, "account_not_found")
        assert "other" in error["message"] and "other-1" not in response.text, path
        # ... exactly like an account that does not exist.
        ghost = await client.get(
            path.replace("other", "ghost"), params=params and {"account_id": "ghost"}, headers=bound
        )
        assert assert_error(ghost, 404, "account_not_found")["message"] == error["message"].replace("other", "ghost")
