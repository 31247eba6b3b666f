"""`billing usage`, `billing ledger ACCOUNT` and `billing report`: what the API answers, as readable tables,
JSON or CSV, with one-line errors for what they cannot read."""

import csv
import io
import json
from decimal import Decimal

import pytest

from tests.test_cli import billing

pytestmark = pytest.mark.shared_app
CALLS = [
    ("e1", "openai/gpt-4o", 1000, "alice"),
    ("e2", "openai/gpt-4o", 3000, None),
    ("e3", "anthropic/claude-haiku-4-5", 2000, "bob"),
]


@pytest.fixture
async def recorded(client, admin) -> list[dict]:
    # A name that a spreadsheet would run as a formula, to check the CSV neutralises it.
    body = {"id": "acme", "name": "=HYPERLINK(1)"}
    assert (await client.post("/accounts", json=body, headers=admin)).status_code == 201
    assert (await client.post("/accounts/acme/grants", json={"amount": "100"}, headers=admin)).status_code == 201
    events = []
    for event_id, model, tokens, end_user in CALLS:
        body = {"event_id": event_id, "account_id": "acme", "model": model, "input_tokens": tokens}
        if end_user:
            body["end_user"] = end_user
        if event_id == "e1":
            body["tags"] = ["=cmd|calc"]
        response = await client.post("/usage", json=body, headers=admin)
        assert response.status_code == 201, response.text
        events.append(response.json())
    return events


async def test_usage_as_a_table_json_and_csv(database, recorded):
    table = (await billing(database, "usage", "--account", "acme")).stdout.splitlines()
    assert table[0].split() == ["occurred_at", "account_id", "event_id", "model", "status", "input_tokens",
                                "output_tokens", "cost", "end_user", "tags"]  # fmt: skip
    assert [line.split()[2] for line in table[1:]] == ["e1", "e2", "e3"]
    assert all(len(line) <= len(table[0]) + 40 for line in table)  # aligned, not JSON
    listed = json.loads((await billing(database, "usage", "--json", "--model", "openai/gpt-4o")).stdout)
    assert [(e["event_id"], e["cost"]) for e in listed] == [(e["event_id"], e["cost"]) for e in recorded[:2]]
    rows = list(csv.DictReader(io.StringIO((await billing(database, "usage", "--csv", "--limit", "1")).stdout)))
    assert [row["event_id"] for row in rows] == ["e1"] and rows[0]["tags"] == "'=cmd|calc"


async def test_ledger_of_an_account(database, recorded):
    entries = json.loads((await billing(database, "ledger", "acme", "--json")).stdout)
    assert [e["kind"] for e in entries] == ["grant", "usage", "usage", "usage"]
    assert Decimal(entries[-1]["balance_after"]) == 100 - sum(Decimal(e["cost"]) for e in recorded)
    table = (await billing(database, "ledger", "acme", "--kind", "usage")).stdout.splitlines()
    assert len(table) == 4 and table[0].split()[:3] == ["id", "account_id", "kind"]
    rows = list(
        csv.DictReader(io.StringIO((await billing(database, "ledger", "acme", "--csv", "--limit", "2")).stdout))
    )
    assert [row["kind"] for row in rows] == ["grant", "usage"]


async def test_report_grouped_filtered_and_totalled(database, recorded):
    table = (await billing(database, "report", "--group-by", "provider,model")).stdout.splitlines()
    assert table[0].split()[:3] == ["provider", "model", "events"]
    assert [line.split()[:3] for line in table[1:]] == [
        ["anthropic", "anthropic/claude-haiku-4-5", "1"], ["openai", "openai/gpt-4o", "2"], ["total", "3", "6000"],
    ]  # fmt: skip
    report = json.loads((await billing(database, "report", "--group-by", "end_user", "--json")).stdout)
    assert [(r["end_user"], r["events"]) for r in report["rows"]] == [("alice", 1), ("bob", 1)]
    assert Decimal(report["totals"]["credits"]) == sum(Decimal(e["cost"]) for e in recorded)
    rows = list(csv.DictReader(io.StringIO((await billing(database, "report", "--csv", "--group-by", "account",
                                                          "--from", "2000-01-01")).stdout)))  # fmt: skip
    assert [(row["account"], row["events"]) for row in rows] == [("acme", "3")]
    only = (await billing(database, "report", "--end-user", "bob")).stdout.splitlines()
    assert only[0].split()[0] == "events" and only[1].split()[0] == "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ledger", "nobody"], "Account 'nobody' not found"),
        (["usage", "--from", "yesterday"], "--from must be a date or an RFC 3339 time"),
        (["report", "--group-by", "colour"], "Unknown --group-by value 'colour'"),
        (["report", "--group-by", "tag", "--end-user", "bob"], "cannot also group or filter by `end_user`"),
        (["usage", "--json", "--csv"], "--json and --csv: pick one"),
    ],
)
async def test_what_cannot_be_read_is_one_line_and_exit_1_or_2(database, recorded, args, message):
    result = await billing(database, *args, check=False)
    assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
