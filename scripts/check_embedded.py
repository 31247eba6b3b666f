"""Smoke test for app/embedded.py; exits non-zero on failure.

Run as root and as an ordinary user: python scripts/check_embedded.py
"""

import asyncio
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import asyncpg  # noqa: E402
import psutil  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from app.embedded import BIN_DIR, EmbeddedPostgres  # noqa: E402

started: list[EmbeddedPostgres] = []


def new(data_dir: pathlib.Path) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(data_dir)
    started.append(pg)
    return pg


def check(ok: object, message: str) -> None:
    if not ok:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def query(url: str, sql: str) -> list:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def sqlalchemy_select_1(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("select 1"))).scalar_one()
    finally:
        await engine.dispose()


def socket_dir_of(url: str) -> str:
    return url.split("host=", 1)[1].split("&", 1)[0]


def server_processes(pg: EmbeddedPostgres) -> list[psutil.Process]:
    pid = int((pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def alive(proc: psutil.Process) -> bool:
    # A stopped postmaster whose parent (pg_ctl) is gone waits as a zombie until init reaps it,
    # which never happens when pid 1 is not a real init, as in many containers.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def check_stopped(pg: EmbeddedPostgres, procs: list[psutil.Process], socket_dir: str) -> None:
    left = [(p.pid, p.status()) for p in procs if alive(p)]
    check(not left, f"postgres processes left after stop: {left}")
    check(not (pg.pgdata / "postmaster.pid").exists(), "postmaster.pid left after stop")
    check(not os.path.exists(socket_dir), f"socket dir {socket_dir} left after stop")


def main() -> None:
    print(f"running as uid {os.geteuid()}; binaries in {BIN_DIR}")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="check-embedded-"))
    # mkdtemp makes a 0700 dir; as root the server runs as nobody, which must reach the data dir.
    tmp.chmod(0o755)
    # Deeper than a socket path may be, to show the socket does not live in the data dir.
    data_dir = tmp / ("deep-" + "x" * 60) / ("deeper-" + "y" * 60) / "data"
    try:
        run(data_dir)
    finally:
        for pg in started:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("OK")


def run(data_dir: pathlib.Path) -> None:
    pg = new(data_dir)

    t0 = time.monotonic()
    url = pg.start()
    print(f"first start (initdb + start): {time.monotonic() - t0:.2f}s  url={url}")
    check(pg.start() == url, "second start() on a running instance returned another url")
    check(asyncio.run(query(url, "select 1")) == [(1,)], "asyncpg select 1")
    check(asyncio.run(sqlalchemy_select_1(url)) == 1, "SQLAlchemy select 1")
    psql = subprocess.run(  # noqa: S603
        [str(BIN_DIR / "psql"), plain_dsn(url), "-XAtc", "select current_user, current_database()"],
        capture_output=True,
        text=True,
        check=False,
    )
    check(psql.stdout.strip() == "postgres|postgres", f"psql: {psql.stdout}{psql.stderr}")
    asyncio.run(execute(url, "create table survives (v text); insert into survives values ('kept')"))
    users = {p.username() for p in server_processes(pg)}
    print(f"server runs as {users}")
    check("root" not in users, "server runs as root")

    joiner = new(data_dir)
    check(joiner.start() == url, "a second EmbeddedPostgres joins the running server")
    joiner.stop()
    check(asyncio.run(sqlalchemy_select_1(url)) == 1, "the joiner's stop() leaves the owner's server running")

    procs, socket_dir = server_processes(pg), socket_dir_of(url)
    t0 = time.monotonic()
    pg.stop()
    print(f"stop: {time.monotonic() - t0:.2f}s")
    check_stopped(pg, procs, socket_dir)
    pg.stop()

    t0 = time.monotonic()
    with new(data_dir) as url:
        print(f"restart: {time.monotonic() - t0:.2f}s")
        check(asyncio.run(query(url, "select v from survives")) == [("kept",)], "data lost across restart")
        procs = server_processes(pg)
    check_stopped(pg, procs, socket_dir_of(url))

    # A run killed without stop() leaves its server running; the next start must replace it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")])}
    crash = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-c",
            "import os, pathlib, signal, sys; from app.embedded import EmbeddedPostgres;"
            "EmbeddedPostgres(pathlib.Path(sys.argv[1])).start(); os.kill(os.getpid(), signal.SIGKILL)",
            str(data_dir),
        ],
        env=env,
        check=False,
    )
    check(crash.returncode == -signal.SIGKILL, f"crash helper exited with {crash.returncode}")
    orphans = server_processes(pg)
    t0 = time.monotonic()
    with new(data_dir) as url:
        print(f"start over a crashed run's server: {time.monotonic() - t0:.2f}s")
        check(not any(alive(p) for p in orphans), "the crashed run's server was not stopped")
        check(asyncio.run(query(url, "select v from survives")) == [("kept",)], "data lost after crash")
        procs = server_processes(pg)
    check_stopped(pg, procs, socket_dir_of(url))

    # A stale postmaster.pid whose pid now belongs to another program (common after a container restart).
    sleeper = subprocess.Popen(["sleep", "60"])  # noqa: S607
    try:
        (pg.pgdata / "postmaster.pid").write_text(f"{sleeper.pid}\n{pg.pgdata}\n0\n5432\n/tmp\n\n\nready\n")
        with new(data_dir) as url:
            check(asyncio.run(query(url, "select 1")) == [(1,)], "select 1 after stale postmaster.pid")
            check(sleeper.poll() is None, "the program named by a stale postmaster.pid was signalled")
            procs = server_processes(pg)
        check_stopped(pg, procs, socket_dir_of(url))
    finally:
        sleeper.kill()
        sleeper.wait()


if __name__ == "__main__":
    main()
