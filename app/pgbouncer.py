"""A private PgBouncer in transaction pooling mode in front of one database, for tests and benchmarks.

Runs the `pgbouncer` binary of the system (Debian: `apt-get install pgbouncer`) on a free port of
127.0.0.1, with its configuration, log and pid file in a temporary folder; docs/scale-out.md shows
the settings of a real deployment.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import make_url

# PgBouncer refuses to run as root; root runs it as this account, as app/embedded.py does PostgreSQL.
ROOT_RUNS_AS = "nobody"
START_SECONDS = 10


def binary() -> str | None:
    """The pgbouncer program; Debian installs it in /usr/sbin, which is not on every PATH."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


class PgBouncer:
    """`server_url`'s database behind PgBouncer: at most `server_connections` server connections (as
    `server_user`, else the URL's user) shared by up to `max_clients` clients, each server connection
    given to a client for one transaction."""

    def __init__(
        self, server_url: str, *, server_connections: int, server_user: str | None = None, max_clients: int = 1000
    ) -> None:
        self.server = make_url(server_url)
        self.server_connections = server_connections
        self.server_user = server_user or self.server.username or "postgres"
        self.max_clients = max_clients
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> str:
        """Start it and answer its URL: the same database and user, on PgBouncer's port."""
        program = binary()
        if program is None:
            raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        self.folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.port = free_port()
        self.write_config()
        as_user = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(ROOT_RUNS_AS)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.process = subprocess.Popen(  # noqa: S603
            [program, str(self.folder / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
            **as_user,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.server.set(host="127.0.0.1", port=self.port, query={}).render_as_string(hide_password=False)

    def write_config(self) -> None:
        assert self.folder is not None
        database = self.server.database or "postgres"
        # A socket folder (the embedded server) comes as ?host=; libpq syntax takes it as host= too.
        host = self.server.query.get("host") or self.server.host or "127.0.0.1"
        target = f"host={host} port={self.server.port or 5432} dbname={database} user={self.server_user}"
        if self.server.password:
            target += f" password={self.server.password}"
        users = {self.server.username or "postgres", self.server_user}
        # Clients are not authenticated: it listens on 127.0.0.1 only, for the length of a test or a benchmark.
        (self.folder / "users.txt").write_text("".join(f'"{user}" ""\n' for user in sorted(users)))
        (self.folder / "pgbouncer.ini").write_text(
            f"""[databases]
{database} = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.folder / "users.txt"}
pool_mode = transaction
default_pool_size = {self.server_connections}
max_db_connections = {self.server_connections}
max_client_conn = {self.max_clients}
logfile = {self.folder / "pgbouncer.log"}
pidfile = {self.folder / "pgbouncer.pid"}
"""
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen within {START_SECONDS} s:\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "pgbouncer.log" if self.folder else None
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
