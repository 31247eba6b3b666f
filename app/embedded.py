"""Embedded PostgreSQL for development and tests, run from the binaries in the pgserver wheel.

Only pgserver's binaries are used, not its PostgresServer class, because with pgserver 0.1.4 that class:
- counts users of a server in PGDATA/.handle_pids.json and stops it only when the list is exactly
  [own pid]. A SIGKILLed run leaves its pid there, so from then on the server is never stopped.
- as root, runs `useradd pgserver`, chmods every parent of the data dir and of site-packages to o+rx,
  and runs initdb/postgres with uid pgserver but gid root.
- keeps a global lock in the user runtime dir and stops servers from an atexit hook.

Layout of data_dir: `pgdata/` (the cluster, persists across runs) and `embedded-postgres.lock`.
"""

import fcntl
import importlib.util
import os
import pathlib
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
from contextlib import suppress
from typing import TextIO

import psutil

# find_spec rather than `import pgserver`: importing it evaluates platformdirs.user_runtime_path, which
# warns (RuntimeDirWarning) wherever XDG_RUNTIME_DIR is unset, e.g. in containers and CI.
BIN_DIR = pathlib.Path(importlib.util.find_spec("pgserver").origin).parent / "pginstall" / "bin"
PORT = 5432
USER = "postgres"
DATABASE = "postgres"
# PostgreSQL refuses to run as root, so root runs it as this account, which exists on every Linux.
ROOT_RUNS_AS = "nobody"


class EmbeddedPostgres:
    def __init__(self, data_dir: pathlib.Path) -> None:
        # resolve(): the leftover-server check compares this path with a postmaster's command line.
        self.data_dir = pathlib.Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._lock_file: TextIO | None = None
        self._socket_dir: pathlib.Path | None = None
        self._url: str | None = None
        self._run_as: tuple[int, int] | None = None

    def start(self) -> str:
        if self._url is not None:
            return self._url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._lock():
            # Another live process owns the server (say `make run`, while an operator runs
            # `billing keys create`): use it without owning it, so stop() leaves it alone.
            lines = self._running_postmaster()
            if lines is None or len(lines) < 5:
                raise RuntimeError(
                    f"embedded PostgreSQL in {self.data_dir} is being started or stopped by another process; "
                    "try again, or set DATABASE_URL"
                )
            self._url = self._url_for(socket_dir=lines[4], port=lines[3])
            return self._url
        try:
            self._run_as = self._pick_run_as()
            if self._run_as is not None:
                self._grant_traverse()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            self._stop_leftover()
            self._url = self._start_server()
        except BaseException:
            # Also on Ctrl-C, or after pg_ctl gave up waiting with the postmaster half started.
            with suppress(Exception):
                self._stop_server()
            self._remove_socket_dir()
            self._unlock()
            raise
        return self._url

    def stop(self) -> None:
        if self._lock_file is None:
            self._url = None
            return
        try:
            self._stop_server()
        finally:
            self._remove_socket_dir()
            self._url = None
            self._unlock()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _lock(self) -> bool:
        # A flock dies with its process, so a crashed run never blocks the next one, while two live
        # processes (say `make run` and `make test` on the same dir) cannot stop each other's server.
        # Python opens files close-on-exec, so the postmaster does not inherit the lock.
        lock_file = open(self.data_dir / "embedded-postgres.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            return False
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._lock_file = lock_file
        return True

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _pick_run_as(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        if self.pgdata.exists():
            # Keep the existing owner, e.g. a cluster made by a normal user and later started with sudo.
            st = self.pgdata.stat()
            if st.st_uid == 0:
                raise RuntimeError(f"{self.pgdata} is owned by root; chown -R it to {ROOT_RUNS_AS}")
            return st.st_uid, st.st_gid
        entry = pwd.getpwnam(ROOT_RUNS_AS)
        return entry.pw_uid, entry.pw_gid

    def _grant_traverse(self) -> None:
        # The server's user must pass through every folder above the binaries and the data dir,
        # and a clone under /root (0700) blocks it. Search permission (o+x) lets it through without
        # letting anyone list those folders.
        for target in (BIN_DIR, self.data_dir):
            for folder in [target, *target.parents]:
                mode = folder.stat().st_mode
                if not mode & stat.S_IXOTH:
                    os.chmod(folder, mode | stat.S_IXOTH)
                    print(f"embedded PostgreSQL: granted o+x on {folder} so its server user can reach it")

    def _initdb(self) -> None:
        # initdb into a scratch dir and rename, so an interrupted initdb never leaves a
        # half-made cluster that has PG_VERSION and looks usable.
        scratch = self.data_dir / "pgdata.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if self._run_as is not None:
            os.chown(scratch, *self._run_as)
        # --locale=C: no dependency on which system locales are installed, and the same sort order
        # everywhere. C alone would mean SQL_ASCII, hence -E UTF8. Trust auth is safe because the only
        # way in is a socket in a 0700 directory.
        self._run(
            "initdb", "-D", str(scratch), "-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C",
            "--no-instructions",
            timeout=300,
        )  # fmt: skip
        scratch.rename(self.pgdata)

    def _running_postmaster(self) -> list[str] | None:
        # Returns the lines of postmaster.pid while a postmaster serves this pgdata. The pid alone is
        # not proof: after a container restart the pid in a stale postmaster.pid often belongs to some
        # other program, which pg_ctl would signal and because of which postgres refuses to start.
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            proc = psutil.Process(int(lines[0]))
            if proc.name() != "postgres":
                return None
            if str(self.pgdata) in proc.cmdline():
                return lines
        except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
            return None
        raise RuntimeError(
            f"{self.pgdata}/postmaster.pid names pid {lines[0]}, a postgres that serves another directory; "
            "if no server uses this data dir, delete that file"
        )

    def _stop_leftover(self) -> None:
        # We hold the lock, so a server still running here was left by a run that died without stop().
        # Restart it rather than adopt it: its socket dir may be gone and its options may be outdated.
        lines = self._running_postmaster()
        if lines is None:
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            return
        self._stop_server()
        with suppress(OSError, IndexError):
            os.rmdir(lines[4])

    def _start_server(self) -> str:
        # A Unix socket rather than TCP: no free-port race, no clash with a system PostgreSQL on
        # 127.0.0.1:5432 (its socket is in /var/run/postgresql), nothing reachable from the network,
        # and the 0700 dir limits access to our own uid and root. The dir lives in /tmp because a
        # socket path must fit in 107 bytes and the project dir may be deep. asyncpg, SQLAlchemy and
        # psql all accept the dir as `?host=`. The port goes in the query too: asyncpg reads
        # `@:5432/` as TCP host "" and ignores ?host=; omitting it would let PGPORT pick the socket name.
        self._socket_dir = pathlib.Path(tempfile.mkdtemp(prefix="pgemb-", dir="/tmp"))
        if self._run_as is not None:
            os.chown(self._socket_dir, *self._run_as)
        options = f"-h '' -p {PORT} -k {shlex.quote(str(self._socket_dir))}"
        # pg_ctl starts the postmaster in its own session, so a Ctrl-C in the terminal reaches only
        # us; stop() must be called to end it.
        log = self.pgdata / "postgres.log"
        try:
            self._run(
                "pg_ctl", "start", "-D", str(self.pgdata), "-w", "-t", "60", "-o", options, "-l", str(log),
                timeout=90,
            )  # fmt: skip
        except RuntimeError as exc:
            # pg_ctl itself only says "Examine the log output".
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{exc}\n--- {log}:\n{tail}") from None
        return self._url_for(socket_dir=str(self._socket_dir), port=str(PORT))

    @staticmethod
    def _url_for(*, socket_dir: str, port: str) -> str:
        return f"postgresql+asyncpg://{USER}@/{DATABASE}?host={socket_dir}&port={port}"

    def _stop_server(self) -> None:
        if self._running_postmaster() is None:
            return
        # pg_ctl -w returns once postmaster.pid is gone, which the postmaster removes only after all
        # its children have exited.
        try:
            self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", timeout=90)
        except (RuntimeError, subprocess.TimeoutExpired):
            if self._running_postmaster() is not None:
                self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", timeout=90)

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _run(self, program: str, *args: str, timeout: float) -> None:
        # PG* variables from the caller's shell (PGPORT, PGDATA, ...) would change what the server
        # does; LC_ALL=C avoids failures on hosts that lack the caller's locale.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        as_user = {}
        if self._run_as is not None:
            uid, gid = self._run_as
            as_user = {"user": uid, "group": gid, "extra_groups": []}
        result = subprocess.run(  # noqa: S603
            [str(BIN_DIR / program), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.data_dir,
            timeout=timeout,
            check=False,
            **as_user,
        )
        if result.returncode != 0:
            hint = ""
            if self._run_as is not None:
                hint = (
                    f"\n(running as uid {self._run_as[0]} because PostgreSQL refuses root: that user "
                    f"needs to reach {BIN_DIR} and {self.data_dir})"
                )
            raise RuntimeError(
                f"{program} {' '.join(args)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{hint}"
            )
