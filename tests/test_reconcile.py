"""`billing reconcile`: every invariant of the books holds on a real ledger, and each kind of tampering is
named. Tampering happens inside a transaction that is rolled back, or, where the CLI has to see it, is
committed and undone; it only ever touches accounts made by the test, never the catalog."""

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from app.cli import main
from app.ledger.service import expire_due_grants
from app.reconcile import reconcile

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


async def billing_reconcile(database: str):
    """The real command, in-process (see tests/test_cli.py): its own thread, since it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, ["reconcile"], env={"DATABASE_URL": database})


async def check(engine) -> object:
    async with engine.connect() as conn:
        return await reconcile(conn)


async def populate(client, admin, clock) -> dict:
    """A ledger with every kind of entry: grants with and without expiry, usage singly and in a batch on
    several models, an overdraft, a grant paying debt, expirations swept and expired on a write."""
    costs = []

    async def post(path, body):
        response = await client.post(path, json=body, headers=admin)
        assert response.status_code in (200, 201), response.text
        return response.json()

    async def use(account, event_id, **fields):
        body = {"event_id": event_id, "account_id": account, "model": "gpt-4o", "input_tokens": 2006}
        body |= {"cached_input_tokens": 1920, "output_tokens": 300}
        costs.append(Decimal((await post("/usage", body | fields))["cost"]))

    await post("/accounts", {"id": "acme", "name": "Acme", "overdraft_limit": "10"})
    await post("/accounts", {"id": "beta", "name": "Beta"})
    now = clock.now()
    await post("/accounts/acme/grants", {"amount": "5", "expires_at": (now + timedelta(days=1)).isoformat()})
    await post("/accounts/acme/grants", {"amount": "3"})
    await use("acme", "a1")
    batch = [
        {"event_id": "a2", "account_id": "acme", "model": "anthropic/claude-sonnet-4-5", "input_tokens": 5000,
         "cached_input_tokens": 1000, "cache_write_tokens": 2000, "output_tokens": 700, "reasoning_tokens": 100},
        {"event_id": "a3", "account_id": "acme", "model": "openai/text-embedding-3-small", "input_tokens": 12345},
        {"event_id": "a4", "account_id": "acme", "model": "google/gemini-2.5-pro", "input_tokens": 1000},
    ]  # fmt: skip
    results = (await post("/usage/batch", {"events": batch}))["results"]
    costs += [Decimal(r["event"]["cost"]) for r in results]
    await use("beta", "b1")  # beta goes negative
    await post("/accounts/beta/grants", {"amount": "10"})  # and pays its debt first
    await post("/accounts/beta/grants", {"amount": "2", "expires_at": (now + timedelta(hours=1)).isoformat()})

    clock.advance(days=2)
    pool = client.app.state.pool
    await asyncio.to_thread(client.blocking_portal.call, expire_due_grants, pool, clock.now())
    # Expires what is left of acme's first grant, then takes acme past its overdraft (a long-context call).
    await use("acme", "a5", model="google/gemini-2.5-pro", input_tokens=200_001, cached_input_tokens=0)
    expired = Decimal(0)
    for account in ("acme", "beta"):
        ledger = (await client.get(f"/accounts/{account}/ledger", params={"kind": "expiration"}, headers=admin)).json()
        expired -= sum(Decimal(e["amount"]) for e in ledger["data"])
    return {"revenue": sum(costs), "grants": Decimal(20), "expired": expired, "events": len(costs)}


async def test_a_clean_ledger_reconciles(client, admin, clock, conn_engine, database):
    totals = await populate(client, admin, clock)
    # beta's 2, and what acme's 5 had left after 0.7861 + 3.402 + 0.034566 + 0.175 = 4.397666
    assert totals["expired"] == Decimal("2") + Decimal("0.602334")
    report = await check(conn_engine)
    assert report.ok, report.violations
    assert report.events_checked == totals["events"] == 6
    assert report.system_balances == {
        "system:grants": -totals["grants"],
        "system:revenue": totals["revenue"],
        "system:expired": totals["expired"],
    }
    result = await billing_reconcile(database)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "all invariants hold" in result.stdout and "6 usage events recomputed" in result.stdout
    assert f"system:revenue: {totals['revenue']}" in result.stdout


async def test_free_and_empty_usage_reconcile(client, admin, conn_engine, database):
    """A free model (explicit 0 price) and a call with no tokens are recorded at cost 0: still a clean ledger."""
    await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)
    await client.post("/accounts/acme/grants", json={"amount": "1"}, headers=admin)
    for body in (
        {"event_id": "local", "account_id": "acme", "model": "ollama/llama3", "input_tokens": 900, "output_tokens": 80},
        {"event_id": "empty", "account_id": "acme", "model": "gpt-4o", "input_tokens": 0},
    ):
        response = await client.post("/usage", json=body, headers=admin)
        assert response.status_code == 201 and response.json()["cost"] == "0.000000000", response.text
    report = await check(conn_engine)
    assert report.ok, report.violations
    assert report.events_checked == 2
    result = await billing_reconcile(database)
    assert result.exit_code == 0, (result.stdout, result.stderr)


# Each tampering: (statements, the invariant that must be named). `:entry` is acme's first usage entry and
# `:event` its event (a1).
TAMPERING = {
    "balance changed": (
        ["UPDATE accounts SET balance = balance + 0.000000001 WHERE id = 'acme'"],
        "balance equals the sum of the account's entries",
    ),
    "balance_after changed": (
        ["UPDATE ledger_entries SET balance_after = balance_after - 1 WHERE id = :entry"],
        "each entry's balance_after continues the previous one",
    ),
    "event cost changed": (
        ["UPDATE usage_events SET cost = cost + 0.000000001 WHERE id = :event"],
        "each usage event is charged by exactly one ledger entry of its cost",
    ),
    "event cost and its entry changed together": (
        [
            "UPDATE usage_events SET cost = cost + 1 WHERE id = :event",
            "UPDATE ledger_entries SET amount = amount - 1 WHERE id = :entry",
        ],
        "event a1 ",  # "event a1 (id ...): charged ..., recomputed ..."
    ),
    "upstream cost changed": (
        ["UPDATE usage_events SET upstream_cost_usd = upstream_cost_usd * 2 WHERE id = :event"],
        "event a1 ",
    ),
    "usage ledger entry duplicated": (
        [
            # The unique index forbids it: drop it inside the transaction that is rolled back.
            "DO $$ DECLARE name text; BEGIN FOR name IN SELECT indexname FROM pg_indexes "
            "WHERE tablename = 'ledger_entries' AND indexdef LIKE 'CREATE UNIQUE INDEX%usage_event_id%' "
            "LOOP EXECUTE 'DROP INDEX ' || quote_ident(name); END LOOP; END $$",
            "INSERT INTO ledger_entries (account_id, kind, amount, balance_after, counterparty, usage_event_id, "
            "grant_id, description, created_at) SELECT account_id, kind, amount, balance_after, counterparty, "
            "usage_event_id, grant_id, description, created_at FROM ledger_entries WHERE id = :entry",
        ],
        "each usage event is charged by exactly one ledger entry of its cost",
    ),
    "usage entry without its event": (
        ["UPDATE ledger_entries SET usage_event_id = NULL WHERE id = :entry"],
        "each usage entry belongs to a usage event",
    ),
    "grant amount changed": (
        ["UPDATE grants SET amount = amount + 1, remaining = remaining + 1 "
         "WHERE account_id = 'acme' AND expires_at IS NULL"],
        "each credit lot has one entry of its amount",
    ),
    "credits left changed": (
        ["UPDATE grants SET remaining = remaining - 0.5 WHERE account_id = 'beta' AND expires_at IS NULL"],
        "credit lots left add up to the positive balance",
    ),
    "expired grant reopened": (
        ["UPDATE grants SET expired_at = NULL WHERE account_id = 'beta' AND expires_at IS NOT NULL"],
        "each expiration empties one expired grant",
    ),
    "entry with one leg": (
        ["UPDATE ledger_entries SET amount = 0, balance_after = balance_after - amount WHERE kind = 'grant' "
         "AND grant_id = (SELECT id FROM grants WHERE account_id = 'beta' AND expires_at IS NULL)"],
        "each entry's legs sum to zero",
    ),
    # A daily rollup changed with its month, as the writers change them: its events do not follow.
    "daily rollup changed": (
        ["UPDATE usage_rollups SET input_tokens = input_tokens + 1 WHERE account_id = 'acme'",
         "UPDATE usage_rollups_monthly SET input_tokens = input_tokens + 1 WHERE account_id = 'acme'"],
        "daily usage rollups equal the sums of their events",
    ),
    "monthly rollup changed": (
        ["UPDATE usage_rollups_monthly SET cost = cost + 0.000000001 WHERE account_id = 'acme'"],
        "monthly usage rollups equal the sums of their days",
    ),
}  # fmt: skip


async def targets(conn) -> dict[str, int]:
    query = (
        "SELECT l.id AS entry, u.id AS event FROM ledger_entries l JOIN usage_events u ON u.id = l.usage_event_id "
        "WHERE u.account_id = 'acme' AND u.event_id = 'a1' AND l.kind = 'usage'"
    )
    return dict((await conn.execute(text(query))).one()._mapping)


async def test_each_kind_of_tampering_is_reported(client, admin, clock, conn_engine):
    await populate(client, admin, clock)
    for name, (statements, invariant) in TAMPERING.items():
        async with conn_engine.connect() as conn:
            transaction = await conn.begin()
            try:
                ids = await targets(conn)
                for statement in statements:
                    changed = await conn.execute(
                        text(statement), {k: v for k, v in ids.items() if f":{k}" in statement}
                    )
                    assert changed.rowcount != 0 or statement.startswith("DO"), (name, statement)
                report = await reconcile(conn)
            finally:
                await transaction.rollback()
        assert not report.ok, name
        assert any(v.startswith(invariant) for v in report.violations), (name, report.violations)
    report = await check(conn_engine)  # all undone
    assert report.ok, report.violations


# (tampering, its undoing, the invariant named), committed so that the command sees it.
COMMITTED = {
    "balance": (
        "UPDATE accounts SET balance = balance + 0.000000001 WHERE id = 'acme'",
        "UPDATE accounts SET balance = balance - 0.000000001 WHERE id = 'acme'",
        "balance equals the sum of the account's entries",
    ),
    "balance_after": (
        "UPDATE ledger_entries SET balance_after = balance_after - 1 WHERE id = :entry",
        "UPDATE ledger_entries SET balance_after = balance_after + 1 WHERE id = :entry",
        "each entry's balance_after continues the previous one",
    ),
    "cost": (
        "UPDATE usage_events SET cost = cost + 0.000000001 WHERE id = :event",
        "UPDATE usage_events SET cost = cost - 0.000000001 WHERE id = :event",
        "each usage event is charged by exactly one ledger entry of its cost",
    ),
}


async def test_the_command_fails_on_a_violation(client, admin, clock, conn_engine, database):
    await populate(client, admin, clock)
    async with conn_engine.connect() as conn:
        ids = await targets(conn)
    for name, (tamper, undo, invariant) in COMMITTED.items():
        params = {k: v for k, v in ids.items() if f":{k}" in tamper}
        async with conn_engine.begin() as conn:
            await conn.execute(text(tamper), params)
        try:
            result = await billing_reconcile(database)
        finally:
            async with conn_engine.begin() as conn:
                await conn.execute(text(undo), params)
        assert result.exit_code != 0, (name, result.stdout)
        assert f"VIOLATION {invariant}" in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr and "all invariants hold" not in result.stdout
    result = await billing_reconcile(database)
    assert result.exit_code == 0, (result.stdout, result.stderr)
