"""The baseline without HTTP: the service's own write path (`prepare` + `record` in `db.transaction`)
driven straight from asyncio over asyncpg, as fast as `clients` concurrent callers can go.

Runs as a long-lived worker process of `bench.run` (one per server worker, so the baseline gets as
many cores of Python as the service does): it loads the catalog once, then answers one JSON command
per stdin line with one JSON result line on stdout.

    {"mode": "single" | "batch", "clients": 16, "connections": 16, "duration": 5, "start_at": <epoch s>,
     "accounts": ["bench-0000", ...], "hot": false, "batch": 1000, "prefix": "raw-x"}
    -> {"transactions": N, "events": M, "seconds": 5.0, "latencies_ms": [...], "errors": 0}

Single mode: each client records one event per transaction, like a POST /usage without the
coalescer. Batch mode: each client records `batch` events of one account per transaction, like a
POST /usage/batch. Only transactions that end inside [start_at, start_at + duration] count; the
clients start half a second early, so connections and prepared statements are warm.
"""

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime

from app import db
from app.catalog.store import CatalogStore
from app.config import Settings
from app.keys.schemas import Principal
from app.usage import service
from app.usage.schemas import UsageIn

# The model strings the wrk script (bench/lua/usage.lua) reports usage for, in the same order, and the
# usage objects every other event carries instead of token fields.
MODELS = (
    "gpt-4o-2024-08-06",
    "openai/gpt-4o-mini",
    "claude-sonnet-4-5-20250929",
    "models/gemini-2.5-flash",
    "deepseek/deepseek-chat",
)
USAGES = (
    lambda i, o: {"prompt_tokens": i, "completion_tokens": o, "prompt_tokens_details": {"cached_tokens": 0}},
    lambda i, o: {"prompt_tokens": i, "completion_tokens": o},
    lambda i, o: {"input_tokens": i, "output_tokens": o, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},  # noqa: E501
    lambda i, o: {"promptTokenCount": i, "candidatesTokenCount": o, "totalTokenCount": 0},
    lambda i, o: {"prompt_tokens": i, "completion_tokens": o},
)  # fmt: skip
WARM_UP = 0.5


class Driver:
    def __init__(self, url: str, worker: int) -> None:
        self.url = url
        self.worker = worker
        self.settings = Settings.from_env({})
        # An unbound key with usage:write, like the key the HTTP benchmark uses.
        self.principal = Principal(key_id="bench", scopes=frozenset({"usage:write"}), account_id=None)
        self.catalog = None
        self.pool = None

    async def load(self) -> None:
        engine = db.create_engine(self.url, pool_size=1)
        try:
            store = CatalogStore(engine, self.settings.default_margin, self.settings.credits_per_usd)
            self.catalog = await store.refresh()
        finally:
            await engine.dispose()

    def event(self, event_id: str, account_id: str, n: int, now: datetime) -> service.Prepared:
        index, input_tokens, output_tokens = n % len(MODELS), 200 + n % 3000, 20 + n % 700
        if n % 2 == 0:
            tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        else:
            tokens = {"usage": USAGES[index](input_tokens, output_tokens)}
        usage = UsageIn(event_id=event_id, account_id=account_id, model=MODELS[index], **tokens)
        return service.prepare(usage, self.principal, self.catalog, now)

    async def run(self, cmd: dict) -> dict:
        if self.pool is not None:
            await self.pool.close()
        clients, batch = cmd["clients"], cmd.get("batch", 1) if cmd["mode"] == "batch" else 1
        accounts, hot = cmd["accounts"], cmd.get("hot", False)
        start, end = cmd["start_at"], cmd["start_at"] + cmd["duration"]
        # One connection per client, unless the server has fewer to spare (then clients queue for them).
        connections = min(clients, cmd.get("connections") or clients)
        pool = self.pool = await db.create_pool(self.url, connections)
        # create_pool opens one connection; open them all before the clock starts.
        conns = [await pool.acquire() for _ in range(connections)]
        for conn in conns:
            await pool.release(conn)
        latencies: list[float] = []
        counts = {"transactions": 0, "events": 0, "errors": 0}

        async def client(number: int) -> None:
            rng = random.Random(f"{cmd['prefix']}-{self.worker}-{number}")
            n = 0
            while time.time() < end:
                account = accounts[0] if hot else rng.choice(accounts)
                now = datetime.now(UTC)
                events = []
                for _ in range(batch):
                    n += 1
                    events.append(self.event(f"{cmd['prefix']}-{self.worker}-{number}-{n}", account, n, now))
                began = time.perf_counter()
                outcomes = await db.transaction(pool, lambda conn, ev=events, at=now: service.record(conn, ev, at))
                finished = time.time()
                if start <= finished <= end:
                    latencies.append((time.perf_counter() - began) * 1000)
                    counts["transactions"] += 1
                    counts["events"] += sum(1 for outcome in outcomes if outcome.status == "created")
                    counts["errors"] += sum(1 for outcome in outcomes if outcome.status != "created")

        await asyncio.sleep(max(0.0, start - WARM_UP - time.time()))
        await asyncio.gather(*(client(i) for i in range(clients)))
        # The pool stays open until the next command, so bench.run can read its backends' CPU time.
        return {**counts, "connections": connections, "seconds": cmd["duration"], "latencies_ms": latencies}


async def main() -> None:
    driver = Driver(sys.argv[1], int(sys.argv[2]))
    await driver.load()
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            if driver.pool is not None:
                await driver.pool.close()
            return
        result = await driver.run(json.loads(line))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
