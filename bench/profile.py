"""`python -m bench.run --profile`: where the workers' CPU goes under load, sampled with py-spy.

For each scenario, wrk drives the service while py-spy records every worker (on-CPU samples only),
then the samples of all workers are merged into .bench/profile-<scenario>.txt (collapsed stacks,
for flamegraph.pl or speedscope) and summarised in .bench/profile-<scenario>.md: the functions with
the most samples, inclusive and self, and the server CPU time per event or request. Only samples of
threads holding the GIL count (py-spy --gil): the Python work, without threads waiting in C.
"""

import asyncio
import collections
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.run import BIN, LUA, OUT, Bench

# 250 samples a second, only threads holding the GIL, collapsed stacks.
SPY = ("-r", "250", "--gil", "--nonblocking", "-f", "raw")
SCENARIOS = {
    # name: (path, connections, script, args(bench), units per request)
    "single": ("/", 32, "usage.lua", lambda b: b.usage_args(f"prof-{time.time()}", "spread", 0), 1),
    "batch": ("/", 4, "usage.lua", lambda b: b.usage_args(f"prof-{time.time()}", "spread", 1000), 1000),
    "models": ("/models", 32, "get.lua", lambda b: [], 1),
    "estimate": ("/estimate", 32, "estimate.lua", lambda b: [b.keys["catalog"]], 1),
}


def frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    if " (" not in frame:
        return frame
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].split('/')[-1]})"


def summarise(collapsed: list[str], top: int = 40) -> tuple[int, list, list]:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [frame_name(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += samples
        own[frames[-1]] += samples
    return total, inclusive.most_common(top), own.most_common(top)


async def profile(bench: Bench, log: Callable[[str], None]) -> None:
    seconds = float(os.environ.get("BENCH_PROFILE_SECONDS") or 8)
    names = (os.environ.get("BENCH_PROFILE") or "single,batch,models,estimate").split(",")
    workers = bench.server.workers()
    for name in names:
        path, connections, script, args, per_request = SCENARIOS[name]
        headers = [f"X-API-Key: {bench.keys['catalog']}"] if script == "get.lua" else []
        cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds + 3:g}s", "--timeout", "10s"]
        cmd += ["-s", str(LUA / script)]
        for header in headers:
            cmd += ["-H", header]
        cmd += [bench.server.base + path, "--", *args(bench)]
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "BENCH_LUA": str(LUA)})
        await asyncio.sleep(1.5)
        meter = await bench.meter()
        outputs = [OUT / f"profile-{name}-{worker.pid}.txt" for worker in workers]
        spies = [
            subprocess.Popen(
                [str(BIN / "py-spy"), "record", "-p", str(worker.pid), "-d", f"{seconds:g}", *SPY, "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for worker, out in zip(workers, outputs, strict=True)
        ]
        for spy in spies:
            spy.wait(seconds + 30)
        usage = meter.stop()
        output, _ = load.communicate(timeout=60)
        line = next((ln for ln in output.splitlines() if ln.startswith("BENCH_JSON ")), "")
        requests = int(line.split('"requests": ')[1].split(",")[0]) if line else 0
        rate = requests / (seconds + 3)
        collapsed = [ln for out in outputs if out.exists() for ln in out.read_text().splitlines()]
        (OUT / f"profile-{name}.txt").write_text("\n".join(collapsed) + "\n")
        for out in outputs:
            out.unlink(missing_ok=True)
        total, inclusive, own = summarise(collapsed)
        cpu_per_unit = usage["server_cpu_s"] * 1e6 / max(1, rate * seconds * per_request)
        lines = [
            f"# Profile: {name} ({path}, {connections} connections, {seconds:g} s, {len(workers)} workers)",
            "",
            f"{rate * per_request:,.0f} units/s during the run; server CPU {cpu_per_unit:,.0f} µs per unit "
            f"(event or request); other load on the machine {usage['others_pct']:.0f}%; {total} samples.",
            "",
            "| inclusive | function |",
            "|---:|---|",
            *(f"| {100 * n / max(1, total):.1f}% | `{f}` |" for f, n in inclusive),
            "",
            "| self | function |",
            "|---:|---|",
            *(f"| {100 * n / max(1, total):.1f}% | `{f}` |" for f, n in own),
        ]
        Path(OUT / f"profile-{name}.md").write_text("\n".join(lines) + "\n")
        log(f"profile {name}: {rate * per_request:,.0f}/s, {cpu_per_unit:,.0f} µs CPU per unit")
