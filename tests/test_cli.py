"""The `billing` console script against the test database."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main

BILLING = str(Path(sys.executable).parent / "billing")


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def billing(database: str, *args: str, check: bool = True) -> Result:
    """The command in-process (a fresh interpreter per call costs seconds); its own thread, because
    each command runs its own event loop."""
    runner = CliRunner()
    outcome = await asyncio.to_thread(runner.invoke, main, list(args), env={"DATABASE_URL": database})
    result = Result(outcome.exit_code, outcome.stdout, outcome.stderr)
    if check:
        assert result.returncode == 0, (result.stderr, outcome.exception)
    return result


def test_console_script_is_installed(database):
    """The real `billing` executable: the secret alone on the last line of stdout."""
    env = {**os.environ, "DATABASE_URL": database}
    result = subprocess.run([BILLING, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "accounts" in result.stdout and "keys" in result.stdout


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
        ["rate"],
    ],
)
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.stdout, result.stderr


async def test_accounts_and_keys(database, conn_engine, client):
    account = json.loads((await billing(database, "accounts", "create", "--name", "Acme", "--id", "acme")).stdout)
    assert account["id"] == "acme" and account["balance"] == "0.000000000"
    assert "acme" in (await billing(database, "accounts", "list")).stdout

    created = await billing(database, "keys", "create", "--name", "gw", "--scope", "ledger:read", "--account", "acme")
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("cmk_") and " " not in secret
    response = await client.get("/accounts/acme", headers={"X-API-Key": secret})
    assert response.status_code == 200

    listed = [json.loads(line) for line in (await billing(database, "keys", "list")).stdout.splitlines()]
    assert [key["account_id"] for key in listed] == ["acme"] and secret not in json.dumps(listed)

    await billing(database, "keys", "revoke", secret[4:16])
    assert (await client.get("/accounts/acme", headers={"X-API-Key": secret})).status_code == 401


async def test_errors_are_messages_not_tracebacks(database, conn_engine):
    result = await billing(
        database, "keys", "create", "--name", "x", "--scope", "admin", "--account", "ghost", check=False
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "admin" in result.stderr
    result = await billing(database, "keys", "revoke", "000000000000", check=False)
    assert result.returncode != 0 and "not found" in result.stderr and "Traceback" not in result.stderr
    result = await billing(database, "accounts", "create", "--name", "x", "--overdraft-limit", "-5", check=False)
    assert result.returncode != 0 and "overdraft_limit" in result.stderr


def test_invalid_setting_fails_naming_the_variable(database):
    env = {**os.environ, "DATABASE_URL": database, "BILLING_PORT": "eighty"}
    result = subprocess.run([BILLING, "keys", "list"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "BILLING_PORT" in result.stderr and "Traceback" not in result.stderr


async def test_catalog_import_is_idempotent(database):
    result = await billing(database, "catalog", "import")
    assert "0 models added or changed, 0 price versions added" in result.stdout
