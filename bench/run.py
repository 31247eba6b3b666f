"""`make bench`: the service as deployed, measured against the database's own limit.

Starts `billing serve --workers N` on a fresh database (`billing_bench`, on DATABASE_URL's server,
else on an embedded PostgreSQL in .data/bench-postgres), drives it with wrk over loopback, drives
the same write path without HTTP (bench/raw.py) at the same concurrency, and prints one table. Every
figure is the median of BENCH_REPS runs (BENCH_SECONDS each for usage events, at most 3 s for the
read-only endpoints). Results go to .bench/results.md and .bench/results.json. See BENCHMARKS.md.

Environment: DATABASE_URL, BILLING_WORKERS (2), BENCH_SECONDS (4), BENCH_REPS (3),
BENCH_SECTIONS (single,batch,catalog,estimate,reports,pgbouncer), BENCH_REPORT_EVENTS (1000000,10000000),
BENCH_DATABASE (billing_bench; dropped and created again on every run).
`python -m bench.run --profile` records py-spy profiles of the workers under load instead
(BENCH_PROFILE: single,batch,models,estimate; see bench/profile.py).
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from sqlalchemy import make_url

from app.config import database_url
from app.pgbouncer import PgBouncer
from app.pgbouncer import binary as pgbouncer_binary
from bench import reports_data

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "lua"
OUT = ROOT / ".bench"
BIN = Path(sys.executable).parent
DATABASE = os.environ.get("BENCH_DATABASE") or "billing_bench"
ACCOUNTS = 1000
SINGLE_CLIENTS = (1, 8, 32, 64)
# Eight, not four: uvicorn's workers share one listening socket, so four long-lived connections may
# land three to one on the two workers (one idle core); eight spread evenly enough.
BATCH_CLIENTS = 8
BATCH_SIZE = 1000
SEED_BATCHES = 30
HTTP_CLIENTS = 32
REPORT_GROUPS = (
    "model", "account,day", "provider,month", "model,day", "day", "model,day&limit=1000",
    # Attribution: by key over everything, by tag, and one account's end users (ids of its own).
    "api_key", "tag", "tag,day&tag=beta", "end_user&account_id=rpt-0002", "day&account_id=rpt-0002&end_user=user-07",
)  # fmt: skip
REPORT_CLIENTS = 1
# The pgbouncer section: workers of `billing serve` with POOLED_POOL_SIZE connections each (BILLING_DB_POOL_SIZE)
# on a PgBouncer with POOLED_SERVER_CONNECTIONS server connections, against as many workers on direct
# connections. Small, so that both fit beside the main server under max_connections.
POOLED_WORKERS = 4
POOLED_POOL_SIZE = 4
POOLED_SERVER_CONNECTIONS = 8
POOLED_SINGLE_CLIENTS = 32
# Runs of the read-only endpoints (catalog, estimates, reports) last this long at most.
SHORT = min(3.0, float(os.environ.get("BENCH_SECONDS") or 3))
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


# ---------------------------------------------------------------------------------------------------
# Database and server


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """DATABASE_URL's server, or the embedded one kept in .data/bench-postgres."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from app.embedded import EmbeddedPostgres

    with EmbeddedPostgres(ROOT / ".data" / "bench-postgres") as url:
        yield url


def dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def recreate_database(server: str) -> None:
    conn = await asyncpg.connect(dsn(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def billing(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run([str(BIN / "billing"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"billing {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`billing serve` in a process of its own; stopped with SIGINT, like Ctrl-C."""

    def __init__(self, url: str, workers: int, env: dict[str, str] | None = None, log_name: str = "server") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATABASE_URL": url, "BILLING_LOG_LEVEL": "WARNING", **(env or {})}
        self.log_file = open(OUT / f"{log_name}.log", "w")  # noqa: SIM115
        self.process = psutil.Popen(
            [str(BIN / "billing"), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"billing serve exited with {self.process.returncode}; see .bench/server.log")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise SystemExit("billing serve did not become ready; see .bench/server.log")

    def worker_pids(self) -> set[int]:
        return {worker.pid for worker in self.workers()}

    def workers(self) -> list[psutil.Process]:
        """The uvicorn worker processes (not the multiprocessing resource tracker)."""
        return [
            child
            for child in self.process.children()
            if any("spawn_main" in part for part in child.cmdline())
            and "resource_tracker" not in " ".join(child.cmdline())
        ]

    def processes(self) -> list[psutil.Process]:
        return [self.process, *self.process.children(recursive=True)]

    def stop(self) -> None:
        children = self.process.children(recursive=True)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except psutil.TimeoutExpired:
                self.process.kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.wait(5)
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.log_file.close()


async def populate(base: str, admin: str) -> dict[str, str]:
    """Accounts bench-0000 ... with a grant each, and the keys the scenarios use."""
    headers = {"X-API-Key": admin}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def key(name: str, scope: str) -> str:
            response = await client.post("/api-keys", json={"name": name, "scopes": [scope]})
            response.raise_for_status()
            return response.json()["key"]

        keys = {"admin": admin, "usage": await key("bench usage", "usage:write")}
        keys["catalog"] = await key("bench catalog", "catalog:read")
        gate = asyncio.Semaphore(32)

        async def account(number: int) -> None:
            account_id = f"bench-{number:04d}"
            async with gate:
                (await client.post("/accounts", json={"id": account_id, "name": account_id})).raise_for_status()
                grant = {"amount": "1000000000", "description": "bench"}
                (await client.post(f"/accounts/{account_id}/grants", json=grant)).raise_for_status()

        await asyncio.gather(*(account(n) for n in range(ACCOUNTS)))

        # A history to start from: SEED_BATCHES batches through the API, so the tables are not empty
        # when they are first analyzed (see `vacuum`).
        async def history(number: int) -> None:
            account_id = f"bench-{number % ACCOUNTS:04d}"
            events = [
                {
                    "event_id": f"seed-{number}-{n}",
                    "account_id": account_id,
                    "model": "openai/gpt-4o-mini",
                    "input_tokens": 100 + n,
                    "output_tokens": 10 + n % 50,
                }
                for n in range(BATCH_SIZE)
            ]
            async with gate:
                response = await client.post(
                    "/usage/batch", json={"events": events}, headers={"X-API-Key": keys["usage"]}
                )
                response.raise_for_status()

        await asyncio.gather(*(history(n) for n in range(SEED_BATCHES)))
    return keys


# ---------------------------------------------------------------------------------------------------
# Measuring


class CpuMeter:
    """CPU seconds of the server's processes, of wrk and the raw drivers, of this database's
    PostgreSQL backends, and of the whole machine, over one run. Processes are counted one by one:
    one that ended during the run drops out, one that started during it counts with all its time."""

    def __init__(self, server: Server, extra: list[psutil.Process], backends: list[int]) -> None:
        self.groups = {"server": server.processes(), "driver": list(extra)}
        self.groups["postgres"] = [p for p in (proc(pid) for pid in backends) if p is not None]
        self.backends = set(backends)
        self.before = self.sample()
        self.children = children_cpu()
        self.machine = psutil.cpu_times()
        self.began = time.monotonic()

    def sample(self) -> dict[str, dict[int, float]]:
        totals: dict[str, dict[int, float]] = {}
        for name, processes in self.groups.items():
            totals[name] = {}
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    totals[name][process.pid] = times.user + times.system + times.children_user + times.children_system
        return totals

    def stop(self, backends: list[int] = ()) -> dict[str, float]:
        """`backends`: the database's backends now; those that started during the run (the raw
        drivers' connections) count with all their CPU time."""
        self.groups["postgres"] += [p for p in (proc(pid) for pid in backends if pid not in self.backends) if p]
        after = self.sample()
        extra = children_cpu() - self.children  # wrk, run and reaped by this process
        machine = psutil.cpu_times()
        wall = time.monotonic() - self.began
        busy = sum(getattr(machine, f) - getattr(self.machine, f) for f in ("user", "system", "nice", "irq", "softirq"))
        used = {
            name: sum(
                cpu - self.before[name].get(pid, 0.0)
                for pid, cpu in pids.items()
                if pid in self.before[name] or name == "postgres"
            )
            for name, pids in after.items()
        }
        used["driver"] += extra
        ours = sum(used.values())
        return {
            **{f"{name}_cpu_s": round(value, 3) for name, value in used.items()},
            "machine_busy_pct": round(100 * busy / (wall * psutil.cpu_count()), 1),
            "others_pct": round(max(0.0, 100 * (busy - ours) / (wall * psutil.cpu_count())), 1),
        }


def children_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.children_user + times.children_system


def proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


async def backend_pids(url: str) -> list[int]:
    conn = await asyncpg.connect(dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 OR backend_type <> 'client backend'", DATABASE
        )
        return [row["pid"] for row in rows]
    finally:
        await conn.close()


def wrk(base: str, path: str, connections: int, seconds: float, script: str, args: list[str], headers=()) -> dict:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA / script)]
    for header in headers:
        cmd += ["-H", header]
    cmd += [base + path, "--", *args]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BENCH_LUA": str(LUA)}, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["wall_s"] = time.monotonic() - started
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


class RawDrivers:
    """bench/raw.py worker processes, one per server worker, kept for the whole run."""

    def __init__(self, url: str, count: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.processes = [
            psutil.Popen(
                [sys.executable, "-m", "bench.raw", url, str(n)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=env,
            )
            for n in range(count)
        ]
        for process in self.processes:
            if json.loads(process.stdout.readline() or "{}").get("ready") is not True:
                raise SystemExit("bench/raw.py did not start")
        self.open = 0

    def run(
        self, mode: str, clients: int, seconds: float, accounts: list[str], hot: bool, prefix: str, spare: int
    ) -> dict:
        used = self.processes[: min(len(self.processes), clients)]
        spare += self.open  # the previous run's connections, closed before this run opens its own
        shares = split(clients, len(used))
        connections = split(min(clients, max(len(used), spare)), len(used))
        start_at = time.time() + 1.0 + clients * 0.02
        for n, (process, share) in enumerate(zip(used, shares, strict=True)):
            command = {
                "mode": mode,
                "clients": share,
                "connections": connections[n],
                "duration": seconds,
                "start_at": start_at,
                "accounts": accounts,
                "hot": hot,
                "batch": BATCH_SIZE,
                "prefix": f"{prefix}-{n}",
            }
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
        results = [json.loads(process.stdout.readline()) for process in used]
        self.open = sum(result["connections"] for result in results)
        latencies = sorted(ms for result in results for ms in result["latencies_ms"])
        events = sum(result["events"] for result in results)
        return {
            "events": events,
            "transactions": sum(result["transactions"] for result in results),
            "errors": sum(result["errors"] for result in results),
            "connections": sum(result["connections"] for result in results),
            "rate": events / seconds,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
        }

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.stdin.close()
            try:
                process.wait(10)
            except psutil.TimeoutExpired:
                process.kill()


async def vacuum(url: str) -> None:
    """What autovacuum would do, before every run: this machine's PostgreSQL runs with autovacuum off.

    Every write updates its accounts' rows and grants (the grants never in place: `remaining` is in
    the predicate of ix_grants_open), so a hot account leaves dead row versions that slow the next
    writes; and without ANALYZE the planner misjudges usage_events and ledger_entries, whose sizes
    it never learns (BENCHMARKS.md). Each run starts from the same vacuumed, analyzed state, so
    service and baseline runs meet the same tables."""
    conn = await asyncpg.connect(dsn(url))
    try:
        await conn.execute("VACUUM (ANALYZE) accounts, grants, usage_rollups, usage_events, ledger_entries")
    finally:
        await conn.close()


async def events_per_transaction(url: str, prefix: str) -> float:
    """Events per transaction in a run: one record() call stamps all its events with one recorded_at."""
    conn = await asyncpg.connect(dsn(url))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT recorded_at) AS transactions FROM usage_events "
            "WHERE event_id LIKE $1",
            prefix + "-%",
        )
        return row["events"] / max(1, row["transactions"])
    finally:
        await conn.close()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


async def spare_connections(url: str) -> int:
    """Connections the server can still accept, keeping 10 free for everyone else."""
    conn = await asyncpg.connect(dsn(url))
    try:
        return await conn.fetchval(
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') - 10"
        )
    finally:
        await conn.close()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    index = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return values[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, server: Server, url: str, keys: dict[str, str], seconds: float, reps: int) -> None:
        self.server = server
        self.url = url
        self.keys = keys
        self.seconds = seconds
        self.reps = reps
        self.rows: list[dict] = []
        self.raw: RawDrivers | None = None
        self.accounts = [f"bench-{n:04d}" for n in range(ACCOUNTS)]
        self.run_id = f"{int(time.time())}"
        self.worker_pids = server.worker_pids()
        self.restarts = 0

    async def meter(self, extra: list[psutil.Process] = ()) -> CpuMeter:
        self.check_workers()
        return CpuMeter(self.server, list(extra), await backend_pids(self.url))

    def check_workers(self) -> None:
        """uvicorn restarts a worker that misses its 5 s health check; count it, it costs a cold start."""
        pids = self.server.worker_pids()
        if pids != self.worker_pids:
            gone = self.worker_pids - pids
            self.restarts += len(gone)
            log(f"  worker restarted: {sorted(gone)} replaced by {sorted(pids - self.worker_pids)}")
            self.worker_pids = pids

    async def http(
        self, path: str, connections: int, script: str, args: list[str], headers=(), seconds: float | None = None
    ) -> dict:
        meter = await self.meter()
        result = wrk(self.server.base, path, connections, seconds or self.seconds, script, args, headers)
        result.update(meter.stop())
        return result

    def add(self, **row: Any) -> dict:
        self.rows.append(row)
        return row

    # -- 1 and 2: usage events -----------------------------------------------------------------

    async def usage(self, mode: str, clients: int, hot: bool) -> None:
        batch = BATCH_SIZE if mode == "batch" else 0
        per_request = batch or 1
        dist = "hot" if hot else "spread"
        label = f"{mode}-{dist}-c{clients}"
        service, raw = [], []
        # Batches of 1000 take up to a second each: longer runs, so the count is not a handful.
        seconds = self.seconds * (3 if mode == "batch" else 1)
        await vacuum(self.url)
        # Warm-up: connections, prepared statements, the coalescer's first batches.
        wrk(self.server.base, "/", clients, 1, "usage.lua", self.usage_args(f"warm-{label}", dist, batch))
        for rep in range(self.reps):
            order = ("service", "raw") if rep % 2 == 0 else ("raw", "service")
            for which in order:
                prefix = f"{self.run_id}-{label}-{rep}"
                await vacuum(self.url)
                if which == "service":
                    result = await self.http(
                        "/", clients, "usage.lua", self.usage_args(prefix, dist, batch), seconds=seconds
                    )
                    result["rate"] = result["requests"] * per_request / (result["duration_us"] / 1e6)
                    result["events_per_tx"] = await events_per_transaction(self.url, prefix)
                    service.append(result)
                else:
                    spare = await spare_connections(self.url)
                    meter = await self.meter(self.raw.processes)
                    result = self.raw.run(mode, clients, seconds, self.accounts, hot, "raw-" + prefix, spare)
                    # The drivers keep their connections open until their next run, so these count.
                    result.update(meter.stop(await backend_pids(self.url)))
                    raw.append(result)
            log(
                f"  {label} rep {rep + 1}: service {service[-1]['rate']:,.0f} events/s "
                f"(p99 {service[-1]['p99_us'] / 1000:.1f} ms), raw {raw[-1]['rate']:,.0f} events/s "
                f"(p99 {raw[-1]['p99_ms']:.1f} ms); other load {service[-1]['others_pct']:.0f}%"
            )
        name = "POST /usage" if mode == "single" else f"POST /usage/batch ({BATCH_SIZE})"
        self.add(
            scenario=f"{name}, {'one hot account' if hot else f'{ACCOUNTS} accounts'}",
            section=mode,
            concurrency=clients,
            unit="events/s",
            value=median([r["rate"] for r in service]),
            p50_ms=median([r["p50_us"] / 1000 for r in service]),
            p99_ms=median([r["p99_us"] / 1000 for r in service]),
            baseline=median([r["rate"] for r in raw]),
            baseline_label="raw record()",
            baseline_p50_ms=median([r["p50_ms"] for r in raw]),
            baseline_p99_ms=median([r["p99_ms"] for r in raw]),
            baseline_connections=min(r["connections"] for r in raw),
            events_per_tx=median([r["events_per_tx"] for r in service]),
            server_cpu_us=median([r["server_cpu_s"] * 1e6 / (r["requests"] * per_request) for r in service]),
            others_pct=median([r["others_pct"] for r in service + raw]),
            errors=sum(r["errors"] for r in service) + sum(r["errors"] for r in raw),
            runs={"service": service, "raw": raw},
        )

    def usage_args(self, prefix: str, dist: str, batch: int) -> list[str]:
        return [self.keys["usage"], prefix, str(ACCOUNTS), dist, str(batch)]

    # -- 3 and 4: catalog and estimates ----------------------------------------------------------

    async def get(self, path: str, key: str | None, label: str, headers: tuple = ()) -> dict:
        headers = (*headers, f"X-API-Key: {self.keys[key]}") if key else headers
        wrk(self.server.base, path, HTTP_CLIENTS, 1, "get.lua", [], headers)
        runs = [await self.http(path, HTTP_CLIENTS, "get.lua", [], headers, SHORT) for _ in range(self.reps)]
        for result in runs:
            result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
        log(f"  {label}: {median([r['rate'] for r in runs]):,.0f} req/s")
        return self.summary(label, "catalog", HTTP_CLIENTS, runs)

    def summary(self, scenario: str, section: str, clients: int, runs: list[dict]) -> dict:
        return {
            "scenario": scenario,
            "section": section,
            "concurrency": clients,
            "unit": "req/s",
            "value": median([r["rate"] for r in runs]),
            "p50_ms": median([r["p50_us"] / 1000 for r in runs]),
            "p99_ms": median([r["p99_us"] / 1000 for r in runs]),
            "bytes_per_response": median([r["bytes"] / max(1, r["requests"]) for r in runs]),
            "server_cpu_us": median([r["server_cpu_s"] * 1e6 / max(1, r["requests"]) for r in runs]),
            "others_pct": median([r["others_pct"] for r in runs]),
            "errors": sum(r["errors"] for r in runs),
            "runs": runs,
        }

    async def catalog(self) -> None:
        health = await self.get("/health", None, "GET /health")
        self.add(**health)
        gzip = "Accept-Encoding: gzip"
        for path in ("/models", "/v1/models"):
            for headers, suffix in (((), ""), ((gzip,), ", Accept-Encoding: gzip")):
                row = await self.get(path, "catalog", f"GET {path}{suffix}", headers)
                row.update(baseline=health["value"], baseline_label="GET /health")
                self.add(**row)

    async def estimate(self) -> None:
        args = [self.keys["catalog"]]
        wrk(self.server.base, "/estimate", HTTP_CLIENTS, 1, "estimate.lua", args)
        runs = [await self.http("/estimate", HTTP_CLIENTS, "estimate.lua", args, (), SHORT) for _ in range(self.reps)]
        for result in runs:
            result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
        row = self.summary("POST /estimate (one model)", "estimate", HTTP_CLIENTS, runs)
        health = next((r for r in self.rows if r["scenario"] == "GET /health"), None)
        if health:
            row.update(baseline=health["value"], baseline_label="GET /health")
        log(f"  POST /estimate: {row['value']:,.0f} req/s")
        self.add(**row)

    # -- 5: reports ----------------------------------------------------------------------------

    async def reports(self, sizes: list[int]) -> None:
        have = 0
        for total in sizes:
            log(f"reports: generating {total:,} events")
            began = time.monotonic()
            timings = await reports_data.grow(dsn(self.url), have, total, log)
            have = total
            shape = await reports_data.shape(dsn(self.url))
            log(f"  {shape['events']:,} events ({shape['events_size']}), {shape['rollups']:,} rollup rows")
            generation_s = time.monotonic() - began
            for group in REPORT_GROUPS:
                path = f"/reports/usage?group_by={group}"
                headers = (f"X-API-Key: {self.keys['admin']}",)
                wrk(self.server.base, path, REPORT_CLIENTS, 1, "get.lua", [], headers)
                runs = [await self.http(path, REPORT_CLIENTS, "get.lua", [], headers, SHORT) for _ in range(self.reps)]
                for result in runs:
                    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
                label = f"GET /reports/usage?group_by={group}, {total / 1e6:g}M events"
                row = self.summary(label, "reports", REPORT_CLIENTS, runs)
                row.update(events=shape["events"], rollups=shape["rollups"], generation_s=generation_s, **timings)
                log(f"  {label}: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms")
                self.add(**row)

    # -- 6: through PgBouncer ----------------------------------------------------------------------

    async def pgbouncer(self) -> None:
        """Ingestion by POOLED_WORKERS workers through a transaction-pooling PgBouncer, next to as many workers
        on direct connections: the ratio (through/direct) is what the pooler costs. Both servers run at once
        and their runs alternate, so a change in the machine's other load falls on both."""
        if pgbouncer_binary() is None:
            log("pgbouncer section skipped: pgbouncer is not installed (apt-get install pgbouncer)")
            return
        bouncer = PgBouncer(self.url, server_connections=POOLED_SERVER_CONNECTIONS)
        servers: dict[str, Server] = {}
        try:
            pooled = {
                "DATABASE_URL": bouncer.start(),
                "BILLING_DATABASE_POOLER": "pgbouncer",
                "BILLING_DIRECT_DATABASE_URL": self.url,
            }
            for which, env in (("direct", {}), ("pgbouncer", pooled)):
                env |= {"BILLING_DB_POOL_SIZE": str(POOLED_POOL_SIZE)}
                servers[which] = Server(self.url, POOLED_WORKERS, env, log_name=f"server-{which}")
                # One at a time, with time to spare: eight workers starting at once on a busy machine are slow.
                servers[which].wait_ready(timeout=300)
            for mode, clients in (("single", POOLED_SINGLE_CLIENTS), ("batch", BATCH_CLIENTS)):
                await self.pooled_row(mode, clients, servers)
        finally:
            for server in servers.values():
                server.stop()
            bouncer.stop()

    async def pooled_row(self, mode: str, clients: int, servers: dict[str, Server]) -> None:
        batch = BATCH_SIZE if mode == "batch" else 0
        seconds = self.seconds * (3 if mode == "batch" else 1)
        runs: dict[str, list[dict]] = {which: [] for which in servers}
        for which, server in servers.items():  # warm-up: connections, the coalescer's first batches
            wrk(server.base, "/", clients, 1, "usage.lua", self.usage_args(f"warm-{which}-{mode}", "spread", batch))
        for rep in range(self.reps):
            for which in list(servers) if rep % 2 == 0 else reversed(list(servers)):
                server, prefix = servers[which], f"{self.run_id}-{which}-{mode}-{rep}"
                await vacuum(self.url)
                meter = CpuMeter(server, [], await backend_pids(self.url))
                result = wrk(server.base, "/", clients, seconds, "usage.lua", self.usage_args(prefix, "spread", batch))
                result.update(meter.stop())
                result["rate"] = result["requests"] * (batch or 1) / (result["duration_us"] / 1e6)
                runs[which].append(result)
            log(
                f"  {mode} c{clients} rep {rep + 1}: direct {runs['direct'][-1]['rate']:,.0f} events/s, "
                f"via PgBouncer {runs['pgbouncer'][-1]['rate']:,.0f} events/s"
            )
        through, direct = runs["pgbouncer"], runs["direct"]
        name = "POST /usage" if mode == "single" else f"POST /usage/batch ({BATCH_SIZE})"
        self.add(
            scenario=f"{name} via PgBouncer ({POOLED_SERVER_CONNECTIONS} server connections), {POOLED_WORKERS} workers",
            section="pgbouncer",
            concurrency=clients,
            unit="events/s",
            value=median([r["rate"] for r in through]),
            p50_ms=median([r["p50_us"] / 1000 for r in through]),
            p99_ms=median([r["p99_us"] / 1000 for r in through]),
            baseline=median([r["rate"] for r in direct]),
            baseline_label="direct connections",
            baseline_p50_ms=median([r["p50_us"] / 1000 for r in direct]),
            baseline_p99_ms=median([r["p99_us"] / 1000 for r in direct]),
            others_pct=median([r["others_pct"] for r in through + direct]),
            errors=sum(r["errors"] for r in through + direct),
            runs=runs,
        )

    # -- 7: memory -----------------------------------------------------------------------------

    def memory(self) -> dict:
        peaks = {}
        for worker in self.server.workers():
            with contextlib.suppress(psutil.Error, OSError):
                status = Path(f"/proc/{worker.pid}/status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                peaks[worker.pid] = {
                    "peak_rss_mib": int(fields["VmHWM"].split()[0]) / 1024,
                    "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
                }
        return peaks


# ---------------------------------------------------------------------------------------------------
# Targets, the table and the files


def judge(rows: list[dict]) -> None:
    for row in rows:
        if row.get("baseline"):
            row["ratio"] = row["value"] / row["baseline"]
        checks = []
        if row["section"] == "single" and row["concurrency"] == 32 and "hot" not in row["scenario"]:
            checks.append(("service/raw >= 1.0", row["ratio"] >= 1.0))
        if row["section"] == "batch":
            checks.append(("service/raw >= 0.8", row["ratio"] >= 0.8))
            checks.append((">= 30,000 events/s", row["value"] >= 30_000))
        if row["section"] == "catalog" and row.get("baseline"):
            checks.append(("/health ratio >= 0.5", row["ratio"] >= 0.5))
        if row["section"] == "reports" and row.get("events", 0) >= 10_000_000:
            checks.append(("p99 < 100 ms", row["p99_ms"] < 100))
        row["targets"] = [{"target": name, "met": met} for name, met in checks]


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def notes(row: dict) -> str:
    parts = []
    if row.get("events_per_tx"):
        parts.append(f"{row['events_per_tx']:.1f} events/tx")
    if row.get("baseline_connections", row["concurrency"]) < row["concurrency"]:
        parts.append(f"raw on {row['baseline_connections']} connections")
    if row.get("bytes_per_response", 0) > 10_000:
        parts.append(f"{row['bytes_per_response'] / 1024:,.0f} KiB/response")
    if row.get("rollups"):
        parts.append(f"{row['events']:,} events and {row['rollups']:,} rollup rows in the database")
    if row.get("server_cpu_us"):
        parts.append(f"server CPU {row['server_cpu_us']:,.0f} µs/{'event' if row['unit'] == 'events/s' else 'req'}")
    # For reports this includes PostgreSQL's parallel query workers, which come and go within a query.
    parts.append(f"other load {row['others_pct']:.0f}%")
    if row.get("errors"):
        parts.append(f"{row['errors']} errors")
    return "; ".join(parts)


def table(rows: list[dict]) -> str:
    lines = [
        "| scenario | conc. | service | p50 ms | p99 ms | baseline | baseline p50 / p99 ms | ratio | target | notes |",
        "|---|---:|---:|---:|---:|---|---|---:|---|---|",
    ]
    for row in rows:
        baseline = f"{fmt(row['baseline'])} ({row['baseline_label']})" if row.get("baseline") else "-"
        latency = "-"
        if row.get("baseline_p99_ms") is not None:
            latency = f"{fmt(row['baseline_p50_ms'], 1)} / {fmt(row['baseline_p99_ms'], 1)}"
        targets = "; ".join(f"{t['target']}: {'met' if t['met'] else 'NOT met'}" for t in row.get("targets", []))
        lines.append(
            f"| {row['scenario']} | {row['concurrency']} | {fmt(row['value'])} {row['unit']} | {fmt(row['p50_ms'], 1)} "
            f"| {fmt(row['p99_ms'], 1)} | {baseline} | {latency} | {fmt(row.get('ratio'), 2)} | {targets or '-'} "
            f"| {notes(row)} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version.split("[")[0].strip() or "wrk",
    }


async def server_facts(url: str) -> dict:
    conn = await asyncpg.connect(dsn(url))
    try:
        facts = {"postgres": await conn.fetchval("SHOW server_version")}
        for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections"):
            facts[name] = await conn.fetchval(f"SHOW {name}")
        return facts
    finally:
        await conn.close()


def write_results(rows: list[dict], meta: dict) -> str:
    OUT.mkdir(exist_ok=True)
    text = table(rows)
    facts = ", ".join(f"{k}={v}" for k, v in meta["machine"].items())
    pg = ", ".join(f"{k}={v}" for k, v in meta["database"].items())
    memory = "; ".join(
        f"worker {pid}: peak RSS {m['peak_rss_mib']:.1f} MiB (now {m['rss_mib']:.1f})"
        for pid, m in meta["memory"].items()
    )
    body = (
        f"# make bench ({time.strftime('%Y-%m-%d %H:%M:%S')})\n\n{facts}\n\n{pg}\n\n"
        f"workers={meta['workers']}, {meta['reps']} runs of {meta['seconds']} s per figure (medians)\n\n"
        f"{text}\n\nMemory: {memory}; worker restarts during the run: {meta['restarts']}\n\n"
        f"Total time: {meta['total_s']:.0f} s\n"
    )
    (OUT / "results.md").write_text(body)
    (OUT / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    return body


# ---------------------------------------------------------------------------------------------------


async def prepare_service(server_url: str, workers: int) -> tuple[str, Server, dict[str, str]]:
    server_url = database_url(server_url)
    url = make_url(server_url).set(database=DATABASE).render_as_string(hide_password=False)
    log(f"database {DATABASE} on {make_url(server_url).render_as_string(hide_password=True)}")
    await recreate_database(server_url)
    billing(url, "migrate")
    billing(url, "catalog", "import")
    admin = billing(url, "keys", "create", "--name", "bench admin", "--scope", "admin").strip().splitlines()[-1]
    log("migrated, catalog imported, admin key created")
    server = Server(url, workers)
    try:
        server.wait_ready()
        log(f"billing serve --workers {workers} ready on {server.base}")
        keys = await populate(server.base, admin)
        await vacuum(url)
    except BaseException:
        server.stop()
        raise
    log(f"{ACCOUNTS} accounts with grants, {SEED_BATCHES * BATCH_SIZE:,} events of history")
    return url, server, keys


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true", help="profile a worker under single-event load")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    workers = env_int("BILLING_WORKERS", 2)
    seconds = float(os.environ.get("BENCH_SECONDS") or 4)
    reps = env_int("BENCH_REPS", 3)
    sections = (os.environ.get("BENCH_SECTIONS") or "single,batch,catalog,estimate,reports,pgbouncer").split(",")
    sizes = [int(n) for n in (os.environ.get("BENCH_REPORT_EVENTS") or "1000000,10000000").split(",")]
    OUT.mkdir(exist_ok=True)
    with postgres_server() as server_url:
        url, server, keys = await prepare_service(server_url, workers)
        bench = Bench(server, url, keys, seconds, reps)
        try:
            if options.profile:
                from bench.profile import profile

                await profile(bench, log)
                return
            if "single" in sections or "batch" in sections:
                bench.raw = RawDrivers(url, workers)
            if "single" in sections:
                for hot in (False, True):
                    log(f"single events, {'one hot account' if hot else f'{ACCOUNTS} accounts'}")
                    for clients in SINGLE_CLIENTS:
                        await bench.usage("single", clients, hot)
            if "batch" in sections:
                log(f"batches of {BATCH_SIZE}")
                await bench.usage("batch", BATCH_CLIENTS, False)
            if bench.raw:
                bench.raw.stop()
                bench.raw = None
            if "catalog" in sections:
                log("catalog")
                await bench.catalog()
            if "estimate" in sections:
                log("estimates")
                await bench.estimate()
            if "reports" in sections:
                await bench.reports(sizes)
            if "pgbouncer" in sections:
                log(f"{POOLED_WORKERS} workers through PgBouncer and direct")
                await bench.pgbouncer()
            memory = bench.memory()
            meta = {
                "machine": machine(),
                "database": await server_facts(url),
                "workers": workers,
                "seconds": seconds,
                "reps": reps,
                "memory": memory,
                "restarts": bench.restarts,
                "total_s": time.monotonic() - STARTED,
            }
        finally:
            if bench.raw:
                bench.raw.stop()
            server.stop()
    judge(bench.rows)
    print(write_results(bench.rows, meta))
    log("results in .bench/results.md and .bench/results.json")


if __name__ == "__main__":
    asyncio.run(main())
