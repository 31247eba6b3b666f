"""`billing serve` as deployed: a real server process with several workers, then Ctrl-C."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

BILLING = str(Path(sys.executable).parent / "billing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [BILLING, "serve", "--port", str(self.port), *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: list[str] = []

    def wait_until_serving(self) -> str | None:
        """Reads stdout up to the serving line; returns the bootstrap admin key if one was printed."""
        key = None
        for line in self.process.stdout:
            self.output.append(line)
            if line.strip().startswith("cmk_"):
                key = line.strip()
            if line.startswith("Serving on"):
                break
        else:
            raise AssertionError(f"server exited: {''.join(self.output)}{self.process.stderr.read()}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return key
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server never became ready")

    def terminate(self) -> int:
        """SIGTERM, as `kill`, systemd, Docker and a supervisor send it, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.process.kill()

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it, and the exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.kill()


async def test_workers_share_revocation_and_stop_on_ctrl_c(database, conn_engine):
    server = Server({"DATABASE_URL": database}, "--workers", "2")
    try:
        admin = server.wait_until_serving()
        assert admin, "the first start must print a bootstrap admin key"
        headers = {"X-API-Key": admin}
        with httpx.Client(base_url=server.base, headers=headers, timeout=10) as client:
            assert client.get("/accounts").status_code == 200
            created = [client.post("/api-keys", json={"name": "svc", "scopes": ["ledger:read"]}).json() for _ in "ab"]

        def statuses(key: str) -> set[int]:
            # A new connection each time, so requests land on either worker (a kept-alive one stays on one).
            close = {"X-API-Key": key, "Connection": "close"}
            return {httpx.get(f"{server.base}/accounts", headers=close, timeout=10).status_code for _ in range(40)}

        # Both workers have seen (and cached) both keys.
        assert [statuses(key["key"]) for key in created] == [{200}, {200}]
        # Revoked through the API (by either worker), and through the CLI, a process of its own.
        revoked = httpx.delete(f"{server.base}/api-keys/{created[0]['id']}", headers=headers, timeout=10)
        assert revoked.status_code == 200
        env = {**os.environ, "DATABASE_URL": database}
        subprocess.run([BILLING, "keys", "revoke", created[1]["id"]], env=env, check=True, capture_output=True)
        # None of the following requests, whichever worker answers, may still accept either key.
        assert [statuses(key["key"]) for key in created] == [{401}, {401}]
        workers = psutil.Process(server.process.pid).children(recursive=True)
        assert len(workers) >= 2
    finally:
        code = server.interrupt()
    assert code == 0, server.process.stderr.read()
    # Workers may take a moment after the parent to finish exiting on a busy machine.
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not [worker for worker in alive if worker.status() != psutil.STATUS_ZOMBIE]


async def test_second_start_prints_no_new_key(database, conn_engine, make_key):
    await make_key("admin")
    server = Server({"DATABASE_URL": database})
    try:
        assert server.wait_until_serving() is None
    finally:
        server.interrupt()


async def test_refuses_an_unmigrated_database(empty_database):
    url = await empty_database()
    result = subprocess.run(
        [BILLING, "serve", "--port", str(free_port())],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "not migrated" in result.stderr and "make migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_database_when_database_url_is_unset(tmp_path):
    """What `make run` does on a fresh machine, twice: the second start keeps the data."""
    env = {"DATABASE_URL": "", "BILLING_DATA_DIR": str(tmp_path)}
    first = Server(env, "--migrate")
    try:
        admin = first.wait_until_serving()
        assert admin
        response = httpx.post(
            f"{first.base}/accounts", json={"id": "kept", "name": "Kept"}, headers={"X-API-Key": admin}
        )
        assert response.status_code == 201
    finally:
        assert first.interrupt() == 0
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]

    second = Server(env, "--migrate")
    try:
        assert second.wait_until_serving() is None
        response = httpx.get(f"{second.base}/accounts/kept", headers={"X-API-Key": admin})
        assert response.status_code == 200
    finally:
        assert second.interrupt() == 0


def postmaster_of(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0]))


def gone(process: psutil.Process) -> bool:
    # A postmaster whose parent (pg_ctl) has exited is reaped by init, or, in a container whose pid 1
    # reaps nothing, stays a zombie: stopped either way.
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_stops_the_embedded_database(tmp_path):
    """SIGTERM (what `kill`, systemd and Docker send; `make` passes it on) ends `billing serve` as Ctrl-C
    does: the embedded PostgreSQL it started is stopped too."""
    env = {"DATABASE_URL": "", "BILLING_DATA_DIR": str(tmp_path)}
    server = Server(env, "--migrate")
    try:
        server.wait_until_serving()
        postmaster = postmaster_of(tmp_path)
        assert postmaster.name() == "postgres" and not gone(postmaster)
    finally:
        code = server.terminate()
    stderr = server.process.stderr.read()
    # After a graceful shutdown and its cleanup, it dies of the signal, as a supervisor expects.
    assert code == -signal.SIGTERM, stderr
    assert "Finished server process" in stderr and "Traceback" not in stderr
    assert gone(postmaster)
    assert not (tmp_path / "postgres" / "pgdata" / "postmaster.pid").exists()


def test_sigterm_while_starting_stops_the_embedded_database(tmp_path):
    """Before uvicorn handles signals (migrations, the catalog import), SIGTERM stops the database too."""
    server = Server({"DATABASE_URL": "", "BILLING_DATA_DIR": str(tmp_path)}, "--migrate", "--load-catalog")
    pid_file = tmp_path / "postgres" / "pgdata" / "postmaster.pid"
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and "ready" in pid_file.read_text()):
            assert time.monotonic() < deadline and server.process.poll() is None
            time.sleep(0.05)
        postmaster = postmaster_of(tmp_path)
    finally:
        code = server.terminate()
    assert code == -signal.SIGTERM and "Serving on" not in server.process.stdout.read()
    assert gone(postmaster) and not pid_file.exists()
