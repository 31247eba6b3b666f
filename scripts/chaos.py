"""A scripted, repeatable fault test (`make chaos`): a uvicorn worker killed and PostgreSQL crashed under load.

    python scripts/chaos.py [--duration 45] [--clients 16] [--workers 2] [--outage 5] [--seed 1]
                            [--kill-at 0.2] [--tcp] [--keep]

What it does, all on loopback and a PostgreSQL of its own:
1. Starts an embedded PostgreSQL in a temporary directory (app/embedded.py), migrates it (`billing migrate`), and
   starts `billing serve --workers N --load-catalog`; creates an account with a big grant, a usage key bound to it,
   and a second account for the probes.
2. Runs `--clients` concurrent clients (asyncio + httpx) for `--duration` seconds. Each sends usage events with
   unique event ids (most one per POST /usage, a quarter of the clients ten per POST /usage/batch) and retries
   every event, with the same event id and payload, on errors, timeouts and 5xx until it is acknowledged (2xx).
3. Meanwhile: at 20% of the run (--kill-at) it SIGKILLs one uvicorn worker and waits for uvicorn's supervisor to
   start another (uvicorn 0.30+ replaces dead workers); at 45% it stops PostgreSQL with `pg_ctl stop -m immediate`
   (a crash: no checkpoint, connections cut) and starts it again `--outage` seconds later on the same socket and
   port, so the service's URL stays valid. A probe loop sends POST /usage, GET /accounts/{id}/balance and
   GET /ready every 100 ms throughout and records status codes, Retry-After and latencies.
   The service reaches PostgreSQL over its Unix socket, as with `make run`; --tcp makes it use loopback TCP.
4. Checks: every acknowledged event is recorded exactly once (usage_events), charged once (one usage ledger entry
   per event), with the cost it was acknowledged with; the balance went down by exactly the sum of the acknowledged
   costs; `billing reconcile` passes; no 500; during the outage the API answers 503 with Retry-After within
   HANG_LIMIT seconds; and it serves again by itself within RECOVERY_LIMIT seconds of the restart.

Prints the counts and exits 1 if anything was lost or doubled, any 500 was seen, or any other check failed.
Everything is bounded in time (about two minutes in all with the defaults).
"""

import argparse
import asyncio
import contextlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import psutil

from app.db import plain_dsn
from app.embedded import BIN_DIR, EmbeddedPostgres

BILLING = str(Path(sys.executable).parent / "billing")
ACCOUNT, PROBE_ACCOUNT = "chaos", "chaos-probe"
GRANT = Decimal(10**9)
MODEL = "openai/gpt-4o"
REQUEST_TIMEOUT = 10.0  # a request still unanswered after this counts as a hang
HANG_LIMIT = 5.0  # during the outage every answer must come faster than this
RECOVERY_LIMIT = 15.0  # after the restart the service must serve again within this
DRAIN_LIMIT = 30.0  # after the run, unacknowledged events get this long to be acknowledged
BATCH = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------------------
# PostgreSQL that the script can crash and restart
# --------------------------------------------------------------------------------------------------------------


class Database:
    """An EmbeddedPostgres whose server the script stops immediately and starts again with the same options
    (Unix socket directory and port), so that the URL the service was given stays valid."""

    def __init__(self, data_dir: Path, tcp: bool) -> None:
        self.embedded = EmbeddedPostgres(data_dir)
        self.url = self.embedded.start()
        query = parse_qs(urlsplit(self.url).query)
        self.socket_dir, self.port = query["host"][0], query["port"][0]
        self.pgdata = self.embedded.pgdata
        self.listen = ""
        if tcp:
            # Also on loopback TCP, and the service connects that way: a server that is down then refuses
            # connections (ECONNREFUSED) instead of having no socket file (ENOENT).
            self.port, self.listen = str(free_port()), "127.0.0.1"
            self.pg_ctl("stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60")
            self.restart()
            self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        # As in app/embedded.py: PostgreSQL refuses root, so root runs it as the owner of the data directory.
        as_owner = {}
        if os.geteuid() == 0:
            owner = self.pgdata.stat()
            as_owner = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        result = subprocess.run(  # noqa: S603
            [str(BIN_DIR / "pg_ctl"), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.pgdata.parent,
            timeout=timeout,
            check=False,
            **as_owner,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)}: {result.stdout}{result.stderr}")

    def crash(self) -> None:
        self.pg_ctl("stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "30")

    def restart(self) -> None:
        options = f"-h '{self.listen}' -p {self.port} -k {shlex.quote(self.socket_dir)}"
        log_file = str(self.pgdata / "postgres.log")
        self.pg_ctl("start", "-D", str(self.pgdata), "-w", "-t", "60", "-o", options, "-l", log_file, timeout=90)

    def stop(self) -> None:
        self.embedded.stop()


# --------------------------------------------------------------------------------------------------------------
# The service: `billing serve --workers N`
# --------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    def __init__(self, url: str, workers: int, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log_file = open(log_path, "a")  # noqa: SIM115 - the server writes to it until stop()
        env = {**os.environ, "DATABASE_URL": url, "BILLING_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
        command = [BILLING, "serve", "--port", str(self.port), "--workers", str(workers), "--load-catalog"]
        self.process = subprocess.Popen(  # noqa: S603
            command, env=env, stdout=subprocess.PIPE, stderr=self.log_file, text=True, start_new_session=True
        )
        self.admin_key: str | None = None

    def wait_until_serving(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            if line.strip().startswith("cmk_"):
                self.admin_key = line.strip()
            if line.startswith("Serving on"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("billing serve did not start in time")
        else:
            raise RuntimeError(f"billing serve exited with {self.process.wait()}; see {self.log_path}")
        # Keep draining stdout so that the server never blocks on a full pipe.
        threading.Thread(
            target=lambda: [self.log_file.write(line) for line in self.process.stdout], daemon=True
        ).start()
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("billing serve never became ready")

    def workers(self) -> list[psutil.Process]:
        """uvicorn's worker processes: the serve process's children started by multiprocessing's spawn."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


# --------------------------------------------------------------------------------------------------------------
# Load, probes and faults
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Event:
    event_id: str
    payload: dict
    attempts: int = 0
    acknowledged_cost: Decimal | None = None
    acknowledged_status: int | None = None


@dataclass
class Probe:
    sent: float  # seconds since the start of the run
    kind: str
    latency: float
    status: int | None  # None: no answer (transport error or timeout)
    retry_after: str | None
    error: str | None = None


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    events: dict[str, Event] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)  # every answer the clients got, by status
    transport_errors: Counter = field(default_factory=Counter)
    rejected: list[str] = field(default_factory=list)  # 4xx answers to valid events: a bug somewhere
    probes: list[Probe] = field(default_factory=list)
    server_errors: Counter = field(default_factory=Counter)  # (request, status, error code): answers >= 500 but 503
    worker: dict = field(default_factory=dict)
    outage: dict = field(default_factory=dict)
    service_exit: tuple[float, int] | None = None  # (when, exit code) if `billing serve` died
    log_lines: list[tuple[float, str]] = field(default_factory=list)  # the service's log, timed as it came
    stop_sending: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return time.monotonic() - self.started


def new_event(rng: random.Random, client: int, n: int) -> Event:
    event_id = f"chaos-{client}-{n}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
    payload = {
        "event_id": event_id,
        "account_id": ACCOUNT,
        "model": MODEL,
        "input_tokens": rng.randint(1, 50_000),
        "output_tokens": rng.randint(0, 4_000),
    }
    if rng.random() < 0.3:
        payload["cached_input_tokens"] = rng.randint(0, payload["input_tokens"])
    return Event(event_id, payload)


async def backoff(response: httpx.Response | None, attempt: int) -> None:
    if response is not None and response.headers.get("retry-after", "").isdigit():
        delay = min(float(response.headers["retry-after"]), 2.0)
    else:
        delay = min(0.05 * 2**attempt, 1.0)
    await asyncio.sleep(delay * random.uniform(0.5, 1.0))


def note(run: Run, response: httpx.Response, what: str) -> None:
    run.statuses[response.status_code] += 1
    if response.status_code >= 500 and response.status_code != 503:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = response.text[:100]
        run.server_errors[(what, response.status_code, code)] += 1


async def deliver_one(run: Run, http: httpx.AsyncClient, event: Event, deadline: float) -> None:
    """POST /usage until acknowledged: same event id, same payload, every time."""
    while time.monotonic() < deadline:
        event.attempts += 1
        response = None
        try:
            response = await http.post("/usage", json=event.payload)
        except httpx.TransportError as exc:
            run.transport_errors[type(exc).__name__] += 1
        else:
            note(run, response, "POST /usage")
            if response.status_code in (200, 201):
                event.acknowledged_cost = Decimal(response.json()["cost"])
                event.acknowledged_status = response.status_code
                return
            if response.status_code < 500:
                run.rejected.append(f"{event.event_id}: {response.status_code} {response.text[:300]}")
                return
        await backoff(response, event.attempts)


async def deliver_batch(run: Run, http: httpx.AsyncClient, events: list[Event], deadline: float) -> None:
    """POST /usage/batch until every event in it is acknowledged (`created` or `duplicate`)."""
    pending = list(events)
    attempt = 0
    while pending and time.monotonic() < deadline:
        attempt += 1
        for event in pending:
            event.attempts += 1
        response = None
        try:
            response = await http.post("/usage/batch", json={"events": [e.payload for e in pending]})
        except httpx.TransportError as exc:
            run.transport_errors[type(exc).__name__] += 1
        else:
            note(run, response, "POST /usage/batch")
            if response.status_code == 200:
                for event, result in zip(pending, response.json()["results"], strict=True):
                    if result["status"] in ("created", "duplicate"):
                        event.acknowledged_cost = Decimal(result["event"]["cost"])
                        event.acknowledged_status = 201 if result["status"] == "created" else 200
                    else:  # a valid event refused: nothing a retry would change
                        run.rejected.append(f"{event.event_id}: batch result {result}")
                return
            if response.status_code < 500:
                run.rejected.append(f"batch: {response.status_code} {response.text[:300]}")
                return
        await backoff(response, attempt)


async def client_loop(run: Run, base: str, key: str, client: int, seed: int, drain_deadline: float) -> None:
    rng = random.Random(seed * 1000 + client)
    batches = client % 4 == 3  # a quarter of the clients report in batches
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": key}, timeout=REQUEST_TIMEOUT, limits=limits
    ) as http:
        n = 0
        while not run.stop_sending.is_set():
            events = [new_event(rng, client, n + i) for i in range(BATCH if batches else 1)]
            n += len(events)
            for event in events:
                run.events[event.event_id] = event
            if batches:
                await deliver_batch(run, http, events, drain_deadline)
            else:
                await deliver_one(run, http, events[0], drain_deadline)


async def probe_loop(run: Run, base: str, key: str, until: float) -> None:
    """POST /usage (on an account of its own, never retried), GET its balance and GET /ready every 100 ms."""
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=REQUEST_TIMEOUT) as http:
        n = 0

        async def one(kind: str, call) -> None:
            sent = run.now()
            start = time.monotonic()
            try:
                response = await call()
            except httpx.TransportError as exc:
                run.probes.append(Probe(sent, kind, time.monotonic() - start, None, None, type(exc).__name__))
                return
            note(run, response, f"probe {kind}")
            run.probes.append(
                Probe(sent, kind, time.monotonic() - start, response.status_code, response.headers.get("retry-after"))
            )

        while time.monotonic() < until:
            n += 1
            event = {"event_id": f"probe-{n}", "account_id": PROBE_ACCOUNT, "model": MODEL, "input_tokens": 10}
            await asyncio.gather(
                one("POST /usage", lambda event=event: http.post("/usage", json=event)),
                one("GET /balance", lambda: http.get(f"/accounts/{PROBE_ACCOUNT}/balance")),
                one("GET /ready", lambda: http.get("/ready")),
                asyncio.sleep(0.1),
            )


async def follow_log(run: Run, service: Service, until: float) -> None:
    """Reads the service's log as it grows, noting when each line came (uvicorn's own lines carry no time)."""
    with open(service.log_path, errors="replace") as source:  # noqa: ASYNC230 - a local file, read in small bits
        source.seek(0, os.SEEK_END)
        partial = ""
        while time.monotonic() < until:
            chunk = source.read()
            if chunk:
                lines = (partial + chunk).split("\n")
                partial = lines.pop()
                run.log_lines += [(run.now(), line) for line in lines]
            await asyncio.sleep(0.05)


async def kill_a_worker(run: Run, service: Service, at: float) -> None:
    """SIGKILL one worker; uvicorn's supervisor (0.30+) notices within half a second and spawns another. Done when
    a worker logs "Application startup complete." after the kill; counts the spawns uvicorn killed on the way."""
    await asyncio.sleep(max(0.0, at - run.now()))
    before = service.workers()
    if not before:
        run.worker = {"error": "no uvicorn worker process found"}
        return
    victim = before[0]
    victim.send_signal(signal.SIGKILL)
    killed_at = run.now()
    log(f"SIGKILLed uvicorn worker {victim.pid} at {killed_at:.1f}s")
    run.worker = {"pid": victim.pid, "killed_at": killed_at}
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and run.service_exit is None:
        await asyncio.sleep(0.1)
        after = [line for t, line in run.log_lines if t >= killed_at]
        if any("Application startup complete" in line for line in after):
            started = [line for line in after if "Started server process" in line]
            died = [line for line in after if "Child process" in line and "died" in line]
            run.worker |= {
                "replacement": started[-1].rsplit("[", 1)[-1].rstrip("]") if started else "?",
                "replaced_after": run.now() - killed_at,
                "spawns_killed": max(0, len(died) - 1),  # the first "died" is the victim
            }
            log(
                f"a new worker serves {run.worker['replaced_after']:.1f}s later "
                f"(uvicorn killed {run.worker['spawns_killed']} slow-starting spawns on the way)"
            )
            return
    run.worker["error"] = "no new worker finished its startup within 45 s of the kill"


async def watch_service(run: Run, service: Service, until: float) -> None:
    while time.monotonic() < until:
        code = service.process.poll()
        if code is not None:
            run.service_exit = (run.now(), code)
            log(f"billing serve exited with code {code} at {run.now():.1f}s; see {service.log_path}")
            run.stop_sending.set()
            return
        await asyncio.sleep(0.2)


async def crash_the_database(run: Run, database: Database, at: float, outage: float) -> None:
    await asyncio.sleep(max(0.0, at - run.now()))
    run.outage["stop_begin"] = run.now()
    await asyncio.to_thread(database.crash)
    run.outage["stop_end"] = run.now()
    log(f"PostgreSQL stopped (-m immediate) at {run.outage['stop_end']:.1f}s")
    await asyncio.sleep(outage)
    run.outage["restart_begin"] = run.now()
    await asyncio.to_thread(database.restart)
    run.outage["restart_end"] = run.now()
    log(f"PostgreSQL started again at {run.outage['restart_end']:.1f}s")


# --------------------------------------------------------------------------------------------------------------
# Setup, checks and the report
# --------------------------------------------------------------------------------------------------------------


def setup_accounts(service: Service) -> tuple[str, str]:
    """The chaos account with a big grant and a usage key bound to it; the same for the probes."""
    keys = []
    with httpx.Client(base_url=service.base, headers={"X-API-Key": service.admin_key}, timeout=30) as http:
        for account in (ACCOUNT, PROBE_ACCOUNT):
            response = http.post("/accounts", json={"id": account, "name": account})
            response.raise_for_status()
            response = http.post(f"/accounts/{account}/grants", json={"amount": str(GRANT), "description": "chaos"})
            response.raise_for_status()
            response = http.post(
                "/api-keys", json={"name": account, "scopes": ["usage:write", "ledger:read"], "account_id": account}
            )
            response.raise_for_status()
            keys.append(response.json()["key"])
    return keys[0], keys[1]


@dataclass
class Stored:
    costs: dict[str, Decimal]
    duplicates: int
    doubled: int
    mischarged: int
    balance: Decimal
    charged: Decimal


async def read_back(url: str) -> Stored:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch("SELECT event_id, cost FROM usage_events WHERE account_id = $1", ACCOUNT)
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT event_id FROM usage_events WHERE account_id = $1 "
            "GROUP BY event_id HAVING count(*) > 1) d",
            ACCOUNT,
        )
        doubled = await conn.fetchval(
            "SELECT count(*) FROM (SELECT usage_event_id FROM ledger_entries WHERE kind = 'usage' AND account_id = $1 "
            "GROUP BY usage_event_id HAVING count(*) > 1) d",
            ACCOUNT,
        )
        # An event charged anything but exactly its cost, once (including an event with no usage entry).
        mischarged = await conn.fetchval(
            "SELECT count(*) FROM usage_events u WHERE u.account_id = $1 AND u.cost <> -coalesce("
            "(SELECT sum(amount) FROM ledger_entries l WHERE l.usage_event_id = u.id AND l.kind = 'usage'), 'NaN')",
            ACCOUNT,
        )
        balance = await conn.fetchval("SELECT balance FROM accounts WHERE id = $1", ACCOUNT)
        charged = await conn.fetchval(
            "SELECT -coalesce(sum(amount), 0) FROM ledger_entries WHERE account_id = $1 AND kind = 'usage'", ACCOUNT
        )
    finally:
        await conn.close()
    return Stored({r["event_id"]: r["cost"] for r in rows}, duplicates, doubled, mischarged, balance, charged)


def reconcile(url: str) -> tuple[bool, str]:
    result = subprocess.run(  # noqa: S603
        [BILLING, "reconcile"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def summarize(run: Run, stored: Stored, reconciled: tuple[bool, str], args, service_log: Path) -> list[str]:
    """Prints the report; returns the failures."""
    failures = []
    events = run.events.values()
    acked = {e.event_id: e for e in events if e.acknowledged_cost is not None}
    unacked = [e for e in events if e.acknowledged_cost is None]
    recorded = set(stored.costs)
    lost = sorted(set(acked) - recorded)
    extra = sorted(recorded - set(acked))  # recorded, never acknowledged: only for events given up on
    extra_unexplained = [e for e in extra if e not in {u.event_id for u in unacked}]
    wrong_cost = sorted(e for e in set(acked) & recorded if stored.costs[e] != acked[e].acknowledged_cost)
    acked_sum = sum((e.acknowledged_cost for e in acked.values()), Decimal(0))
    recorded_sum = sum(stored.costs.values(), Decimal(0))
    five_xx = {code: n for code, n in sorted(run.statuses.items()) if code >= 500}
    by_ack = Counter(e.acknowledged_status for e in acked.values())

    o = run.outage
    down = [p for p in run.probes if o and o["stop_end"] <= p.sent <= o["restart_begin"]]
    during = [p for p in run.probes if o and o["stop_begin"] <= p.sent <= o["restart_end"]]
    after = [p for p in run.probes if o and p.sent >= o["restart_end"]]

    def first_ok(kind: str) -> float | None:
        oks = [p for p in after if p.kind == kind and p.status is not None and p.status < 300]
        return min(p.sent + p.latency for p in oks) - o["restart_end"] if oks else None

    print()
    print(
        f"chaos: {args.clients} clients for {args.duration:.0f} s, {args.workers} workers, "
        f"PostgreSQL down {args.outage:.0f} s, over {'loopback TCP' if args.tcp else 'its Unix socket'} "
        f"(seed {args.seed})"
    )
    rows = [
        ("sent (distinct events)", len(run.events)),
        ("requests (attempts)", sum(e.attempts for e in events)),
        ("acknowledged", f"{len(acked)} (201 created: {by_ack[201]}, 200 replayed: {by_ack[200]})"),
        ("recorded", len(recorded)),
        ("duplicates", stored.duplicates),
        ("lost (acked, not recorded)", len(lost)),
        ("doubled (charged twice)", stored.doubled),
        ("mischarged (entry != cost)", stored.mischarged),
        ("acked with another cost", len(wrong_cost)),
        ("never acknowledged", f"{len(unacked)} (of which recorded: {len(extra)})"),
        ("answers by status", ", ".join(f"{c}: {n}" for c, n in sorted(run.statuses.items()))),
        ("5xx seen", ", ".join(f"{c}: {n}" for c, n in five_xx.items()) or "none"),
        ("transport errors", ", ".join(f"{k}: {n}" for k, n in run.transport_errors.most_common()) or "none"),
        ("rejected (4xx)", len(run.rejected)),
    ]
    for label, value in rows:
        print(f"  {label:28} {value}")

    if run.service_exit is not None:
        when, code = run.service_exit
        print(f"  {'billing serve DIED':28} at {when:.1f} s with exit code {code}")
        failures.append(f"billing serve exited with code {code} at {when:.1f} s, in the middle of the run")
    w = run.worker
    if "replacement" in w:
        print(
            f"  {'worker kill':28} pid {w['pid']} SIGKILLed at {w['killed_at']:.1f} s; uvicorn's replacement "
            f"(pid {w['replacement']}) serving {w['replaced_after']:.1f} s later; "
            f"{w['spawns_killed']} slow-starting spawns killed by uvicorn's 5 s healthcheck on the way"
        )
    else:
        print(f"  {'worker kill':28} {w}")
        failures.append(f"worker: {w.get('error', w)}")

    if o:
        print(
            f"  {'database outage':28} stop -m immediate at {o['stop_begin']:.1f} s (down at {o['stop_end']:.1f} s), "
            f"restarted at {o['restart_begin']:.1f} s (up at {o['restart_end']:.1f} s)"
        )
        for kind in ("POST /usage", "GET /balance", "GET /ready"):
            mine = [p for p in down if p.kind == kind]
            codes = Counter(p.status if p.status is not None else p.error for p in mine)
            with_retry_after = sum(1 for p in mine if p.status == 503 and p.retry_after)
            print(
                f"  {'  ' + kind + ' while down':28} {len(mine)} probes: "
                + ", ".join(f"{c}: {n}" for c, n in codes.most_common())
                + f"; 503 with Retry-After: {with_retry_after}; max latency "
                + (f"{max(p.latency for p in mine):.3f} s" if mine else "-")
            )
            if any(p.status != 503 or not p.retry_after for p in mine):
                failures.append(f"{kind} while the database was down: {dict(codes)} (expected 503 with Retry-After)")
        slow = max((p.latency for p in during), default=0.0)
        print(f"  {'max latency, outage window':28} {slow:.3f} s (probes sent from the stop to the restart's end)")
        if slow > HANG_LIMIT:
            failures.append(f"a probe took {slow:.1f} s during the outage (limit {HANG_LIMIT} s)")
        usage_ok, ready_ok = first_ok("POST /usage"), first_ok("GET /ready")
        print(
            f"  {'recovery':28} first 2xx POST /usage "
            + (f"{usage_ok:.2f} s" if usage_ok is not None else "never")
            + ", first GET /ready 200 "
            + (f"{ready_ok:.2f} s" if ready_ok is not None else "never")
            + " after the restart"
        )
        if usage_ok is None or usage_ok > RECOVERY_LIMIT or ready_ok is None or ready_ok > RECOVERY_LIMIT:
            failures.append(f"no recovery within {RECOVERY_LIMIT} s of the restart")
    else:
        failures.append("the database outage did not happen")

    print(
        f"  {'balance':28} {GRANT} - {stored.balance} = {GRANT - stored.balance} charged; "
        f"usage entries {stored.charged}; acknowledged costs {acked_sum}"
    )
    ok, output = reconciled
    print(f"  {'billing reconcile':28} {'passed' if ok else 'FAILED'}: {output.splitlines()[-1] if output else ''}")

    if lost:
        failures.append(f"{len(lost)} acknowledged events lost, e.g. {lost[:5]}")
    if stored.duplicates or stored.doubled:
        failures.append(f"doubled: {stored.duplicates} duplicate events, {stored.doubled} charged twice")
    if stored.mischarged:
        failures.append(f"{stored.mischarged} events charged other than their cost")
    if wrong_cost:
        failures.append(f"{len(wrong_cost)} events acknowledged with another cost than recorded, e.g. {wrong_cost[:5]}")
    if extra_unexplained:
        failures.append(f"{len(extra_unexplained)} events recorded but never sent?! e.g. {extra_unexplained[:5]}")
    if unacked:
        failures.append(f"{len(unacked)} events never acknowledged within the drain time")
    expected_charge = acked_sum + sum((stored.costs[e] for e in extra), Decimal(0))
    if not (GRANT - stored.balance == stored.charged == recorded_sum == expected_charge):
        failures.append(
            f"balance: charged {GRANT - stored.balance}, usage entries {stored.charged}, recorded costs "
            f"{recorded_sum}, acknowledged {expected_charge}"
        )
    if five_xx.get(500) or run.server_errors:
        errors = ", ".join(
            f"{what} {status} {code} x{n}" for (what, status, code), n in run.server_errors.most_common()
        )
        failures.append(f"server errors: {errors} (tracebacks in {service_log})")
    if run.rejected:
        failures.append(f"{len(run.rejected)} valid events rejected, e.g. {run.rejected[:3]}")
    if not ok:
        failures.append(f"billing reconcile failed:\n{output}")
    return failures


async def load(run: Run, service: Service, database: Database, keys: tuple[str, str], args) -> None:
    key, probe_key = keys
    duration = args.duration
    end = time.monotonic() + duration
    drain_deadline = end + DRAIN_LIMIT
    clients = [
        asyncio.create_task(client_loop(run, service.base, key, i, args.seed, drain_deadline))
        for i in range(args.clients)
    ]
    faults = [
        asyncio.create_task(kill_a_worker(run, service, at=args.kill_at * duration)),
        asyncio.create_task(crash_the_database(run, database, at=0.45 * duration, outage=args.outage)),
    ]
    probes = asyncio.create_task(probe_loop(run, service.base, probe_key, until=end))
    watcher = asyncio.create_task(watch_service(run, service, until=end))
    follower = asyncio.create_task(follow_log(run, service, until=end + DRAIN_LIMIT))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.stop_sending.wait(), timeout=duration)
    run.stop_sending.set()
    log(f"stopped sending new events at {run.now():.1f}s; waiting for the acknowledgements of those in flight")
    await asyncio.gather(*faults, probes, watcher)
    await asyncio.wait_for(asyncio.gather(*clients), timeout=DRAIN_LIMIT + REQUEST_TIMEOUT + 5)
    follower.cancel()
    log(f"all clients done at {run.now():.1f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=45, help="seconds of load (default 45)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--outage", type=float, default=5, help="seconds PostgreSQL stays down (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated events (default 1)")
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.2,
        help="when to kill a worker, as a fraction of the run (default 0.2; "
        "the database is down from 0.45 for --outage seconds)",
    )
    parser.add_argument(
        "--tcp", action="store_true", help="connect to PostgreSQL over loopback TCP instead of its Unix socket"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data and logs)")
    parser.add_argument("--time-limit", type=int, default=240, help="abort (and clean up) after this (default 240 s)")
    args = parser.parse_args()

    def out_of_time(*_: object) -> None:
        raise TimeoutError(f"chaos: out of time ({args.time_limit} s)")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.time_limit)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="billing-chaos-"))
    service_log = work / "serve.log"
    # Where the service's log is kept when the run fails (the rest of `work` goes, unless --keep).
    kept_log = service_log if args.keep else Path(tempfile.gettempdir()) / f"{work.name}-serve.log"
    database = service = None
    failures = ["the run did not finish"]
    try:
        log(f"embedded PostgreSQL in {work}")
        database = Database(work / "postgres", tcp=args.tcp)
        env = {**os.environ, "DATABASE_URL": database.url}
        subprocess.run([BILLING, "migrate"], env=env, check=True, capture_output=True, timeout=120)  # noqa: S603
        log(f"migrated; starting billing serve --workers {args.workers} (log: {service_log})")
        service = Service(database.url, args.workers, service_log)
        service.wait_until_serving()
        keys = setup_accounts(service)
        workers = service.workers()
        log(f"serving on {service.base} with workers {[p.pid for p in workers]}; load for {args.duration:.0f}s")
        if len(workers) != args.workers:
            raise RuntimeError(f"expected {args.workers} uvicorn workers, found {len(workers)}")

        run = Run()
        asyncio.run(load(run, service, database, keys, args))
        stored = asyncio.run(read_back(database.url))
        reconciled = reconcile(database.url)
        failures = summarize(run, stored, reconciled, args, kept_log)
    finally:
        code = service.stop() if service is not None else None
        if database is not None:
            database.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            if failures and service_log.exists():
                shutil.copy(service_log, kept_log)
                log(f"kept the service's log: {kept_log}")
            shutil.rmtree(work, ignore_errors=True)
    print(f"  {'billing serve exit code':28} {code}")
    print(f"  {'total time':28} {time.monotonic() - started:.0f} s")
    if failures:
        print("\nFAIL")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("\nPASS: every acknowledged event recorded and charged exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
