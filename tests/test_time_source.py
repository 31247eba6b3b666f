"""Business time comes only from app/clock.py's Clock (`state.clock.now()`, the `clock` dependency), so
tests can set it and every part of a request agrees on it. Timing a duration is another matter: a
monotonic counter is right for that (the access log, latency metrics, the key cache's age, rate-limit
buckets, the sync lock's patience), and the rule leaves it alone."""

import re
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
# Reads of the wall clock. Allowed everywhere: time.monotonic(), time.perf_counter(), loop.time().
WALL_CLOCK = re.compile(r"\b(datetime\.now|datetime\.utcnow|datetime\.today|date\.today|time\.time|time\.time_ns)\(")
CLOCK = APP / "clock.py"


def wall_clock_reads(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == CLOCK:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if WALL_CLOCK.search(line):
                found.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    return found


def test_only_the_clock_reads_the_wall_clock():
    assert wall_clock_reads(APP) == []


def test_the_clock_itself_is_found(tmp_path):
    # The pattern matches what it is meant to: the Clock's own read, and the usual spellings.
    assert WALL_CLOCK.search(CLOCK.read_text())
    (tmp_path / "x.py").write_text("a = datetime.now(UTC)\nb = time.time()\nc = time.monotonic()\nd = date.today()\n")
    assert [line.split(": ", 1)[1] for line in wall_clock_reads(tmp_path)] == [
        "a = datetime.now(UTC)",
        "b = time.time()",
        "d = date.today()",
    ]
