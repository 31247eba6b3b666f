"""Compare ASGI servers (uvicorn vs granian) for a Litestar app; the numbers behind docs/asgi-server.md.

Standalone: imports nothing from `app`. Run it from a scratch venv, never the project's own, e.g.

    python3 -m venv /tmp/asgi-venv
    /tmp/asgi-venv/bin/pip install 'litestar==2.25.0' msgspec 'uvicorn[standard]==0.54.0' granian
    apt-get install -y wrk
    /tmp/asgi-venv/bin/python scripts/bench_asgi.py bench --reps 6 --duration 5 --out /tmp/asgi-bench.json
    /tmp/asgi-venv/bin/python scripts/bench_asgi.py checks

The module is also the app under test: `bench_asgi:create_app` (a factory) serves
    GET  /ping                     a small dict
    GET  /big                      ~200 KB of precomputed JSON bytes
    POST /echo                     a ~300-byte JSON body decoded into a msgspec Struct and returned
    GET  /models/{model_id:path}   the model_id it received, plus scope["path"] and scope["raw_path"]
    GET  /models-str/{model_id:str}  the same through a plain str parameter
    GET  /_pid, /_scope, /_slow    diagnostics for `checks`
Environment read by the app: BENCH_EVENT_LOG (file to append factory/startup/shutdown events to),
BENCH_MAX_BODY (request_max_body_size, default 65536), BENCH_FAIL_STARTUP=1 (raise in on_startup).

`bench` starts all four server configurations side by side on loopback (idle ones cost nothing), then for every
round and every (endpoint, connections) cell runs wrk against each configuration in turn, alternating the order
between rounds, so that background load on the shared machine hits all of them alike. Every wrk run is bounded
by --duration. Besides wrk's requests/s and latency percentiles it records the CPU the server processes used
(CPU time per request is much less sensitive to other work on the machine than requests/s), the CPU used by
everything else meanwhile, and the peak RSS (VmHWM) of each worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import pathlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Litestar, Request, get, post
from litestar.response import Response

SCRIPTS_DIR = pathlib.Path(__file__).resolve().parent
HOST = "127.0.0.1"

# --------------------------------------------------------------------------------------------------------------
# The app under test
# --------------------------------------------------------------------------------------------------------------


class EchoItem(msgspec.Struct):
    request_id: str
    account_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    unit_price: str
    tags: list[str]
    metadata: dict[str, str]


ECHO_BODY = msgspec.json.encode(
    EchoItem(
        request_id="req_01JD3Z8Q4W6X8Y2K5M7N9P1R3T",
        account_id="acct_7f3c2a9e4b1d",
        model="openai/gpt-4o-2024-08-06",
        input_tokens=1532,
        output_tokens=412,
        cached_tokens=1024,
        unit_price="0.0000025",
        tags=["prod", "eu-west-1", "chat"],
        metadata={"customer": "acme-industries", "feature": "summarise", "trace": "4bf92f3577b34da6a3ce929d0e0e4736"},
    )
)


def _big_payload() -> bytes:
    rows = [
        {
            "id": f"model-{i:05d}",
            "provider": ["openai", "anthropic", "google", "mistral"][i % 4],
            "input_price": f"{0.0000001 * (i % 97 + 1):.7f}",
            "output_price": f"{0.0000004 * (i % 89 + 1):.7f}",
            "context_window": 8192 * (1 + i % 16),
            "active": i % 7 != 0,
        }
        for i in range(1450)
    ]
    return msgspec.json.encode({"models": rows, "count": len(rows)})


BIG = _big_payload()  # ~200 KB, built once per worker at import


def _event(kind: str) -> None:
    path = os.environ.get("BENCH_EVENT_LOG")
    if path:
        with open(path, "a") as f:  # one short line per write: appends do not interleave
            f.write(f"{kind} {os.getpid()} {time.time():.3f}\n")


@get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@get("/big")
async def big() -> Response[bytes]:
    return Response(content=BIG, media_type="application/json")


@post("/echo", status_code=200)
async def echo(data: EchoItem) -> EchoItem:
    return data


@get("/models/{model_id:path}")
async def model(model_id: pathlib.Path, request: Request) -> dict[str, Any]:
    raw = request.scope.get("raw_path")
    return {
        "model_id": str(model_id),
        "scope_path": request.scope["path"],
        "scope_raw_path": raw.decode("latin-1") if raw is not None else None,
    }


@get("/models-str/{model_id:str}")
async def model_str(model_id: str) -> dict[str, str]:
    return {"model_id": model_id}


@get("/_slow")
async def slow(seconds: float = 2.0) -> dict[str, float]:
    await asyncio.sleep(min(seconds, 10.0))
    return {"slept": seconds}


@get("/_pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@get("/_scope")
async def scope(request: Request) -> dict[str, Any]:
    s = request.scope
    return {
        "asgi": s.get("asgi"),
        "http_version": s.get("http_version"),
        "scheme": s.get("scheme"),
        "root_path": s.get("root_path"),
        "server": list(s["server"]) if s.get("server") else None,
        "client": list(s["client"]) if s.get("client") else None,
        "port_types": [type(s["server"][1]).__name__, type(s["client"][1]).__name__],
        "litestar_client_port": repr(request.client.port) if request.client else None,
        "extensions": sorted((s.get("extensions") or {}).keys()),
        "has_state": "state" in s,
        "query_string": s.get("query_string", b"").decode("latin-1"),
    }


def _on_startup() -> None:
    _event("startup")
    if os.environ.get("BENCH_FAIL_STARTUP") == "1":
        raise RuntimeError("startup failure requested by BENCH_FAIL_STARTUP")


def _on_shutdown() -> None:
    _event("shutdown")


def create_app() -> Litestar:
    _event("factory")
    return Litestar(
        route_handlers=[ping, big, echo, model, model_str, pid, scope, slow],
        on_startup=[_on_startup],
        on_shutdown=[_on_shutdown],
        request_max_body_size=int(os.environ.get("BENCH_MAX_BODY", "65536")),
        openapi_config=None,
        debug=False,
    )


# --------------------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ServerSpec:
    kind: str  # "uvicorn" | "granian"
    workers: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.workers}w"

    def command(self, port: int) -> list[str]:
        if self.kind == "uvicorn":
            return [
                sys.executable, "-m", "uvicorn", "bench_asgi:create_app", "--factory",
                "--host", HOST, "--port", str(port), "--workers", str(self.workers),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--factory",
            "--host", HOST, "--port", str(port), "--workers", str(self.workers),
            "--no-access-log", "--log-level", "warning", "bench_asgi:create_app",
        ]  # fmt: skip


SPECS = [ServerSpec("uvicorn", 1), ServerSpec("granian", 1), ServerSpec("uvicorn", 2), ServerSpec("granian", 2)]


@dataclass
class Server:
    spec: ServerSpec
    port: int
    workdir: pathlib.Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def event_log(self) -> pathlib.Path:
        return self.workdir / f"{self.spec.name}-{self.port}.events"

    @property
    def output_log(self) -> pathlib.Path:
        return self.workdir / f"{self.spec.name}-{self.port}.log"

    def start(self) -> None:
        env = {**os.environ, "BENCH_EVENT_LOG": str(self.event_log), "PYTHONPATH": str(SCRIPTS_DIR)}
        env.update(self.env_extra)
        self.event_log.unlink(missing_ok=True)
        out = open(self.output_log, "wb")  # noqa: SIM115 - the child owns it
        # A session of its own: a Ctrl-C on this script does not reach the server; we signal it explicitly.
        self.proc = subprocess.Popen(  # noqa: S603
            self.spec.command(self.port), cwd=SCRIPTS_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        out.close()

    def events(self) -> list[tuple[str, int]]:
        if not self.event_log.exists():
            return []
        return [(p[0], int(p[1])) for p in (ln.split() for ln in self.event_log.read_text().splitlines()) if p]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.name} exited with {self.proc.returncode}: {self.output_log.read_text()}"
                )
            started = sum(1 for k, _ in self.events() if k == "startup")
            if started >= self.spec.workers:
                with contextlib.suppress(OSError):
                    if request("GET", self.port, "/ping")[0] == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError(f"{self.spec.name} not ready after {timeout}s: {self.output_log.read_text()}")

    def tree(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *descendants(self.proc.pid)]

    def worker_pids(self) -> list[int]:
        """The processes running the app: those that logged a lifespan startup and are still alive."""
        alive = set(self.tree())
        return sorted({p for k, p in self.events() if k == "startup" and p in alive})

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0, send: bool = True) -> tuple[int | None, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        if send:  # a second SIGINT makes uvicorn skip its graceful shutdown, so signal only once
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            rc: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        elapsed = time.monotonic() - t0
        if rc is None:  # last resort, only our own process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return rc, elapsed


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def proc_status_kb(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def proc_cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def machine_cpu_seconds() -> dict[str, float]:
    """CPU seconds since boot, summed over all cores: process time (user, nice, system), irq+softirq (loopback
    traffic is largely processed there, and charged to no process), steal (other guests on the host), total."""
    tick = os.sysconf("SC_CLK_TCK")
    v = [int(x) / tick for x in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return {"proc": v[0] + v[1] + v[2], "irq": v[5] + v[6], "steal": v[7], "total": sum(v)}  # guest is inside user


def request(
    method: str, port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------------------------

ENDPOINTS = {"ping": ("GET", "/ping"), "big": ("GET", "/big"), "echo": ("POST", "/echo")}
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def wrk_command(port: int, endpoint: str, connections: int, duration: int, lua_dir: pathlib.Path) -> list[str]:
    method, path = ENDPOINTS[endpoint]
    threads = min(2, connections)  # wrk refuses fewer connections than threads
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if method == "POST":
        script = lua_dir / "echo.lua"
        if not script.exists():
            body = ECHO_BODY.decode().replace("\\", "\\\\").replace('"', '\\"')
            script.write_text(
                f'wrk.method = "POST"\nwrk.body = "{body}"\nwrk.headers["Content-Type"] = "application/json"\n'
            )
        cmd += ["-s", str(script)]
    return [*cmd, f"http://{HOST}:{port}{path}"]


def parse_wrk(out: str) -> dict[str, Any]:
    res: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "75", "90", "99"):
        res[f"p{pct}_ms"] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def run_wrk(server: Server, endpoint: str, connections: int, duration: int, lua_dir: pathlib.Path) -> dict[str, Any]:
    cmd = wrk_command(server.port, endpoint, connections, duration, lua_dir)
    pids = server.tree()
    srv0, m0, t0 = proc_cpu_seconds(pids), machine_cpu_seconds(), time.monotonic()
    with open(server.workdir / "wrk.out", "w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    wall = time.monotonic() - t0
    srv1, m1 = proc_cpu_seconds(pids), machine_cpu_seconds()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {' '.join(cmd)}\n{text}")
    res = parse_wrk(text)
    srv_cpu, wrk_cpu = srv1 - srv0, ru.ru_utime + ru.ru_stime
    d = {k: max(m1[k] - m0[k], 1e-9) for k in m0}
    res.update(
        server=server.spec.name, endpoint=endpoint, connections=connections, wall_s=round(wall, 3),
        server_cpu_s=round(srv_cpu, 3), wrk_cpu_s=round(wrk_cpu, 3),
        server_cpu_us_per_req=round(srv_cpu / max(res["requests"], 1) * 1e6, 1),
        # shares of the machine: process CPU of anything neither this server nor wrk; irq+softirq; steal
        other_cpu_pct=round(100 * max(0.0, d["proc"] - srv_cpu - wrk_cpu) / d["total"], 1),
        irq_cpu_pct=round(100 * d["irq"] / d["total"], 1),
        steal_cpu_pct=round(100 * d["steal"] / d["total"], 1),
    )  # fmt: skip
    return res


def bench(args: argparse.Namespace) -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="asgi-bench-"))
    servers = [Server(spec, free_port(), workdir) for spec in SPECS]
    connections = [int(c) for c in args.connections.split(",")]
    endpoints = args.endpoints.split(",")
    runs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nproc": os.cpu_count()}
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
            print(f"{s.spec.name}: port {s.port}, workers {s.worker_pids()}, tree {s.tree()}", flush=True)
            for cmd in s.spec.command(s.port), wrk_command(s.port, "echo", 32, args.duration, workdir):
                print("   ", " ".join(cmd), flush=True)
        meta["idle_rss_kb"] = {s.spec.name: [proc_status_kb(p, "VmRSS") for p in s.worker_pids()] for s in servers}
        for s in servers:  # warm-up, not recorded
            for ep in endpoints:
                run_wrk(s, ep, 32, args.warmup, workdir)
        for rnd in range(args.reps):
            order = servers if rnd % 2 == 0 else servers[::-1]
            for ep in endpoints:
                for c in connections:
                    for s in order:
                        r = run_wrk(s, ep, c, args.duration, workdir)
                        r["round"] = rnd
                        runs.append(r)
                        print(
                            f"r{rnd} {ep:5} c={c:<3} {s.spec.name:10} {r['rps']:9.0f} rps  p50 {r['p50_ms']:7.2f}ms"
                            f"  p99 {r['p99_ms']:7.2f}ms  cpu/req {r['server_cpu_us_per_req']:6.0f}us"
                            f"  other {r['other_cpu_pct']:4.1f}%  err {r['socket_errors'] + r['non_2xx']}",
                            flush=True,
                        )
        meta["peak_rss_kb"] = {s.spec.name: [proc_status_kb(p, "VmHWM") for p in s.worker_pids()] for s in servers}
        meta["supervisor_peak_rss_kb"] = {
            s.spec.name: {p: proc_status_kb(p, "VmHWM") for p in s.tree() if p not in s.worker_pids()} for s in servers
        }
    finally:
        meta["stop"] = {s.spec.name: s.stop()[0] for s in servers if s.proc}
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result = {"meta": meta, "runs": runs}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    print(summarise(result))


def summarise(result: dict[str, Any]) -> str:
    runs, meta = result["runs"], result["meta"]
    lines = [
        "| endpoint | conns | server | req/s median (min-max) | p50 ms | p99 ms median (min-max) | server CPU us/req |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["endpoint"], r["connections"], r["server"]) for r in runs))
    for ep, c, name in keys:
        rs = [r for r in runs if (r["endpoint"], r["connections"], r["server"]) == (ep, c, name)]
        rps, p50, p99 = ([r[k] for r in rs] for k in ("rps", "p50_ms", "p99_ms"))
        cpu = statistics.median(r["server_cpu_us_per_req"] for r in rs)
        lines.append(
            f"| {ep} | {c} | {name} | {statistics.median(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) "
            f"| {statistics.median(p50):.2f} | {statistics.median(p99):.2f} ({min(p99):.2f}-{max(p99):.2f}) "
            f"| {cpu:.0f} |"
        )
    lines += [
        "",
        "Paired within each round (the two runs are back to back, so slow changes in background load cancel out):",
        "",
        "| endpoint | conns | workers | granian/uvicorn req/s: median ratio (min-max), granian wins "
        "| granian/uvicorn p99: median ratio |",
        "|---|---|---|---|---|",
    ]
    for ep, c in dict.fromkeys((r["endpoint"], r["connections"]) for r in runs):
        for w in (1, 2):
            by_round: dict[int, dict[str, dict[str, Any]]] = {}
            for r in runs:
                if (r["endpoint"], r["connections"]) == (ep, c) and r["server"].endswith(f"-{w}w"):
                    by_round.setdefault(r["round"], {})[r["server"].split("-")[0]] = r
            pairs = [(d["granian"], d["uvicorn"]) for d in by_round.values() if len(d) == 2]
            if not pairs:
                continue
            ratio = [g["rps"] / u["rps"] for g, u in pairs]
            p99 = [g["p99_ms"] / u["p99_ms"] for g, u in pairs]
            lines.append(
                f"| {ep} | {c} | {w} | {statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f}), "
                f"{sum(x > 1 for x in ratio)}/{len(ratio)} | {statistics.median(p99):.2f} |"
            )
    errors = sum(r["socket_errors"] + r["non_2xx"] for r in runs)
    other, irq, steal = ([r[k] for r in runs] for k in ("other_cpu_pct", "irq_cpu_pct", "steal_cpu_pct"))
    lines += [
        "",
        f"runs: {len(runs)}, socket errors + non-2xx: {errors}, other load on the machine during runs: "
        f"median {statistics.median(other):.1f}% (max {max(other):.1f}%) of the machine's CPU; "
        f"irq+softirq median {statistics.median(irq):.1f}%, steal median {statistics.median(steal):.1f}% "
        f"(max {max(steal):.1f}%)",
        "",
        "| server | worker peak RSS (VmHWM) MiB | worker idle RSS MiB | supervisor peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for name, peaks in meta.get("peak_rss_kb", {}).items():
        idle = meta["idle_rss_kb"].get(name, [])
        sup = list(meta["supervisor_peak_rss_kb"].get(name, {}).values())
        lines.append(
            f"| {name} | {', '.join(f'{p / 1024:.1f}' for p in peaks)} | {', '.join(f'{p / 1024:.1f}' for p in idle)} "
            f"| {', '.join(f'{p / 1024:.1f}' for p in sup) or '-'} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Compatibility checks
# --------------------------------------------------------------------------------------------------------------


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, count_responses: bool = False) -> tuple[str, str]:
    """Send raw bytes, return (status line or error, how the connection ended)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    got, ending = b"", "open"
    try:
        try:
            s.sendall(data)
        except OSError as e:
            ending = f"send: {type(e).__name__}"
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                ending = "still open after read timeout"
                break
            except OSError as e:
                ending = f"recv: {type(e).__name__}"
                break
            if not chunk:
                ending = "closed by server"
                break
            got += chunk
            if b"\r\n\r\n" in got and ending == "open":
                # read the response then see whether the server closes
                s.settimeout(2.0)
    finally:
        s.close()
    status = got.split(b"\r\n", 1)[0].decode("latin-1") if got else "(no response)"
    if count_responses:
        status = " + ".join(m.decode() for m in re.findall(rb"HTTP/1\.1 (\d{3})", got)) or "(no response)"
    return status, ending


def stop_and_inspect(srv: Server, sig: int, in_flight: bool = False) -> dict[str, Any]:
    """Signal the server's main process; report exit code, time, leftovers, lifespan shutdowns, in-flight fate."""
    tree = srv.tree()
    result: dict[str, Any] = {}
    thread = None
    if in_flight:

        def slow_request() -> None:
            t0 = time.monotonic()
            try:
                status, _ = request("GET", srv.port, "/_slow?seconds=2")
                result["in_flight_request"] = f"{status} after {time.monotonic() - t0:.2f}s"
            except OSError as e:
                result["in_flight_request"] = f"{type(e).__name__} after {time.monotonic() - t0:.2f}s"

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.5)
    t_sig = time.monotonic()
    if in_flight:
        with contextlib.suppress(ProcessLookupError):
            assert srv.proc is not None
            srv.proc.send_signal(sig)
        time.sleep(0.3)
        try:
            result["new_request_during_shutdown"] = str(request("GET", srv.port, "/ping")[0])
        except OSError as e:
            result["new_request_during_shutdown"] = type(e).__name__
    rc, _ = srv.stop(sig, send=not in_flight)
    result["exit_code"] = rc
    result["seconds_to_exit"] = round(time.monotonic() - t_sig, 2)
    if thread:
        thread.join()
    leftovers = [p for p in tree if pathlib.Path(f"/proc/{p}").exists()]
    result["left_alive_at_exit"] = {p: cmdline(p) for p in leftovers}
    time.sleep(3)
    result["left_alive_3s_later"] = [p for p in tree if pathlib.Path(f"/proc/{p}").exists()]
    events = srv.events()
    result.update({f"{k}_events": sum(1 for e, _ in events if e == k) for k in ("factory", "startup", "shutdown")})
    return result


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    return "?"


def check_one(spec: ServerSpec, workdir: pathlib.Path) -> dict[str, Any]:
    out: dict[str, Any] = {"server": spec.name}
    srv = Server(spec, free_port(), workdir)
    srv.start()
    srv.wait_ready()
    port = srv.port
    out["processes"] = srv.tree()
    out["workers"] = srv.worker_pids()
    out["events_after_start"] = srv.events()
    seen = set()
    for _ in range(40):
        seen.add(json.loads(request("GET", port, "/_pid")[1])["pid"])
    out["distinct_worker_pids_serving"] = sorted(seen)
    out["scope"] = json.loads(request("GET", port, "/_scope?a=1&b=%2F")[1])
    out["paths"] = {}
    for p in [
        "/models/openai%2Fgpt-4o",
        "/models/openai/gpt-4o",
        "/models/caf%C3%A9",
        "/models/a%20b",
        "/models/a%252Fb",
        "/models-str/openai%2Fgpt-4o",
    ]:
        status, body = request("GET", port, p)
        out["paths"][p] = [status, json.loads(body) if status == 200 else body.decode(errors="replace")[:200]]
    # request_max_body_size (BENCH_MAX_BODY=65536 by default)
    big = b'{"x":"' + b"a" * 100_000 + b'"}'
    out["echo_ok"] = request("POST", port, "/echo", ECHO_BODY, {"Content-Type": "application/json"})[0]
    out["echo_bad_json"] = request("POST", port, "/echo", b"{nope", {"Content-Type": "application/json"})[0]
    head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n"
    out["413_content_length"] = raw_exchange(port, head.encode() + big)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 8192]), big[i : i + 8192]) for i in range(0, len(big), 8192))
    head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    out["413_chunked"] = raw_exchange(port, head.encode() + chunked + b"0\r\n\r\n")
    try:
        out["413_via_http_client"] = request(
            "POST", port, "/echo", big, {"Content-Type": "application/json"}
        )[0]  # fmt: skip
    except OSError as e:
        out["413_via_http_client"] = f"{type(e).__name__}: {e}"
    out["server_alive_after_413"] = request("GET", port, "/ping")[0]
    # pipelining after a 413: is the connection still usable for the next request?
    head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n"
    pipelined = head.encode() + big + b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out["413_then_pipelined_ping"] = raw_exchange(port, pipelined, count_responses=True)
    out["log_tail"] = srv.output_log.read_text()[-1500:]
    out["sigint_idle"] = stop_and_inspect(srv, signal.SIGINT)
    for sig in (signal.SIGINT, signal.SIGTERM):  # fresh instances, with a 2 s request in flight
        srv = Server(spec, free_port(), workdir)
        srv.start()
        srv.wait_ready()
        out[f"{sig.name.lower()}_in_flight"] = stop_and_inspect(srv, sig, in_flight=True)
    # a failing lifespan startup
    srv = Server(spec, free_port(), workdir, env_extra={"BENCH_FAIL_STARTUP": "1"})
    srv.start()
    assert srv.proc is not None
    try:
        rc = srv.proc.wait(20)
        out["failing_startup"] = {"exit_code": rc}
    except subprocess.TimeoutExpired:
        listening = False
        with contextlib.suppress(OSError):
            listening = request("GET", srv.port, "/ping")[0] == 200
        out["failing_startup"] = {"exit_code": None, "note": "still running after 20s", "serves_ping": listening}
        srv.stop(signal.SIGINT)
    out["failing_startup"]["log_tail"] = srv.output_log.read_text()[-600:]
    return out


def checks(args: argparse.Namespace) -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="asgi-checks-"))
    results = [check_one(spec, workdir) for spec in SPECS]
    text = json.dumps(results, indent=1)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="interleaved wrk runs against all server configurations")
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    b.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load per server and endpoint")
    b.add_argument("--connections", default="1,32,128")
    b.add_argument("--endpoints", default="ping,big,echo")
    b.add_argument("--out", help="write all runs as JSON here")
    b.set_defaults(func=bench)
    c = sub.add_parser("checks", help="lifespan, signals, factory+workers, 413 and path handling per server")
    c.add_argument("--out")
    c.set_defaults(func=checks)
    s = sub.add_parser("summarise", help="re-print the tables from a bench --out file")
    s.add_argument("file")
    s.set_defaults(func=lambda a: print(summarise(json.loads(pathlib.Path(a.file).read_text()))))
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
