"""The `billing` console script, run as a real process against the test database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BILLING = str(Path(sys.executable).parent / "billing")


def billing(database: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database}
    result = subprocess.run([BILLING, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["migrate"],
        ["accounts"],
        ["accounts", "create"],
        ["accounts", "list"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
    ],
)
def test_every_command_has_help(command):
    result = subprocess.run([BILLING, *command, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr


async def test_accounts_and_keys(database, conn_engine, client):
    account = json.loads(billing(database, "accounts", "create", "--name", "Acme", "--id", "acme").stdout)
    assert account["id"] == "acme" and account["balance"] == "0.000000000"
    assert "acme" in billing(database, "accounts", "list").stdout

    created = billing(database, "keys", "create", "--name", "gw", "--scope", "ledger:read", "--account", "acme")
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("cmk_") and " " not in secret
    response = await client.get("/accounts/acme", headers={"X-API-Key": secret})
    assert response.status_code == 200

    listed = [json.loads(line) for line in billing(database, "keys", "list").stdout.splitlines()]
    assert [key["account_id"] for key in listed] == ["acme"] and secret not in json.dumps(listed)

    billing(database, "keys", "revoke", secret[4:16])
    assert (await client.get("/accounts/acme", headers={"X-API-Key": secret})).status_code == 401


async def test_errors_are_messages_not_tracebacks(database, conn_engine):
    result = billing(database, "keys", "create", "--name", "x", "--scope", "admin", "--account", "ghost", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "admin" in result.stderr
    result = billing(database, "keys", "revoke", "000000000000", check=False)
    assert result.returncode != 0 and "not found" in result.stderr and "Traceback" not in result.stderr
    result = billing(database, "accounts", "create", "--name", "x", "--overdraft-limit", "-5", check=False)
    assert result.returncode != 0 and "overdraft_limit" in result.stderr


def test_invalid_setting_fails_naming_the_variable(database):
    env = {**os.environ, "DATABASE_URL": database, "BILLING_PORT": "eighty"}
    result = subprocess.run([BILLING, "keys", "list"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "BILLING_PORT" in result.stderr and "Traceback" not in result.stderr
