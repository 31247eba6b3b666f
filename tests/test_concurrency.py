"""50 clients at once: one hot account and several others, duplicates sent concurrently and sequentially,
retried batches, conflicting retries and grants in between. Afterwards every balance is exact to the last
digit, every event is recorded once, and `billing reconcile` passes."""

import asyncio
import random
from collections import defaultdict
from decimal import Decimal

import httpx
from click.testing import CliRunner
from sqlalchemy import text

from app.cli import main
from app.reconcile import reconcile

CLIENTS = 50
EVENTS_PER_CLIENT = 20
HOT = "hot"
COLD = ["cold-0", "cold-1", "cold-2", "cold-3", "cold-4"]
START = {HOT: Decimal(60), "cold-0": Decimal(25), "cold-1": Decimal(10), "cold-2": Decimal(0)}
START |= {"cold-3": Decimal("0.5"), "cold-4": Decimal(100)}
OVERDRAFT = {HOT: Decimal(20), "cold-2": Decimal(5)}
HOT_GRANT, SHARED_GRANT = Decimal(50), Decimal(20)  # sent during the load, see `plan`


def random_event(rng: random.Random, account: str, event_id: str) -> dict:
    """A usage event on one of several models with different rules: cache reads and writes, reasoning,
    long-context tiers, embeddings, free local models."""
    kind = rng.choice(["gpt-4o", "mini", "claude", "gemini", "embedding", "ollama"])
    tokens = rng.randint(1, 6000)
    body = {"event_id": event_id, "account_id": account}
    if kind == "gpt-4o":
        body |= {"model": "gpt-4o", "input_tokens": tokens, "cached_input_tokens": rng.randint(0, tokens)}
        body["output_tokens"] = rng.randint(0, 2000)
    elif kind == "mini":
        output = rng.randint(1, 3000)
        body |= {"model": "openai/gpt-4o-mini", "input_tokens": tokens, "output_tokens": output}
        body["reasoning_tokens"] = rng.randint(0, output)
    elif kind == "claude":
        tokens = rng.choice([tokens, rng.randint(199_000, 260_000)])  # either side of the 200k tier
        cached = rng.randint(0, tokens // 2)
        body |= {"model": "anthropic/claude-sonnet-4-5", "input_tokens": tokens, "cached_input_tokens": cached}
        body |= {"cache_write_tokens": rng.randint(0, tokens - cached), "output_tokens": rng.randint(0, 900)}
    elif kind == "gemini":
        tokens = rng.choice([tokens, rng.randint(199_990, 200_010)])
        body |= {"model": "google/gemini-2.5-pro", "input_tokens": tokens, "output_tokens": rng.randint(0, 500)}
    elif kind == "embedding":
        body |= {"model": "openai/text-embedding-3-small", "input_tokens": tokens}
    else:
        body |= {"model": "ollama/llama3", "input_tokens": tokens, "output_tokens": rng.randint(0, 500)}
    if rng.random() < 0.3:
        body["metadata"] = {"client": event_id.split("-")[0], "trace": str(rng.randint(0, 10**9))}
    return body


def plan() -> list[list[tuple]]:
    """What each client sends, in order; the same every run."""
    rng = random.Random(20261121)
    actions: list[list[tuple]] = [[] for _ in range(CLIENTS)]
    sent: list[list[dict]] = [[] for _ in range(CLIENTS)]
    half = CLIENTS // 2
    for c in range(CLIENTS):
        for i in range(EVENTS_PER_CLIENT):
            if c >= half and i < 4:
                body = sent[c - half][i]  # the same event, sent by two clients at the same moment
            else:
                account = HOT if rng.random() < 0.7 else rng.choice(COLD)
                body = random_event(rng, account, f"c{c}-e{i}")
            actions[c].append(("single", body))
            sent[c].append(body)
            if i % 6 == 5:
                actions[c].append(("single", body))  # a retry, after the answer came
            if c % 10 == 0 and i == 12:
                # A retry that changed its payload: refused, never charged.
                actions[c].append(("conflict", sent[c][3] | {"input_tokens": sent[c][3]["input_tokens"] + 1}))
            if c in (5, 15, 35) and i == 10:
                actions[c].append(("grant", HOT, HOT_GRANT, None))
            if 30 <= c < 36 and i == 2:
                actions[c].append(("grant", "cold-2", SHARED_GRANT, "load-grant"))  # one grant, six requests
        # One event id on two accounts: two events.
        actions[c].append(("single", random_event(rng, HOT, f"x{c}")))
        actions[c].append(("single", random_event(rng, COLD[c % len(COLD)], f"x{c}")))
        # A batch: new events, earlier ones again, one new event twice; then the whole batch again.
        new = [random_event(rng, rng.choice([HOT, *COLD]), f"c{c}-b{j}") for j in range(3)]
        batch = [new[0], sent[c][1], new[1], sent[c][7], new[2], new[1]]
        actions[c] += [("batch", batch), ("batch", batch)]
    return actions


async def run(http: httpx.AsyncClient, headers: dict, admin: dict, actions: list[tuple]) -> list[tuple]:
    """One client: each action after the answer to the one before. Returns (action, body sent, status, answer)."""
    out = []
    for action in actions:
        if action[0] in ("single", "conflict"):
            response = await http.post("/usage", json=action[1], headers=headers)
            out.append((action[0], action[1], response.status_code, response.json(), response.headers))
        elif action[0] == "batch":
            response = await http.post("/usage/batch", json={"events": action[1]}, headers=headers)
            assert response.status_code == 200, response.text
            for body, result in zip(action[1], response.json()["results"], strict=True):
                out.append(("batch", body, result["status"], result, None))
        else:
            _, account, amount, key = action
            extra = {"Idempotency-Key": key} if key else {}
            response = await http.post(
                f"/accounts/{account}/grants", json={"amount": str(amount)}, headers=admin | extra
            )
            out.append(("grant", account, response.status_code, response.json(), None))
    return out


def money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.000000001")), "f")


async def test_fifty_concurrent_clients(client, admin, make_key, conn_engine, database):
    for account in [HOT, *COLD]:
        body = {"id": account, "name": account, "overdraft_limit": str(OVERDRAFT.get(account, 0))}
        assert (await client.post("/accounts", json=body, headers=admin)).status_code == 201
        if START[account]:
            grant = await client.post(
                f"/accounts/{account}/grants", json={"amount": str(START[account])}, headers=admin
            )
            assert grant.status_code == 201
    gateway = {"X-API-Key": await make_key("usage:write", "ledger:read")}
    actions = plan()

    async def load() -> list[list[tuple]]:
        # The test client serves one request at a time, on the app's own event loop (a portal thread).
        # To have 50 clients in flight at once, they run on that loop, through the app's ASGI interface.
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http:
            return await asyncio.gather(*(run(http, gateway, admin, a) for a in actions))

    outcomes = [row for rows in await asyncio.to_thread(client.blocking_portal.call, load) for row in rows]

    # Every answer about one (account, event_id) tells of one event, created exactly once.
    answers: dict[tuple[str, str], list[tuple[bool, dict]]] = defaultdict(list)
    grants = defaultdict(Decimal)
    grant_ids = defaultdict(set)
    for kind, sent, status, answer, headers in outcomes:
        if kind == "grant":
            assert status in (200, 201), answer
            if status == 201:
                grants[sent] += Decimal(answer["amount"])
            grant_ids[sent].add(answer["id"])
            continue
        key = (sent["account_id"], sent["event_id"])
        if kind == "conflict":
            assert status == 422 and answer["error"]["code"] == "idempotency_key_reused", answer
            assert "input_tokens" in answer["error"]["message"]
            continue
        if kind == "single":
            assert status in (200, 201), answer
            assert (headers.get("Idempotent-Replayed") == "true") == (status == 200)
            answers[key].append((status == 201, answer))
        else:
            assert status in ("created", "duplicate"), answer
            answers[key].append((status == "created", answer["event"]))
    assert grants == {HOT: 3 * HOT_GRANT, "cold-2": SHARED_GRANT} and len(grant_ids["cold-2"]) == 1

    costs = defaultdict(Decimal)
    for key, seen in answers.items():
        assert sum(created for created, _ in seen) == 1, (key, seen)
        (original,) = [event for created, event in seen if created]
        assert original.get("replay", False) is False
        for created, event in seen:
            assert event == original | ({} if created else {"replay": True}), key
        assert (original["account_id"], original["event_id"]) == key
        limit = OVERDRAFT.get(key[0], Decimal(0))
        assert original["overdrawn"] == (Decimal(original["balance_after"]) < -limit), original
        costs[key[0]] += Decimal(original["cost"])
    expected_events = CLIENTS * EVENTS_PER_CLIENT - (CLIENTS // 2) * 4 + 2 * CLIENTS + 3 * CLIENTS
    assert len(answers) == expected_events

    # Balances, exact to the last digit.
    for account in [HOT, *COLD]:
        expected = START[account] + grants[account] - costs[account]
        response = await client.get(f"/accounts/{account}/balance", headers=admin)
        assert response.json()["balance"] == money(expected), account
    assert costs[HOT] > START[HOT] + grants[HOT]  # the hot account went into its overdraft and beyond

    # Each distinct event recorded once, and nothing else.
    async with conn_engine.connect() as conn:
        stored = (
            await conn.execute(text("SELECT count(*), count(DISTINCT (account_id, event_id)) FROM usage_events"))
        ).one()
        by_account = dict((await conn.execute(text("SELECT account_id, count(*) FROM usage_events GROUP BY 1"))).all())
        report = await reconcile(conn)
    assert tuple(stored) == (len(answers), len(answers))
    assert by_account == {a: sum(1 for k in answers if k[0] == a) for a in [HOT, *COLD]}

    # Events really were written in groups.
    assert max(client.app.state.coalescer.batch_sizes) > 1

    assert report.ok, report.violations
    assert report.events_checked == len(answers)
    assert report.system_balances["system:revenue"] == sum(costs.values())
    assert report.system_balances["system:grants"] == -(sum(START.values()) + sum(grants.values()))

    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, main, ["reconcile"], env={"DATABASE_URL": database})
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "all invariants hold" in result.stdout
    assert f"{len(answers)} usage events recomputed" in result.stdout
