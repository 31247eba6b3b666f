"""The `billing` console script against the test database."""

import asyncio
import importlib.metadata
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import make_url, text

from app.cli import main
from app.config import PROJECT_DIR
from app.keys.format import key_id_of

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


async def test_revoke_takes_the_id_the_prefix_or_the_whole_key(database, conn_engine, client, make_key):
    """`keys list` shows `id` and `prefix` (cmk_<id>); an operator may also paste the key itself."""
    for form in (lambda key: key[4:16], lambda key: key[:16], lambda key: key):
        secret = await make_key("admin")
        assert (await client.get("/accounts", headers={"X-API-Key": secret})).status_code == 200
        revoked = await billing(database, "keys", "revoke", form(secret))
        assert revoked.stdout.startswith(f"revoked {secret[4:16]} ")
        assert (await client.get("/accounts", headers={"X-API-Key": secret})).status_code == 401
    result = await billing(database, "keys", "revoke", "cmk_nothex!!!!!!", check=False)
    assert result.returncode == 2 and "12 hexadecimal characters" in result.stderr


@pytest.mark.parametrize(
    ("text", "key_id"),
    [
        ("0123456789ab", "0123456789ab"),
        ("cmk_0123456789ab", "0123456789ab"),
        ("cmk_0123456789abSECRETsecret-_secretSECRETsecret-_secretSECRETs", "0123456789ab"),
        (" cmk_0123456789ab\n", "0123456789ab"),
        ("0123456789a", None),
        ("0123456789abc", None),
        ("cmk_0123", None),
        ("0123456789AB", None),
        ("", None),
    ],
)
def test_key_id_of(text, key_id):
    assert key_id_of(text) == key_id


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


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line_error(result: Result) -> str:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["keys", "list"], ["migrate"], ["accounts", "create", "--name", "x"]])
async def test_database_problems_are_one_line_naming_the_fix(database, command):
    """A refused connection, a database that does not exist, a user the server does not know: one line
    that says what is wrong and what to do, not a traceback."""
    refused = f"postgresql://postgres@127.0.0.1:{closed_port()}/billing"
    line = one_line_error(await billing(refused, *command, check=False))
    assert "Cannot connect to PostgreSQL on 127.0.0.1:" in line and "connection refused" in line
    assert "start the server" in line and "DATABASE_URL" in line

    missing = make_url(database).set(database="billing_no_such_database").render_as_string(hide_password=False)
    line = one_line_error(await billing(missing, *command, check=False))
    assert '"billing_no_such_database" does not exist' in line and "createdb billing_no_such_database" in line

    stranger = make_url(database).set(username="billing_no_such_role").render_as_string(hide_password=False)
    line = one_line_error(await billing(stranger, *command, check=False))
    assert "refused the login" in line and "billing_no_such_role" in line


def test_database_problem_from_the_console_script():
    """The real executable, with the exit code a script sees."""
    env = {**os.environ, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/billing"}
    result = subprocess.run([BILLING, "keys", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: Cannot connect to PostgreSQL") and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"providers": [', "is not valid JSON (Expecting value: line 1 column 16"),
        (b"\xff\xfe", "is not UTF-8 text"),
        ("[1, 2]", "is not a catalog: expected an object with `providers` and `models` lists"),
        (
            '{"providers": [{"id": "malformed", "name": "M"}], "models": [{"provider": "malformed"}]}',
            "lacks the field 'id'",
        ),
        (
            '{"providers": [{"id": "malformed", "name": "M"}], "models": [{"id": "malformed/m",'
            ' "provider": "malformed", "name": "m", "type": "language", "context_window": "big"}]}',
            "the database refused a value of an entry (invalid input for query argument",
        ),
    ],
)
async def test_malformed_catalog_file_is_one_line(database, engine, tmp_path, content, says):
    path = tmp_path / "catalog.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = one_line_error(await billing(database, "catalog", "import", "--file", str(path), check=False))
    assert str(path) in line and says in line
    async with engine.connect() as conn:
        written = await conn.execute(text("SELECT count(*) FROM providers WHERE id = 'malformed'"))
        assert written.scalar() == 0


def test_invalid_setting_fails_naming_the_variable(database):
    env = {**os.environ, "DATABASE_URL": database, "BILLING_PORT": "eighty"}
    result = subprocess.run([BILLING, "keys", "list"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "BILLING_PORT" in result.stderr and "Traceback" not in result.stderr


async def test_catalog_import_is_idempotent(database):
    result = await billing(database, "catalog", "import")
    assert "0 models added or changed, 0 price versions added" in result.stdout


# What `billing --help` must not load: the app's heavy dependencies (seconds of CPU between them).
HEAVY = ("litestar", "sqlalchemy", "asyncpg", "alembic", "uvicorn", "app.db", "app.asgi")


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["keys", "--help"], ["catalog", "import", "--help"], ["serve", "--help"]]
)
def test_help_and_version_load_none_of_the_app(args):
    """The console script under `python -X importtime`, which names every module it imports."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", BILLING, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "click" in imported
    assert not [name for name in imported if name.split(".")[0] in HEAVY or name in HEAVY]


def test_version_is_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"billing, version {importlib.metadata.version('creditmeter')}\n"


def test_shell_completion_as_the_readme_enables_it():
    """`eval "$(_BILLING_COMPLETE=bash_source billing)"` (README): the script, then its answers."""
    env = {**os.environ, "_BILLING_COMPLETE": "bash_source"}
    script = subprocess.run([BILLING], env=env, capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_billing_completion" in script.stdout
    env |= {"_BILLING_COMPLETE": "bash_complete", "COMP_WORDS": "billing keys re", "COMP_CWORD": "2"}
    answer = subprocess.run([BILLING], env=env, capture_output=True, text=True, timeout=60)
    assert answer.stdout.split() == ["plain,revoke"]


def readme_commands() -> list[list[str]]:
    """Every `billing ...` command line in the README's code blocks, as words."""
    readme = (PROJECT_DIR / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    found = []
    for line in "\n".join(blocks).splitlines():
        match = re.search(r"(?:^|\$\(|; |&& )(?:\.venv/bin/)?billing( [^)#]*)?", line)
        if match:
            found.append(shlex.split((match.group(1) or "").split(" | ")[0]))
    return found


@pytest.mark.parametrize("words", readme_commands(), ids=" ".join)
def test_readme_billing_lines_name_real_commands_and_options(words):
    """Each subcommand a README line names exists, and so does each option it uses."""
    path = [word for word in words[:3] if re.fullmatch(r"[a-z][a-z-]*", word)]
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, (path, result.stdout)
    for option in [word.strip("[]").split("=")[0] for word in words if word.strip("[").startswith("--")]:
        assert option in result.stdout, (words, option)


def test_readme_has_billing_lines():
    assert len(readme_commands()) >= 10
