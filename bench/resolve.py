"""`python -m bench.resolve`: model resolution timings over the bundled catalog (BENCHMARKS.md,
"Model resolution"). In process, no database: building a Resolver, a cached answer, cold answers."""

import statistics
import time
import timeit

from app.catalog.importer import read_catalog
from app.catalog.resolve import Resolver, catalog_entries

BUILDS = 30
COLD_REPEATS = 300
HITS = 1_000_000
# (model, hint): the dated snapshots, wrapped names and ids events carry, and one no rule knows.
COLD = [
    ("claude-3-5-sonnet-20241022", None),
    ("gpt-4o-2024-08-06", None),
    ("gemini-1.5-pro-002", None),
    ("models/gemini-1.5-flash", None),
    ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", None),
    ("claude-3-haiku-20240307", "bedrock"),
    ("meta-llama/llama-3.1-8b-instruct", None),
    ("deepseek/deepseek-chat", "openrouter"),
    ("llama3.1:8b", None),
    ("gpt-4o-mini-2031-01-01", None),
    ("no-such-model", None),
]


def main() -> None:
    entries, aliases, providers = catalog_entries(read_catalog())
    builds = []
    for _ in range(BUILDS):
        start = time.perf_counter()
        resolver = Resolver(entries, aliases, providers)
        builds.append(time.perf_counter() - start)
    print(f"models {len(entries)}, aliases {len(aliases)}, match clauses {sum(e.match is not None for e in entries)}")
    print(f"build: median {statistics.median(builds) * 1e3:.1f} ms, min {min(builds) * 1e3:.1f} ms ({BUILDS} builds)")
    resolver.resolve("claude-3-5-sonnet-20241022")
    hit = timeit.timeit(lambda: resolver.resolve("claude-3-5-sonnet-20241022"), number=HITS) / HITS
    hinted = timeit.timeit(lambda: resolver.resolve("gpt-4o", "azure"), number=HITS) / HITS
    print(f"cached: {hit * 1e9:.0f} ns, with a hint {hinted * 1e9:.0f} ns (mean of {HITS:,})")
    print(f"{'cold (median of ' + str(COLD_REPEATS) + ')':<48} {'µs':>7}  answer")
    for model, hint in COLD:
        times = []
        for _ in range(COLD_REPEATS):
            start = time.perf_counter()
            found = resolver._resolve(model, hint)  # the rules, without the cache
            times.append(time.perf_counter() - start)
        answer = f"{found.model_id} ({found.rule})" if found else "None"
        print(f"{model + (' | ' + hint if hint else ''):<48} {statistics.median(times) * 1e6:7.1f}  {answer}")


if __name__ == "__main__":
    main()
