"""Hostile input: Schemathesis against every operation of /schema/openapi.json, with an admin key.

Every response is checked by `not_a_server_error` (no 5xx, whatever the input), `status_code_conformance`,
`content_type_conformance`, `response_headers_conformance`, `response_schema_conformance` and `error_envelope`
(every 4xx/5xx is docs/DESIGN.md's `{"error": {"message", "type", "code"[, "param"]}}`).

The served schema has had gaps (SCHEMA_BUGS). The run validates against a copy of it in which each gap still open
is closed the way the fix would close it; for each gap a test below (marked xfail(strict=True) while it is open)
asserts that the served schema is fixed. The app bugs found so far (APP-1 to APP-3) have strict xfail tests too, and
the generated cases that would hit them are steered away by `avoid_known_bugs`. When a bug is fixed its xfail test
starts passing and fails as XPASS(strict): remove that marker (and, for an app bug, its case in `avoid_known_bugs`).

The run is deterministic (derandomized, no example database, a fixed seed) and bounded (MAX_EXAMPLES per operation
plus Schemathesis' examples and coverage phases). It runs in process, on a database of its own, because catalog
writes (providers, prices, margins, imports) would otherwise leak into the catalog that the other tests share.
Seeded accounts, a priced scratch model, holds, a usage event and a spare key let generated requests reach the
happy paths: the hooks below swap generated ids for seeded ones (and amounts, token counts and times for hostile
ones) some of the time. Nothing leaves the machine: the catalog sync sources point at a closed loopback port.

`make schemathesis` runs the same tests longer (SCHEMATHESIS_MAX_EXAMPLES) against a real
`billing serve --workers 2` process over loopback (SCHEMATHESIS_SERVE=1) and prints the status codes per operation.
"""

import asyncio
import contextlib
import copy
import functools
import itertools
import os
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.asgi import create_app
from app.catalog import schemas as catalog_schemas
from app.catalog.importer import import_catalog, read_catalog
from app.config import Settings
from app.db import create_engine
from app.estimates import schemas as estimate_schemas
from app.keys import schemas as key_schemas
from app.keys import service as key_service
from app.keys.schemas import KeyCreate
from app.ledger import schemas as ledger_schemas
from app.usage import schemas as usage_schemas
from tests.helpers import assert_error, migrate

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
SERVE = os.environ.get("SCHEMATHESIS_SERVE") == "1"
VERBOSE = SERVE or os.environ.get("SCHEMATHESIS_VERBOSE") == "1"
BILLING = str(Path(sys.executable).parent / "billing")
METHODS = ("get", "put", "post", "delete", "patch")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Where the catalog sync sources point: a loopback port nothing listens on (connection refused at once).
DEAD_URL = f"http://127.0.0.1:{free_port()}"


def served_schema() -> dict[str, Any]:
    """GET /schema/openapi.json as the app serves it. The schema needs no database, so the app is called without
    its lifespan, with a URL nothing connects to."""
    settings = replace(Settings.from_env({}), database_url="postgresql+asyncpg://nobody@/unused")

    async def fetch() -> bytes:
        transport = httpx.ASGITransport(create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/schema/openapi.json")
        response.raise_for_status()
        return response.content

    return msgspec.json.decode(asyncio.run(fetch()))


SERVED = served_schema()
SERVED_AGAIN = served_schema()


# --------------------------------------------------------------------------------------------------------------
# The served schema's known gaps, and the copy of it that the run validates against
# --------------------------------------------------------------------------------------------------------------

SCHEMA_BUGS = {
    "SCHEMA-1": "every documented 400 has Litestar's default body {status_code, detail, extra}, not the service's "
    "error envelope",
    "SCHEMA-2": "the error statuses the service answers (401, 403, 404, 409, 422, ...) are undocumented, "
    "and so is the 200 of a replayed write (POST /usage, /authorizations, grants, adjustments, reversals)",
    "SCHEMA-3": "catalog rates (input_cost_per_1m_tokens, ...) are documented as strings but served as JSON numbers",
    "SCHEMA-4": "the schema changes on every start: the catalog responses carry random polyfactory examples",
    "SCHEMA-5": "text/csv (format=csv) and /metrics' text/plain are undocumented media types",
    "SCHEMA-6": "request bodies that reject unknown fields do not say `additionalProperties: false`",
}
# Request bodies decoded with forbid_unknown_fields=True (SCHEMA-6).
CLOSED_BODIES = sorted(
    name
    for module in (catalog_schemas, estimate_schemas, key_schemas, ledger_schemas, usage_schemas)
    for name, value in vars(module).items()
    if isinstance(value, type)
    and issubclass(value, msgspec.Struct)
    and value.__struct_config__.forbid_unknown_fields
    and name in SERVED["components"]["schemas"]
)
RATE_FIELDS = ("input_cost_per_1m_tokens", "output_cost_per_1m_tokens", "cost_per_1k_input", "cost_per_1k_output")
# Writes whose retry (same event id or Idempotency-Key) replays the first answer with 200 (SCHEMA-2).
REPLAYING = (
    "/usage",
    "/authorizations",
    "/accounts/{account_id}/grants",
    "/accounts/{account_id}/adjustments",
    "/accounts/{account_id}/reversals",
)
CSV_OPERATIONS = ("/accounts/{account_id}/ledger", "/reports/usage", "/reports/trial-balance")


def operations(raw: dict) -> list[tuple[str, str, dict]]:
    return [
        (path, method, op) for path, item in raw["paths"].items() for method, op in item.items() if method in METHODS
    ]


def litestar_default_400(response: dict) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return set(schema.get("required", [])) == {"detail", "status_code"}


def unstable_examples(a: Any, b: Any) -> Any:
    """`a` without the examples that differ from `b`'s (SCHEMA-4: they are random on every start)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {
            k: unstable_examples(v, b.get(k))
            for k, v in a.items()
            if not (k in ("example", "examples") and v != b.get(k))
        }
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [unstable_examples(x, y) for x, y in zip(a, b, strict=True)]
    return a


def as_fixed(served: dict, served_again: dict) -> dict:
    """The served schema with each of SCHEMA_BUGS closed, where it is still open."""
    raw = unstable_examples(served, served_again)  # SCHEMA-4
    raw = copy.deepcopy(raw)
    model = raw["components"]["schemas"]["CatalogModel"]["properties"]
    for name in RATE_FIELDS:  # SCHEMA-3
        if model[name].get("oneOf", [{}])[0].get("type") == "string":
            model[name] = {"oneOf": [{"type": "number"}, {"type": "null"}]}
    return raw


FIXED = as_fixed(SERVED, SERVED_AGAIN)
schema = schemathesis.openapi.from_dict(
    FIXED,
    config=schemathesis.Config.from_dict(
        {
            "seed": 20240601,
            "generation": {"mode": "all", "deterministic": True, "with-security-parameters": False},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    ),
)


# --------------------------------------------------------------------------------------------------------------
# What the hooks put into generated requests; SEEDS is filled by the `fuzz` fixture before any case is generated
# --------------------------------------------------------------------------------------------------------------

SEEDS: dict[str, list[Any]] = {}
HOSTILE_DECIMALS = [
    "100", "0.5", "0", "-1", "1e3", "1E+30", "1e-30", "NaN", "-Infinity", "Infinity", "sNaN", "-0",
    "0.0000000001", "123456789012345678901234567890.123456789", " 1", "1_000", "\u0661\u0662", "0x10", "",
]  # fmt: skip
HOSTILE_COUNTS = [0, 1, 1000, 200_001, 2**31, 2**63 - 1, 2**63, 10**30, -1]
HOSTILE_TIMES = [
    "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01",
]  # fmt: skip
DECIMAL_FIELDS = {
    "amount",
    "margin",
    "overdraft_limit",
    "input",
    "output",
    "cached_input",
    "cache_write",
    "per_request",
}
COUNT_FIELDS = {
    "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "max_output_tokens", "limit", "ttl_seconds", "context_window", "above_input_tokens",
}  # fmt: skip
TIME_FIELDS = {"occurred_at", "expires_at", "effective_from", "from", "to"}


# Catalog writes name only the scratch provider and model: a price version with no input rate for openai/gpt-4o,
# say, would make every later usage of it `model_unpriced`, and the happy paths of usage would be gone.
CATALOG_SEEDS = {"model": ["fuzzco/m1"], "provider": ["fuzzco"], "target": ["fuzzco", "fuzzco/m1"]}


def choices(name: str, seeds: dict[str, list[Any]] | None = None) -> list[Any]:
    """Values worth trying for a field or parameter of this name: seeded ids, hostile numbers and times."""
    if seeds and name in seeds:
        return seeds[name]
    if name in SEEDS:
        return SEEDS[name]
    if name in DECIMAL_FIELDS:
        return HOSTILE_DECIMALS
    if name in COUNT_FIELDS:
        return HOSTILE_COUNTS
    if name in TIME_FIELDS:
        return HOSTILE_TIMES
    return []


MISSING = object()
# Fields a body may leave out that the happy path needs (an unbound key must name the account, say).
CONTEXT_FIELDS = ("account_id", "model", "target")


def swap_some(
    values: Any, *, stringify: bool = False, add: tuple[str, ...] = (), seeds: dict | None = None
) -> st.SearchStrategy:
    """Each field with known values keeps its generated value or takes one of those, as Hypothesis chooses;
    the fields in `add` may also be added when missing."""
    if not isinstance(values, dict):
        return st.just(values)
    options = {}
    for name in [*values, *(name for name in add if name not in values)]:
        known = [str(v) for v in choices(name, seeds)] if stringify else choices(name, seeds)
        if known:
            options[name] = st.one_of(st.just(values.get(name, MISSING)), st.sampled_from(known))
    if not options:
        return st.just(values)
    return st.fixed_dictionaries(options).map(
        lambda swapped: {**values, **{k: v for k, v in swapped.items() if v is not MISSING}}
    )


def body_fields(operation) -> set[str]:
    body = operation.definition.raw.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    component = FIXED["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    return set(component.get("properties", {}))


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    return swap_some(path_parameters, stringify=True).map(spare_the_admin_key)


def spare_the_admin_key(path_parameters: Any) -> Any:
    # Schemathesis learns ids from responses (GET /api-keys lists the admin key): never revoke the key in use.
    if isinstance(path_parameters, dict) and path_parameters.get("key_id") in SEEDS.get("admin_key_id", []):
        return {**path_parameters, "key_id": SEEDS["key_id"][0]}
    return path_parameters


@schema.hook
def flatmap_query(context, query):
    return swap_some(query, stringify=True)


@schema.hook
def flatmap_body(context, body):
    label = context.operation.label
    if not isinstance(body, dict):
        strategy = st.just(body)
    else:
        if context.operation.path == "/catalog/sync" and isinstance(body.get("litellm_url"), str):
            # Generated URLs name real hosts: point them at the closed loopback port instead.
            body = {**body, "litellm_url": f"{DEAD_URL}/prices.json"}
        events = body.get("events")
        if isinstance(events, list) and events and all(isinstance(event, dict) for event in events[:5]):
            batch = st.tuples(*(swap_some(event, add=CONTEXT_FIELDS[:2]) for event in events[:5])).map(list)
            strategy = st.tuples(swap_some(body), batch).map(lambda p: {**p[0], "events": p[1] + events[5:]})
        else:
            add = tuple(name for name in CONTEXT_FIELDS if name in body_fields(context.operation))
            seeds = CATALOG_SEEDS if context.operation.path.startswith("/catalog") else None
            strategy = swap_some(body, add=add, seeds=seeds)
    happy = happy_bodies().get(label)
    # A valid body with varied (Unicode, large, optional) values two times in three: many fields must all be valid
    # at once for a write to succeed, which generated bodies almost never manage (the coverage phase, which these
    # hooks do not touch, sends plenty of invalid ones).
    return strategy if happy is None else st.one_of(happy, happy, strategy)


@functools.cache
def happy_bodies() -> dict[str, st.SearchStrategy]:
    # Any Unicode but NUL, which PostgreSQL cannot store (a 400 that the generated bodies cover).
    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)
    tokens = st.integers(0, 400_000)
    money = st.decimals(min_value=Decimal("1e-9"), max_value=Decimal(10**7), places=9).map(str)
    signed = st.decimals(min_value=-Decimal(10**4), max_value=Decimal(10**4), places=9).map(str)
    later = st.datetimes(
        min_value=datetime.now() + timedelta(days=1),  # noqa: DTZ005 (naive bounds; the zone is added)
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ).map(datetime.isoformat)
    # The loaders' service is not seeded, and none of its operations use these.
    seeds = {"account_id": ["acme"], "model": ["fuzzco/m1"], "authorization_id": ["none"], "event_id": ["none"]} | SEEDS
    account = st.sampled_from([seeds["account_id"][0], *seeds["account_id"]])  # mostly the funded one
    model = st.sampled_from(seeds["model"])

    def body(required: dict, optional: dict | None = None) -> st.SearchStrategy:
        return st.fixed_dictionaries(required, optional=optional or {})

    # Unique ids: Hypothesis likes to repeat its simplest strings, and a reused event id with another payload is
    # (rightly) a 422.
    numbers = itertools.count()
    unique = text.map(lambda value: f"{value}-{next(numbers)}")

    def usage_for(input_tokens: int, output_tokens: int) -> st.SearchStrategy:
        return body(
            {
                "event_id": unique,
                "account_id": account,
                "model": model,
                "input_tokens": st.just(input_tokens),
                "output_tokens": st.just(output_tokens),
            },
            {
                "cached_input_tokens": st.integers(0, input_tokens),
                "reasoning_tokens": st.integers(0, output_tokens),
                "metadata": st.dictionaries(text, text, max_size=3),
                "authorization_id": st.sampled_from(seeds["authorization_id"]),
                "occurred_at": st.sampled_from(["2020-01-01T00:00:00Z", datetime.now(UTC).isoformat()]),
            },
        )

    usage = st.tuples(tokens, st.integers(0, 20_000)).flatmap(lambda counts: usage_for(*counts))
    slug = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True).map(lambda value: f"{value}-{next(numbers)}")
    return {
        "POST /usage": usage,
        "POST /usage/batch": body({"events": st.lists(usage, min_size=1, max_size=4)}),
        "POST /authorizations": tokens.flatmap(
            lambda input_tokens: body(
                {
                    "account_id": account,
                    "model": model,
                    "input_tokens": st.just(input_tokens),
                    "max_output_tokens": st.integers(0, 20_000),
                },
                {"ttl_seconds": st.integers(1, 7 * 24 * 3600), "cached_input_tokens": st.integers(0, input_tokens)},
            )
        ),
        "POST /estimate": st.one_of(
            body({"input_tokens": tokens, "model": model}, {"output_tokens": tokens, "account_id": account}),
            body({"input_tokens": tokens, "models": st.lists(model, min_size=1, max_size=3)}),
        ),
        "POST /accounts": body({"name": text}, {"id": slug, "overdraft_limit": money}),
        "POST /accounts/{account_id}/grants": body({"amount": money}, {"description": text, "expires_at": later}),
        "POST /accounts/{account_id}/adjustments": body({"amount": signed, "reason": text}),
        "POST /accounts/{account_id}/reversals": body({"event_id": st.sampled_from(seeds["event_id"]), "reason": text}),
        "POST /api-keys": body(
            {
                "name": text,
                "scopes": st.lists(st.sampled_from(["catalog:read", "usage:write", "ledger:read"]), min_size=1),
            },
            {"account_id": account, "expires_at": later},
        ),
        "POST /catalog/providers": body({"id": slug, "name": text}),
        "PATCH /catalog/providers/{provider_id}": body({"enabled": st.just(True)}, {"name": text}),
        "PUT /catalog/models": body(
            {"provider": st.just("fuzzco"), "name": slug, "type": st.sampled_from(["language", "embedding"])},
            {"display_name": text, "context_window": st.integers(0, 2**31 - 1)},
        ),
        "POST /catalog/prices": body(
            {"model": st.just("fuzzco/m1"), "input": money},
            {
                "output": money,
                "per_request": money,
                "effective_from": later,
                "tiers": st.lists(body({"above_input_tokens": st.integers(0, 2**31 - 1), "input": money}), max_size=2),
            },
        ),
        "PUT /catalog/margins": body(
            {"scope": st.just("model"), "target": st.just("fuzzco/m1"), "margin": st.one_of(st.none(), money)}
        ),
        "POST /catalog/sync": body(
            {"curated": st.just(True), "sources": st.just(["openrouter"])}, {"dry_run": st.booleans()}
        ),
    }


@schema.hook
def map_case(context, case):
    return avoid_known_bugs(case)


def avoid_known_bugs(case):
    """Steer generated cases away from the app bugs that have a strict xfail test below, so that the run keeps
    testing everything else. Remove an entry together with its bug's xfail marker."""
    return case


# --------------------------------------------------------------------------------------------------------------
# Checks and what the run saw
# --------------------------------------------------------------------------------------------------------------


def error_envelope(ctx, response, case) -> None:
    """Every error is {"error": {"message", "type", "code"[, "param"]}} (docs/DESIGN.md), documented or not."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} with a body that is not JSON: {response.text[:200]!r}") from None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        raise AssertionError(f"{response.status_code} without the error envelope: {body!r:.300}")
    error = body["error"]
    missing = [k for k in ("message", "type", "code") if not (isinstance(error.get(k), str) and error[k])]
    unknown = set(error) - {"message", "type", "code", "param"}
    if missing or unknown:
        raise AssertionError(f"{response.status_code} with missing {missing} or unknown {sorted(unknown)}: {error!r}")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    error_envelope,
]


@dataclass
class Observed:
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    errors: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    seconds: Counter = field(default_factory=Counter)
    calls: int = 0
    started: float = field(default_factory=time.monotonic)

    def record(self, case, response, seconds: float) -> None:
        self.calls += 1
        label = case.operation.label
        self.seconds[label] += seconds
        self.statuses[label][response.status_code] += 1
        if response.status_code >= 400 and case.method.upper() == case.operation.method.upper():
            try:
                self.errors[label][response.json()["error"]["code"]] += 1
            except (ValueError, KeyError, TypeError):
                self.errors[label]["?"] += 1

    def undocumented(self) -> set[tuple[str, int]]:
        """(operation, status) pairs answered but not documented by the served schema (SCHEMA-2)."""
        documented = {f"{m.upper()} {p}": set(op.get("responses", {})) for p, m, op in operations(SERVED)}
        return {
            (label, status)
            for label, counts in self.statuses.items()
            for status in counts
            if str(status) not in documented.get(label, set()) and status not in (204, 405)  # method probes
        }


OBSERVED = Observed()


def report(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not OBSERVED.calls:
        return
    with capture.global_and_fixture_disabled():
        summarize(reporter.write_line)


def summarize(write) -> None:
    total = Counter()
    for counts in OBSERVED.statuses.values():
        total.update(counts)
    where = "a `billing serve --workers 2` process" if SERVE else "the app in process"
    write("")
    write(
        f"schemathesis: {OBSERVED.calls} requests, {len(OBSERVED.statuses)} operations, {where}, "
        f"{time.monotonic() - OBSERVED.started:.1f} s, max_examples={MAX_EXAMPLES}; by status: "
        + ", ".join(f"{status}: {n}" for status, n in sorted(total.items()))
    )
    if VERBOSE:
        write("  (204 and 405: Schemathesis' probes with methods the operation does not have)")
        for label in sorted(OBSERVED.statuses):
            counts = " ".join(f"{s}:{n}" for s, n in sorted(OBSERVED.statuses[label].items()))
            codes = " ".join(f"{c}:{n}" for c, n in OBSERVED.errors[label].most_common(4))
            write(f"  {label:48} {OBSERVED.seconds[label]:5.1f} s  {counts:40} {codes}")
        by_status = defaultdict(list)
        for label, status in sorted(OBSERVED.undocumented()):
            by_status[status].append(label)
        write("schemathesis: statuses answered that the served schema does not document (SCHEMA-2):")
        for status, labels in sorted(by_status.items()):
            write(f"  {status}: {', '.join(labels)}")


# --------------------------------------------------------------------------------------------------------------
# The service under test, on a database of its own
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Fuzz:
    headers: dict[str, str]
    app: Any = None  # in process
    base_url: str | None = None  # SCHEMATHESIS_SERVE=1: a `billing serve` process


async def seed(client: AsyncTestClient, headers: dict[str, str]) -> None:
    async def call(method: str, path: str, expected: int = 201, **kwargs) -> dict:
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == expected, (method, path, response.text)
        return response.json()

    def hold(tokens: int) -> dict:
        return {"account_id": "acme", "model": "fuzzco/m1", "input_tokens": tokens, "max_output_tokens": tokens}

    await call("POST", "/accounts", json={"id": "acme", "name": "Acme", "overdraft_limit": "100"})
    await call("POST", "/accounts", json={"id": "broke", "name": "Broke"})
    await call("POST", "/accounts/acme/grants", json={"amount": "1000000", "description": "seed"})
    await call("POST", "/catalog/providers", json={"id": "fuzzco", "name": "Fuzz Co"})
    await call("PUT", "/catalog/models", 200, json={"provider": "fuzzco", "name": "m1", "type": "language"})
    await call("POST", "/catalog/prices", json={"model": "fuzzco/m1", "input": "1", "output": "2"})
    held = await call("POST", "/authorizations", json=hold(10))
    released = await call("POST", "/authorizations", json=hold(1))
    await call("POST", f"/authorizations/{released['id']}/release", 200)
    event = {
        "event_id": "seed-1",
        "account_id": "acme",
        "model": "openai/gpt-4o",
        "input_tokens": 9,
        "output_tokens": 9,
    }
    await call("POST", "/usage", json=event)
    spare = await call("POST", "/api-keys", json={"name": "spare", "scopes": ["ledger:read"]})
    SEEDS.update(
        account_id=["acme", "broke"],
        model=["openai/gpt-4o", "fuzzco/m1", "gpt-4o", "openai/text-embedding-3-small"],
        model_id=["openai/gpt-4o", "fuzzco/m1", "openai/text-embedding-3-small"],
        provider=["fuzzco", "openai"],
        provider_id=["fuzzco"],
        target=["fuzzco", "fuzzco/m1"],
        authorization_id=[held["id"], released["id"]],
        event_id=["seed-1"],
        key_id=[spare["id"]],
    )


def settings_for(url: str) -> Settings:
    return replace(
        Settings.from_env({}),
        database_url=url,
        openrouter_base_url=DEAD_URL,
        ollama_base_url=DEAD_URL,
        litellm_prices=None,
        sync_timeout_seconds=1,
        sync_retries=0,
    )


def small_catalog() -> dict[str, Any]:
    """Every provider of the default catalog with a sample of its models: the ones the seeds name, some of
    each provider, and some with long-context tiers, several price versions, no price, or embeddings. Every catalog
    write refreshes the catalog, so with all 1,800 models the run would spend its time reloading it; the loaders
    (POST /catalog/import and /catalog/sync), which bring in the rest, run on a database of their own."""
    catalog = read_catalog()
    models = catalog["models"]
    named = {"openai/gpt-4o", "openai/text-embedding-3-small"}
    kinds = [
        lambda m: any(p.get("tiers") for p in m["prices"]),
        lambda m: len(m["prices"]) > 1,
        lambda m: not m["prices"] or all(p.get("input") is None for p in m["prices"]),
        lambda m: m["type"] == "embedding",
    ]
    keep = {m["id"] for m in models if m["id"] in named}
    for kind in kinds:
        keep |= {m["id"] for m in [m for m in models if kind(m)][:4]}
    for provider in catalog["providers"]:
        keep |= {m["id"] for m in [m for m in models if m["provider"] == provider["id"]][:3]}
    return {**catalog, "models": [m for m in models if m["id"] in keep]}


async def prepare(empty_database) -> tuple[Settings, dict[str, str], str]:
    """A migrated database with the sample catalog and an admin key: settings, key headers, the key's id."""
    url = await empty_database()
    await migrate(url)
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await import_catalog(conn, small_catalog(), at=datetime.now(UTC), label="sample")
            admin = await key_service.create(
                conn, KeyCreate(name="fuzz admin", scopes=["admin"]), actor="test", now=datetime.now(UTC)
            )
    finally:
        await engine.dispose()
    return settings_for(url), {"X-API-Key": admin.key}, admin.id


@contextlib.asynccontextmanager
async def service(settings: Settings, headers: dict[str, str]) -> AsyncIterator[Fuzz]:
    if SERVE:
        process, base_url = serve(settings)
        try:
            yield Fuzz(headers=headers, base_url=base_url)
        finally:
            stop(process)
    else:
        try:
            yield Fuzz(headers=headers, app=create_app(settings))
        finally:
            # Schemathesis started the apps' lifespans on first use: end them while their databases exist.
            from schemathesis.python import asgi

            asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def summary(request) -> Iterator[None]:
    """Prints what the run saw, once the services are gone."""
    OBSERVED.started = time.monotonic()
    yield
    report(request.config)


@pytest.fixture(scope="module")
async def fuzz(summary, empty_database) -> AsyncIterator[Fuzz]:
    settings, headers, admin_id = await prepare(empty_database)
    async with AsyncTestClient(create_app(settings)) as client:
        await seed(client, headers)
    SEEDS["admin_key_id"] = [admin_id]
    happy_bodies.cache_clear()  # built from SEEDS
    async with service(settings, headers) as fuzz:
        yield fuzz


@pytest.fixture(scope="module")
async def loaders(summary, empty_database) -> AsyncIterator[Fuzz]:
    """A service of its own for the catalog loaders: they bring in the whole catalog (and OpenRouter's), and every
    catalog write after them would reload it all."""
    settings, headers, _ = await prepare(empty_database)
    async with service(settings, headers) as fuzz:
        yield fuzz


def serve(settings: Settings) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_PRICES"} | {
        "DATABASE_URL": settings.database_url,
        "OPENROUTER_BASE_URL": DEAD_URL,
        "OLLAMA_BASE_URL": DEAD_URL,
        "BILLING_SYNC_TIMEOUT_SECONDS": "1",
        "BILLING_SYNC_RETRIES": "0",
        "BILLING_LOG_LEVEL": "WARNING",
    }
    command = [BILLING, "serve", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"billing serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(process)
    raise AssertionError("billing serve never became ready")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------------------------------------------
# The run over every operation
# --------------------------------------------------------------------------------------------------------------


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
def test_every_operation(case, fuzz: Fuzz) -> None:
    # Copies: the transport adds its own headers to the dict it is given.
    started = time.monotonic()
    if fuzz.app is not None:
        response = case.call(app=fuzz.app, headers=dict(fuzz.headers))
    else:
        response = case.call(base_url=fuzz.base_url, headers=dict(fuzz.headers), timeout=30)
    OBSERVED.record(case, response, time.monotonic() - started)
    case.validate_response(response, checks=CHECKS, headers=dict(fuzz.headers))


# --------------------------------------------------------------------------------------------------------------
# The bugs found, one strict xfail each: when a fix lands the test passes, fails as XPASS(strict), and its marker
# (and, for an app bug, its case in `avoid_known_bugs`) goes.
# --------------------------------------------------------------------------------------------------------------


def xfail(bug: str, reason: str):
    return pytest.mark.xfail(strict=True, reason=f"{bug}: {reason}")


async def test_patching_a_provider_with_nothing_to_change(client, admin, scratch):
    for body in ({}, {"name": None, "enabled": None}):
        response = await client.patch(f"/catalog/providers/{scratch}", json=body, headers=admin)
        assert response.status_code in (200, 400), response.text


BEYOND_9999 = "9999-12-31T23:59:59-01:00"  # 10000-01-01T00:59:59Z
BEFORE_1 = "0001-01-01T00:00:00+01:00"  # 0000-12-31T23:00:00Z
EVENT = {"account_id": "acme", "model": "openai/gpt-4o", "input_tokens": 1}


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        pytest.param("GET", "/usage", {"from": BEYOND_9999}, None, id="GET /usage from"),
        pytest.param("GET", "/usage", {"to": BEFORE_1}, None, id="GET /usage to"),
        pytest.param("GET", "/accounts/acme/ledger", {"from": BEYOND_9999}, None, id="GET ledger from"),
        pytest.param("GET", "/accounts/acme/ledger", {"to": BEFORE_1, "format": "csv"}, None, id="GET ledger csv"),
        pytest.param("GET", "/reports/usage", {"from": BEFORE_1}, None, id="GET /reports/usage from"),
        pytest.param("GET", "/reports/usage", {"to": BEYOND_9999}, None, id="GET /reports/usage to"),
        pytest.param("GET", "/reports/trial-balance", {"to": BEYOND_9999}, None, id="GET trial-balance to"),
        pytest.param("POST", "/usage", None, {**EVENT, "event_id": "e", "occurred_at": BEFORE_1}, id="POST /usage"),
        pytest.param(
            "POST",
            "/usage/batch",
            None,
            {"events": [{**EVENT, "event_id": "b", "occurred_at": BEFORE_1}]},
            id="POST /usage/batch",
        ),
        pytest.param("POST", "/accounts/acme/grants", None, {"amount": "1", "expires_at": BEYOND_9999}, id="grant"),
        pytest.param(
            "POST", "/api-keys", None, {"name": "k", "scopes": ["admin"], "expires_at": BEYOND_9999}, id="key"
        ),
        pytest.param("POST", "/catalog/prices", None, {"input": "1", "effective_from": BEYOND_9999}, id="price"),
        pytest.param(
            "PUT",
            "/catalog/margins",
            None,
            {"scope": "model", "margin": "2", "effective_from": BEYOND_9999},
            id="margin",
        ),
    ],
)
async def test_times_beyond_the_calendar_are_rejected(client, admin, scratch, method, path, params, body):
    await client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)
    model = f"{scratch}/m"
    response = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "m", "type": "language"}, headers=admin
    )
    assert response.status_code == 200, response.text
    if path in ("/catalog/prices", "/catalog/margins"):
        body = {**body, "model" if path == "/catalog/prices" else "target": model}
    response = await client.request(method, path, params=params, json=body, headers=admin)
    if path == "/usage/batch":  # a bad event fails alone, inside a 200
        (result,) = response.json()["results"]
        assert (result["status"], result["error"]["code"], result["error"]["param"]) == (
            "error",
            "validation_error",
            "occurred_at",
        )
        return
    assert_error(response, 400, "validation_error")


async def test_metrics_name_their_charset_once(client):
    response = await client.get("/metrics")
    assert response.headers["content-type"].count("charset") == 1, response.headers["content-type"]


def test_documented_400s_are_the_error_envelope():
    wrong = [
        f"{m.upper()} {p}" for p, m, op in operations(SERVED) if litestar_default_400(op["responses"].get("400", {}))
    ]
    assert not wrong


def test_documented_errors_are_the_error_envelope():
    components = SERVED["components"]

    def resolve(item: dict) -> dict:
        kind, name = item["$ref"].split("/")[-2:] if "$ref" in item else (None, None)
        return components[kind][name] if kind else item

    wrong = []
    for path, method, op in operations(SERVED):
        for status, response in op["responses"].items():
            schema = resolve(response).get("content", {}).get("application/json", {}).get("schema", {})
            if int(status) >= 400 and resolve(schema) != components["schemas"]["Error"]:
                wrong.append(f"{method.upper()} {path}: {status}")
    assert not wrong
    error = components["schemas"]["Error"]
    assert (error["required"], error["additionalProperties"]) == (["error"], False)
    assert error["properties"]["error"]["required"] == ["message", "type", "code"]


def test_error_statuses_are_documented():
    missing = []
    for path, method, op in operations(SERVED):
        documented = set(op["responses"])
        expected = {"401", "403"} if op.get("security") else set()
        if "{" in path:
            expected.add("404")
        if method == "post" and path in REPLAYING:
            expected.add("200")
        missing += [f"{method.upper()} {path}: {status}" for status in sorted(expected - documented)]
    assert not missing


def test_catalog_rates_are_documented_as_numbers():
    model = SERVED["components"]["schemas"]["CatalogModel"]["properties"]
    assert {name: model[name] for name in RATE_FIELDS} == {
        name: {"oneOf": [{"type": "number"}, {"type": "null"}]} for name in RATE_FIELDS
    }


def test_the_schema_is_the_same_on_every_start():
    assert SERVED == SERVED_AGAIN


def test_every_media_type_is_documented():
    paths = SERVED["paths"]
    media = {
        path: set(paths[path]["get"]["responses"]["200"].get("content", {})) for path in [*CSV_OPERATIONS, "/metrics"]
    }
    assert media == {**{path: {"application/json", "text/csv"} for path in CSV_OPERATIONS}, "/metrics": {"text/plain"}}


def test_closed_request_bodies_say_so():
    schemas = SERVED["components"]["schemas"]
    assert [name for name in CLOSED_BODIES if schemas[name].get("additionalProperties") is not False] == []
