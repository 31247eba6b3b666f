"""Security properties: tenant isolation on every route, secrets never stored or logged, revocation at once,
an audit trail of key changes, and SQL that hostile input cannot break."""

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from app.cli import main
from app.observability import JsonFormatter
from app.openapi import UI_ASSETS
from app.pagination import encode_cursor
from tests.helpers import assert_error

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its

NON_ADMIN_SCOPES = ("catalog:read", "usage:write", "ledger:read")
A, B = "tenant-a", "victim-b"  # B's id is unusual enough that finding it in an answer means a leak
MODEL = "openai/gpt-4o"


async def cli(database: str, *args: str) -> str:
    """`billing ...` in-process, in a thread of its own (each command runs its own event loop)."""
    outcome = await asyncio.to_thread(CliRunner().invoke, main, list(args), env={"DATABASE_URL": database})
    assert outcome.exit_code == 0, (outcome.stdout, outcome.stderr, outcome.exception)
    return outcome.stdout


@dataclass
class World:
    """Two tenants with credits, usage and a hold each, and A's key with every non-admin scope."""

    own: dict[str, str]  # headers of A's key
    b_hold: str
    a_hold: str
    b_key_id: str


@pytest.fixture
async def world(client, admin, make_key) -> World:
    holds = {}
    for account in (A, B):
        assert (await client.post("/accounts", json={"id": account, "name": account}, headers=admin)).status_code == 201
        response = await client.post(f"/accounts/{account}/grants", json={"amount": "100"}, headers=admin)
        assert response.status_code == 201, response.text
        event = {"event_id": f"{account}-e1", "account_id": account, "model": MODEL, "input_tokens": 1000}
        assert (await client.post("/usage", json=event, headers=admin)).status_code == 201
        call = {"account_id": account, "model": MODEL, "input_tokens": 10, "max_output_tokens": 10}
        response = await client.post("/authorizations", json=call, headers=admin)
        assert response.status_code == 201, response.text
        holds[account] = response.json()["id"]
    b_key = await client.post(
        "/api-keys", json={"name": "b", "scopes": ["usage:write"], "account_id": B}, headers=admin
    )
    assert b_key.status_code == 201, b_key.text
    own = {"X-API-Key": await make_key(*NON_ADMIN_SCOPES, account_id=A)}
    return World(own=own, b_hold=holds[B], a_hold=holds[A], b_key_id=b_key.json()["id"])


async def snapshot_of(engine, account: str) -> list[str]:
    """Every row that belongs to `account`, in every table that names an account, as text."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND column_name = 'account_id' ORDER BY 1"
                )
            )
        ).scalars()
        rows = []
        for table in list(tables):
            query = text(f'SELECT t::text FROM "{table}" t WHERE account_id = :account ORDER BY 1')  # noqa: S608
            rows += [f"{table}: {row}" for row in (await conn.execute(query, {"account": account})).scalars()]
        rows += [
            f"accounts: {row}"
            for row in (
                await conn.execute(text("SELECT t::text FROM accounts t WHERE id = :a"), {"a": account})
            ).scalars()
        ]
        rows += [
            f"idempotency_keys: {row}"
            for row in (
                await conn.execute(
                    text("SELECT t::text FROM idempotency_keys t WHERE scope LIKE :scope ORDER BY 1"),
                    {"scope": f"%:{account}"},
                )
            ).scalars()
        ]
    return rows


# Tenant isolation: every route, classified

PUBLIC = "public"  # no key needed, no account data
CATALOG = "catalog"  # account-free data: answers, and never anything of B's
ADMIN = "admin"  # refused to any non-admin key: 403 insufficient_scope
ACCOUNT = "account"  # names an account (path, query or body): B looks like no account at all, 404 account_not_found
HOLD = "hold"  # names a hold: B's hold looks like no hold at all, 404 authorization_not_found
OWN = "own"  # names no account: answers with A's data only

Build = Callable[[World], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Probe:
    kind: str
    build: Build  # the request (url, httpx kwargs) that tries to reach B
    check: Callable[[Any, World], None] | None = None  # for OWN: what the answer may contain
    statuses: tuple[int, ...] = (200,)  # for PUBLIC, CATALOG and OWN


def get(url: str, **params) -> Build:
    return lambda w: (url, {"params": params} if params else {})


def body(url: str, payload: dict) -> Build:
    return lambda w: (url, {"json": payload})


def only_a_accounts(response, w: World) -> None:
    assert [account["id"] for account in response.json()["data"]] == [A]


def only_a_usage(response, w: World) -> None:
    assert [(e["account_id"], e["event_id"]) for e in response.json()["data"]] == [(A, f"{A}-e1")]


def only_a_report(response, w: World) -> None:
    report = response.json()
    assert [row["account"] for row in report["rows"]] == [A]
    assert report["totals"]["events"] == 1


def only_a_trial_balance(response, w: World) -> None:
    assert [row["account_id"] for row in response.json()["accounts"]] == [A]


EVENT_OF_B = {"event_id": "x-1", "account_id": B, "model": MODEL, "input_tokens": 10}
CALL_OF_B = {"account_id": B, "model": MODEL, "input_tokens": 10, "max_output_tokens": 10}

# Each route with the requests that try to reach B through it (routes with an optional account filter: with the
# filter naming B, and without it).
ROUTES: dict[tuple[str, str], Probe | tuple[Probe, ...]] = {
    ("GET", "/health"): Probe(PUBLIC, get("/health")),
    ("GET", "/ready"): Probe(PUBLIC, get("/ready")),
    ("GET", "/metrics"): Probe(PUBLIC, get("/metrics")),
    ("GET", "/schema"): Probe(PUBLIC, get("/schema")),
    ("GET", "/schema/swagger"): Probe(PUBLIC, get("/schema/swagger")),
    ("GET", "/schema/oauth2-redirect.html"): Probe(PUBLIC, get("/schema/oauth2-redirect.html")),
    ("GET", f"{UI_ASSETS}/{{file_path:path}}"): Probe(PUBLIC, get(f"{UI_ASSETS}/swagger-ui.css")),
    ("HEAD", f"{UI_ASSETS}/{{file_path:path}}"): Probe(PUBLIC, get(f"{UI_ASSETS}/swagger-ui.css")),
    ("GET", "/schema/openapi.json"): Probe(PUBLIC, get("/schema/openapi.json")),
    ("GET", "/schema/{path:str}"): Probe(PUBLIC, get("/schema/elements"), statuses=(200, 404)),
    # Accounts and their books
    ("POST", "/accounts"): Probe(ADMIN, body("/accounts", {"id": B, "name": "taken over"})),
    ("GET", "/accounts"): Probe(OWN, get("/accounts", cursor=encode_cursor("")), only_a_accounts),
    ("GET", "/accounts/{account_id:str}"): Probe(ACCOUNT, get(f"/accounts/{B}")),
    ("PATCH", "/accounts/{account_id:str}"): Probe(ADMIN, body(f"/accounts/{B}", {"low_balance_threshold": "1"})),
    ("GET", "/accounts/{account_id:str}/balance"): Probe(ACCOUNT, get(f"/accounts/{B}/balance")),
    ("GET", "/accounts/{account_id:str}/grants"): Probe(ACCOUNT, get(f"/accounts/{B}/grants")),
    ("GET", "/accounts/{account_id:str}/ledger"): Probe(ACCOUNT, get(f"/accounts/{B}/ledger", format="csv")),
    ("POST", "/accounts/{account_id:str}/grants"): Probe(ADMIN, body(f"/accounts/{B}/grants", {"amount": "1"})),
    ("POST", "/accounts/{account_id:str}/adjustments"): Probe(
        ADMIN, body(f"/accounts/{B}/adjustments", {"amount": "-100", "reason": "x"})
    ),
    ("POST", "/accounts/{account_id:str}/reversals"): Probe(
        ADMIN, body(f"/accounts/{B}/reversals", {"event_id": f"{B}-e1", "reason": "x"})
    ),
    # Spend limits and recurring grants
    ("POST", "/accounts/{account_id:str}/limits"): Probe(
        ADMIN, body(f"/accounts/{B}/limits", {"scope": "account", "amount": "1", "period": "day"})
    ),
    ("GET", "/accounts/{account_id:str}/limits"): Probe(ACCOUNT, get(f"/accounts/{B}/limits")),
    ("DELETE", "/accounts/{account_id:str}/limits/{limit_id:str}"): Probe(
        ADMIN, lambda w: (f"/accounts/{B}/limits/lim_x", {})
    ),
    ("POST", "/accounts/{account_id:str}/grant-schedules"): Probe(
        ADMIN, body(f"/accounts/{B}/grant-schedules", {"amount": "1", "period": "day"})
    ),
    ("GET", "/accounts/{account_id:str}/grant-schedules"): Probe(ACCOUNT, get(f"/accounts/{B}/grant-schedules")),
    ("GET", "/accounts/{account_id:str}/grant-schedules/{schedule_id:str}"): Probe(
        ACCOUNT, get(f"/accounts/{B}/grant-schedules/gs_x")
    ),
    ("DELETE", "/accounts/{account_id:str}/grant-schedules/{schedule_id:str}"): Probe(
        ADMIN, lambda w: (f"/accounts/{B}/grant-schedules/gs_x", {})
    ),
    # The dashboard signs in with a session cookie of its own, never an API-key header: without one every
    # page sends the caller to sign in, and forms without their token are refused (tests/test_dashboard.py
    # signs in as an account-bound key and is kept to its account).
    ("GET", "/dashboard"): Probe(PUBLIC, get("/dashboard")),
    ("GET", "/dashboard/sign-in"): Probe(PUBLIC, get("/dashboard/sign-in")),
    ("POST", "/dashboard/sign-in"): Probe(
        PUBLIC, lambda w: ("/dashboard/sign-in", {"data": {"key": "x"}}), statuses=(403,)
    ),
    ("POST", "/dashboard/sign-out"): Probe(PUBLIC, lambda w: ("/dashboard/sign-out", {"data": {}}), statuses=(403,)),
    ("GET", "/dashboard/accounts/{account_id:str}"): Probe(PUBLIC, get(f"/dashboard/accounts/{B}")),
    ("GET", "/dashboard/accounts/{account_id:str}/ledger.csv"): Probe(
        PUBLIC, get(f"/dashboard/accounts/{B}/ledger.csv")
    ),
    ("GET", "/dashboard/catalog"): Probe(PUBLIC, get("/dashboard/catalog")),
    ("GET", "/dashboard/reports"): Probe(PUBLIC, get("/dashboard/reports", group_by="account")),
    ("GET", "/dashboard/reports.csv"): Probe(PUBLIC, get("/dashboard/reports.csv", group_by="account")),
    ("GET", "/dashboard/unrated"): Probe(PUBLIC, get("/dashboard/unrated")),
    ("GET", "/dashboard/webhooks"): Probe(PUBLIC, get("/dashboard/webhooks")),
    # Usage, holds and estimates
    ("POST", "/usage"): Probe(ACCOUNT, body("/usage", EVENT_OF_B)),
    ("POST", "/usage/batch"): Probe(ACCOUNT, body("/usage/batch", {"events": [EVENT_OF_B]})),
    ("GET", "/usage"): (Probe(ACCOUNT, get("/usage", account_id=B)), Probe(OWN, get("/usage"), only_a_usage)),
    ("POST", "/authorizations"): Probe(ACCOUNT, body("/authorizations", CALL_OF_B)),
    ("GET", "/authorizations/{authorization_id:str}"): Probe(HOLD, lambda w: (f"/authorizations/{w.b_hold}", {})),
    ("POST", "/authorizations/{authorization_id:str}/release"): Probe(
        HOLD, lambda w: (f"/authorizations/{w.b_hold}/release", {})
    ),
    ("POST", "/estimate"): Probe(ACCOUNT, body("/estimate", CALL_OF_B)),
    # Reports
    ("GET", "/reports/usage"): (
        Probe(ACCOUNT, get("/reports/usage", account_id=B)),
        Probe(OWN, get("/reports/usage", group_by="account"), only_a_report),
    ),
    ("GET", "/reports/trial-balance"): (
        Probe(ACCOUNT, get("/reports/trial-balance", account_id=B)),
        Probe(OWN, get("/reports/trial-balance"), only_a_trial_balance),
    ),
    # API keys
    ("POST", "/api-keys"): Probe(ADMIN, body("/api-keys", {"name": "x", "scopes": ["ledger:read"], "account_id": B})),
    ("GET", "/api-keys"): Probe(ADMIN, get("/api-keys", account_id=B)),
    ("DELETE", "/api-keys/{key_id:str}"): Probe(ADMIN, lambda w: (f"/api-keys/{w.b_key_id}", {})),
    ("GET", "/api-keys/audit"): Probe(ADMIN, get("/api-keys/audit")),
    # Webhooks: global (every account's events), admin only
    ("POST", "/webhooks"): Probe(ADMIN, body("/webhooks", {"url": "https://evil.example/x", "events": ["*"]})),
    ("GET", "/webhooks"): Probe(ADMIN, get("/webhooks")),
    ("GET", "/webhooks/{endpoint_id:str}"): Probe(ADMIN, get("/webhooks/whep_x")),
    ("PATCH", "/webhooks/{endpoint_id:str}"): Probe(ADMIN, body("/webhooks/whep_x", {"disabled": True})),
    ("DELETE", "/webhooks/{endpoint_id:str}"): Probe(ADMIN, lambda w: ("/webhooks/whep_x", {})),
    ("GET", "/webhooks/{endpoint_id:str}/deliveries"): Probe(ADMIN, get("/webhooks/whep_x/deliveries")),
    ("POST", "/webhooks/{endpoint_id:str}/deliveries/{delivery_id:int}/retry"): Probe(
        ADMIN, lambda w: ("/webhooks/whep_x/deliveries/1/retry", {})
    ),
    # The catalog: no account data in it
    ("GET", "/models"): Probe(CATALOG, get("/models", provider="openai")),
    ("GET", "/models/{model_id:path}"): Probe(CATALOG, get(f"/models/{MODEL}")),
    ("GET", "/models/providers"): Probe(CATALOG, get("/models/providers")),
    ("GET", "/models/resolve"): Probe(CATALOG, get("/models/resolve", model="gpt-4o-2024-08-06")),
    ("GET", "/catalog/aliases"): Probe(CATALOG, get("/catalog/aliases", model=MODEL)),
    ("POST", "/catalog/aliases"): Probe(ADMIN, body("/catalog/aliases", {"alias": "evil-alias", "model": MODEL})),
    ("DELETE", "/catalog/aliases/{alias:path}"): Probe(ADMIN, lambda w: ("/catalog/aliases/evil-alias", {})),
    ("GET", "/models/embedding"): Probe(CATALOG, get("/models/embedding")),
    ("GET", "/models/embedding/{model_id:path}"): Probe(
        CATALOG, get("/models/embedding/openai/text-embedding-3-small")
    ),
    ("GET", "/v1/models"): Probe(CATALOG, get("/v1/models")),
    ("GET", "/v1/models/{model_id:path}"): Probe(CATALOG, get(f"/v1/models/{MODEL}")),
    ("GET", "/api/models/openrouter"): Probe(CATALOG, get("/api/models/openrouter")),
    ("GET", "/api/models/openrouter/embeddings"): Probe(CATALOG, get("/api/models/openrouter/embeddings")),
    ("GET", "/api/models/ollama"): Probe(CATALOG, get("/api/models/ollama")),
    ("GET", "/catalog/prices"): Probe(CATALOG, get("/catalog/prices", model=MODEL)),
    ("GET", "/catalog/margins"): Probe(CATALOG, get("/catalog/margins")),
    ("POST", "/catalog/providers"): Probe(ADMIN, body("/catalog/providers", {"id": "evil", "name": "Evil"})),
    ("PATCH", "/catalog/providers/{provider_id:str}"): Probe(
        ADMIN, body("/catalog/providers/openai", {"enabled": False})
    ),
    ("PUT", "/catalog/models"): Probe(
        ADMIN, body("/catalog/models", {"provider": "openai", "name": "x", "type": "language"})
    ),
    ("POST", "/catalog/prices"): Probe(ADMIN, body("/catalog/prices", {"model": MODEL, "input": "0", "output": "0"})),
    ("PUT", "/catalog/margins"): Probe(
        ADMIN, body("/catalog/margins", {"scope": "model", "target": MODEL, "margin": "0.1"})
    ),
    ("POST", "/catalog/import"): Probe(ADMIN, body("/catalog/import", {})),
    ("POST", "/catalog/sync"): Probe(ADMIN, body("/catalog/sync", {})),
}


def app_routes(app) -> set[tuple[str, str]]:
    """Every (method, path) the app serves; OPTIONS answers are Litestar's own, for CORS preflights."""
    return {
        (method, route.path)
        for route in app.routes
        for handler in route.route_handlers
        for method in handler.http_methods
        if method != "OPTIONS"
    }


async def test_every_route_is_classified(client):
    """A route added without a row in ROUTES fails here: decide how it keeps tenants apart, then add it."""
    routes = app_routes(client.app)
    assert routes - ROUTES.keys() == set(), "routes without a tenant-isolation expectation"
    assert ROUTES.keys() - routes == set(), "expectations for routes the app no longer has"
    # The OpenAPI document lists the same operations (those it documents).
    schema = (await client.get("/schema/openapi.json")).json()
    documented = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    normal = {(method, _openapi_path(path)) for method, path in routes}
    assert documented <= normal, documented - normal


def _openapi_path(path: str) -> str:
    """`/accounts/{account_id:str}` as OpenAPI writes it: `/accounts/{account_id}`."""
    parts = []
    for part in path.split("/"):
        parts.append(part.split(":")[0] + "}" if part.startswith("{") and ":" in part else part)
    return "/".join(parts)


GHOST_ACCOUNT, GHOST_HOLD = "ghost-account", "auth_000000000000000000000000"


def as_unknown(request: tuple[str, dict[str, Any]], w: World) -> tuple[str, dict[str, Any]]:
    """The same request naming an account and a hold that do not exist."""
    encoded = json.dumps(request).replace(B, GHOST_ACCOUNT).replace(w.b_hold, GHOST_HOLD)
    url, kwargs = json.loads(encoded)
    return url, kwargs


def scrubbed(response, w: World) -> str:
    return response.text.replace(B, "?").replace(w.b_hold, "?").replace(GHOST_ACCOUNT, "?").replace(GHOST_HOLD, "?")


async def test_an_account_bound_key_never_reaches_another_account(client, world, conn_engine):
    """Every route, with A's key (every scope but admin) naming B: refused exactly as if B (or its hold) did not
    exist, or for lack of the admin scope; routes naming no account answer with A's data only; B is untouched."""
    before = await snapshot_of(conn_engine, B)
    assert before, "B should have books to protect"
    problems = []
    probes = [
        (route, probe) for route, entry in ROUTES.items() for probe in (entry if isinstance(entry, tuple) else (entry,))
    ]
    for (method, path), probe in probes:
        url, kwargs = probe.build(world)
        headers = {} if probe.kind == PUBLIC else world.own
        response = await client.request(method, url, headers=headers, **kwargs)
        try:
            if probe.kind == ADMIN:
                assert_error(response, 403, "insufficient_scope")
            elif probe.kind in (ACCOUNT, HOLD):
                if path == "/usage/batch":
                    assert response.status_code == 200, response.text
                    (result,) = response.json()["results"]
                    assert (result["status"], result.get("error", {}).get("code")) == ("error", "account_not_found"), (
                        result
                    )
                elif probe.kind == ACCOUNT:
                    assert_error(response, 404, "account_not_found")
                else:
                    assert_error(response, 404, "authorization_not_found")
                # Indistinguishable from naming an account (or hold) that does not exist.
                ghost_url, ghost_kwargs = as_unknown((url, kwargs), world)
                ghost = await client.request(method, ghost_url, headers=headers, **ghost_kwargs)
                assert (ghost.status_code, scrubbed(ghost, world)) == (response.status_code, scrubbed(response, world))
            else:
                assert response.status_code in probe.statuses, response.text
                if probe.check:
                    probe.check(response, world)
                assert B not in response.text and world.b_hold not in response.text, "B's data in the answer"
        except Exception as exc:  # every route is tried; all that fail are reported together
            problems.append(f"{method} {path} ({url}): {exc!r}"[:1000])
    assert problems == [], "\n".join(problems)
    assert await snapshot_of(conn_engine, B) == before, "B's books changed"


async def test_another_accounts_hold_is_no_hold_at_all(client, world, conn_engine):
    """B's hold: not readable, not releasable, not settleable from A, answered exactly like a hold that does not
    exist; and A's own hold still works."""
    before = await snapshot_of(conn_engine, B)
    own = world.own
    for target in (world.b_hold, "auth_does_not_exist"):
        read = assert_error(await client.get(f"/authorizations/{target}", headers=own), 404, "authorization_not_found")
        release = await client.post(f"/authorizations/{target}/release", headers=own)
        assert_error(release, 404, "authorization_not_found")
        settle = {"event_id": f"settle-{target}", "model": MODEL, "input_tokens": 5, "authorization_id": target}
        error = assert_error(await client.post("/usage", json=settle, headers=own), 404, "authorization_not_found")
        assert error.get("param") == "authorization_id"
        assert read["message"].replace(target, "?") == "Authorization '?' not found"
        batch = await client.post("/usage/batch", json={"events": [settle | {"event_id": f"b-{target}"}]}, headers=own)
        assert batch.json()["results"][0]["error"]["code"] == "authorization_not_found", batch.text
        # Naming B as well does not help.
        assert_error(
            await client.post("/usage", json=settle | {"account_id": B}, headers=own), 404, "account_not_found"
        )
    assert (await client.get(f"/authorizations/{world.a_hold}", headers=own)).json()["status"] == "pending"
    assert await snapshot_of(conn_engine, B) == before
    # Nothing was recorded for A either: every one of those events failed.
    events = (await client.get("/usage", headers=own)).json()["data"]
    assert [e["event_id"] for e in events] == [f"{A}-e1"]


async def test_lists_without_an_account_filter_show_only_the_keys_account(client, world):
    own = world.own
    assert [a["id"] for a in (await client.get("/accounts", headers=own)).json()["data"]] == [A]
    # Paging past A (a cursor is the client's to forge) still shows no one else.
    after_a = await client.get("/accounts", params={"cursor": encode_cursor(A)}, headers=own)
    assert after_a.status_code == 200 and after_a.json()["data"] == [], after_a.text
    usage = (await client.get("/usage", params={"limit": 1000}, headers=own)).json()["data"]
    assert {e["account_id"] for e in usage} == {A}
    for group_by in ("account", "model", "provider", "day", "month", "account,model"):
        report = await client.get("/reports/usage", params={"group_by": group_by}, headers=own)
        assert report.status_code == 200, report.text
        assert report.json()["totals"]["events"] == 1 and B not in report.text, report.text
        csv = await client.get("/reports/usage", params={"group_by": group_by, "format": "csv"}, headers=own)
        assert csv.status_code == 200 and B not in csv.text, csv.text
    trial = await client.get("/reports/trial-balance", headers=own)
    assert [row["account_id"] for row in trial.json()["accounts"]] == [A]
    csv = await client.get("/reports/trial-balance", params={"format": "csv"}, headers=own)
    assert csv.status_code == 200 and B not in csv.text
    # An estimate for the key's own account only.
    estimate = await client.post("/estimate", json={"model": MODEL, "input_tokens": 10}, headers=own)
    assert estimate.json()["account"]["account_id"] == A, estimate.text


# Secrets


async def create_and_use_keys(client, admin, database) -> list[str]:
    """Keys made every way there is, used every way there is, one of them revoked; returns their secrets."""
    await client.post("/accounts", json={"id": A, "name": A}, headers=admin)
    secrets = []
    for scopes, account in ((["admin"], None), (["ledger:read", "usage:write"], A)):
        response = await client.post(
            "/api-keys", json={"name": "api", "scopes": scopes, "account_id": account}, headers=admin
        )
        assert response.status_code == 201, response.text
        secrets.append(response.json()["key"])
    printed = await cli(database, "keys", "create", "--name", "cli", "--scope", "ledger:read", "--account", A)
    secrets.append(printed.strip().splitlines()[-1])
    for secret in secrets:
        for headers in ({"X-API-Key": secret}, {"Authorization": f"Bearer {secret}"}):
            assert (await client.get(f"/accounts/{A}", headers=headers)).status_code == 200
        # Wrong secrets with a real key id, and failing requests while authenticated.
        forged = secret[:16] + secret[16:][::-1]
        assert (await client.get("/accounts", headers={"X-API-Key": forged})).status_code == 401
        assert (await client.get("/accounts", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
        assert (await client.get("/accounts/nobody", headers={"X-API-Key": secret})).status_code == 404
        assert (await client.post("/usage", json={"bad": 1}, headers={"X-API-Key": secret})).status_code in (400, 403)
    # Revoked: through the API and through the CLI, then used again.
    assert (await client.delete(f"/api-keys/{secrets[1][4:16]}", headers=admin)).status_code == 200
    await cli(database, "keys", "revoke", secrets[2][4:16])
    for secret in secrets[1:]:
        for headers in ({"X-API-Key": secret}, {"Authorization": f"Bearer {secret}"}):
            assert (await client.get(f"/accounts/{A}", headers=headers)).status_code == 401
    return secrets


def leaks(haystack: str, secrets: list[str]) -> list[str]:
    """The secrets (whole, or the part after the public `cmk_<id>` prefix) found in `haystack`."""
    return [secret[:16] + "..." for secret in secrets if secret in haystack or secret[16:] in haystack]


async def test_no_table_holds_a_key_in_plaintext(client, admin, database, conn_engine):
    secrets = await create_and_use_keys(client, admin, database)
    await client.app.state.last_used.flush(conn_engine)  # last-use times are written too
    async with conn_engine.connect() as conn:
        tables = (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        dump = []
        for table in list(tables):
            dump += (await conn.execute(text(f'SELECT t::text FROM "{table}" t'))).scalars()  # noqa: S608
    text_dump = "\n".join(dump)
    assert secrets[0][4:16] in text_dump, "the key ids should be there (the dump is real)"
    assert leaks(text_dump, secrets) == []


LOGGERS = ("app", "litestar", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "sqlalchemy.engine",
           "sqlalchemy.pool", "asyncpg", "httpx", "httpcore", "alembic")  # fmt: skip


async def test_no_log_record_holds_a_secret(client, admin, database, caplog):
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = await create_and_use_keys(client, admin, database)
    secrets.append(admin["X-API-Key"])
    assert (await client.get("/accounts", params={"cursor": "%%%"}, headers=admin)).status_code == 400
    records = caplog.records
    # Real logging was captured: the SQL the service ran (with its parameters), pool events, client requests.
    assert {"sqlalchemy.engine.Engine", "httpx"} <= {record.name for record in records}, "logging was not captured"
    formatter = JsonFormatter()
    formatted = "\n".join(formatter.format(record) for record in records)
    raw = "\n".join(f"{record.msg!r} {record.args!r} {record.exc_text or ''}" for record in records)
    assert leaks(formatted, secrets) == [] and leaks(raw, secrets) == []
    assert leaks(caplog.text, secrets) == []


async def test_revoked_key_fails_at_once_with_either_header(client, make_key, admin):
    for form in ("X-API-Key", "Authorization"):
        key = await make_key("ledger:read")
        headers = {"X-API-Key": key} if form == "X-API-Key" else {"Authorization": f"Bearer {key}"}
        assert (await client.get("/accounts", headers=headers)).status_code == 200
        assert (await client.delete(f"/api-keys/{key[4:16]}", headers=admin)).status_code == 200
        error = assert_error(await client.get("/accounts", headers=headers), 401, "invalid_api_key")
        assert "revoked" in error["message"]
        # The other header form of the same key, too.
        other = {"Authorization": f"Bearer {key}"} if form == "X-API-Key" else {"X-API-Key": key}
        assert_error(await client.get("/accounts", headers=other), 401, "invalid_api_key")


async def test_key_changes_are_audited_with_their_actor_and_no_secret(client, admin, database):
    admin_id = admin["X-API-Key"][4:16]
    await client.post("/accounts", json={"id": A, "name": A}, headers=admin)
    created = await client.post(
        "/api-keys", json={"name": "gw", "scopes": ["usage:write"], "account_id": A}, headers=admin
    )
    assert created.status_code == 201, created.text
    api_key = created.json()
    printed = await cli(database, "keys", "create", "--name", "ci", "--scope", "ledger:read")
    cli_secret = printed.strip().splitlines()[-1]
    cli_id = cli_secret[4:16]
    assert (await client.delete(f"/api-keys/{cli_id}", headers=admin)).status_code == 200
    await cli(database, "keys", "revoke", api_key["id"])

    response = await client.get("/api-keys/audit", headers=admin)
    assert response.status_code == 200, response.text
    ours = {f"api_key:{api_key['id']}", f"api_key:{cli_id}"}
    entries = [(e["actor"], e["action"], e["target"]) for e in response.json()["data"] if e["target"] in ours]
    assert entries == [
        (f"api_key:{admin_id}", "api_key.created", f"api_key:{api_key['id']}"),
        ("cli", "api_key.created", f"api_key:{cli_id}"),
        (f"api_key:{admin_id}", "api_key.revoked", f"api_key:{cli_id}"),
        ("cli", "api_key.revoked", f"api_key:{api_key['id']}"),
    ]
    details = next(e["details"] for e in response.json()["data"] if e["target"] == f"api_key:{api_key['id']}")
    assert details == {"name": "gw", "scopes": ["usage:write"], "account_id": A}
    assert leaks(response.text, [api_key["key"], cli_secret, admin["X-API-Key"]]) == []
    # Only admins read the audit trail.
    reader = await client.post("/api-keys", json={"name": "r", "scopes": list(NON_ADMIN_SCOPES)}, headers=admin)
    assert_error(
        await client.get("/api-keys/audit", headers={"X-API-Key": reader.json()["key"]}), 403, "insufficient_scope"
    )


# SQL injection and hostile input

HOSTILE = [
    "'",
    '"',
    "\\",
    "'; DROP TABLE accounts; --",
    "acme' OR '1'='1",
    "%' OR 1=1 --",
    "' UNION SELECT secret_hash::text FROM api_keys --",
    "$1",
    "%s",
    "%(id)s",
    ":id",
    "a/../../b",
    "%2F",
    "ünïcødé ✓ \U0001d518 🚀 \u202e",
    "\u0000",
    "acme\u0000",
    "x" * 10_000,
]
ASCII_HOSTILE = [s for s in HOSTILE if s.isascii() and "\x00" not in s]


def hostile_requests(value: str, account: str) -> list[tuple[str, str, dict]]:
    """(method, url, httpx kwargs) carrying `value` in ids, names, metadata, filters and cursors."""
    segment = quote(value, safe="")
    event = {"event_id": value, "account_id": account, "model": MODEL, "input_tokens": 10}
    return [
        ("GET", f"/accounts/{segment}", {}),
        ("GET", f"/accounts/{segment}/balance", {}),
        ("GET", f"/accounts/{segment}/ledger", {"params": {"kind": value, "cursor": value}}),
        ("GET", f"/accounts/{account}/ledger", {"params": {"cursor": value}}),
        ("GET", f"/accounts/{account}/ledger", {"params": {"from": value}}),
        ("GET", "/accounts", {"params": {"cursor": value}}),
        ("POST", "/accounts", {"json": {"id": value, "name": value}}),
        ("POST", "/accounts", {"json": {"name": value}}),
        ("POST", f"/accounts/{segment}/grants", {"json": {"amount": "1"}}),
        ("POST", f"/accounts/{account}/grants", {"json": {"amount": "1", "description": value}}),
        ("POST", f"/accounts/{account}/grants", {"json": {"amount": value}}),
        ("POST", f"/accounts/{account}/adjustments", {"json": {"amount": "1", "reason": value}}),
        ("POST", f"/accounts/{account}/reversals", {"json": {"event_id": value, "reason": value}}),
        ("POST", "/usage", {"json": event}),
        ("POST", "/usage", {"json": event | {"event_id": "ok-1", "metadata": {value: value}}}),
        ("POST", "/usage", {"json": event | {"event_id": "ok-2", "model": value}}),
        ("POST", "/usage", {"json": event | {"event_id": "ok-3", "authorization_id": value}}),
        ("POST", "/usage", {"json": event | {"account_id": value}}),
        ("POST", "/usage/batch", {"json": {"events": [event, event | {"metadata": {"k": value}}]}}),
        ("GET", "/usage", {"params": {"account_id": value, "model": MODEL}}),
        ("GET", "/usage", {"params": {"model": value}}),
        ("GET", "/usage", {"params": {"provider": value, "cursor": value}}),
        ("GET", "/usage", {"params": {"from": value, "to": value}}),
        (
            "POST",
            "/authorizations",
            {"json": {"account_id": value, "model": MODEL, "input_tokens": 1, "max_output_tokens": 1}},
        ),
        (
            "POST",
            "/authorizations",
            {"json": {"account_id": account, "model": value, "input_tokens": 1, "max_output_tokens": 1}},
        ),
        ("GET", f"/authorizations/{segment}", {}),
        ("POST", f"/authorizations/{segment}/release", {}),
        ("POST", "/estimate", {"json": {"model": value, "input_tokens": 1}}),
        ("POST", "/estimate", {"json": {"model": MODEL, "input_tokens": 1, "account_id": value}}),
        ("POST", "/estimate", {"json": {"models": [value, MODEL], "input_tokens": 1}}),
        ("GET", f"/models/{segment}", {}),
        ("GET", f"/models/openai/{segment}", {}),
        ("GET", f"/v1/models/{segment}", {}),
        ("GET", f"/models/embedding/{segment}", {}),
        ("GET", "/models", {"params": {"provider": value, "type": value}}),
        ("GET", "/catalog/prices", {"params": {"model": value}}),
        ("GET", "/reports/usage", {"params": {"group_by": value}}),
        ("GET", "/reports/usage", {"params": {"account_id": value, "from": value}}),
        ("GET", "/reports/trial-balance", {"params": {"account_id": value, "to": value}}),
        ("GET", "/api-keys", {"params": {"account_id": value, "cursor": value}}),
        ("POST", "/api-keys", {"json": {"name": value, "scopes": ["ledger:read"], "account_id": value}}),
        ("POST", "/api-keys", {"json": {"name": value, "scopes": ["ledger:read"]}}),
        ("DELETE", f"/api-keys/{segment}", {}),
        ("GET", "/api-keys/audit", {"params": {"cursor": value}}),
        ("POST", "/catalog/providers", {"json": {"id": value, "name": value}}),
        ("PATCH", f"/catalog/providers/{segment}", {"json": {"name": value}}),
        ("PUT", "/catalog/models", {"json": {"provider": value, "name": value, "type": "language"}}),
        ("POST", "/catalog/prices", {"json": {"model": value, "input": "1", "output": "1"}}),
        ("PUT", "/catalog/margins", {"json": {"scope": "model", "target": value, "margin": "1.1"}}),
    ]


async def test_hostile_input_never_breaks_the_sql(client, admin, conn_engine):
    assert (await client.post("/accounts", json={"id": A, "name": A}, headers=admin)).status_code == 201
    assert (await client.post(f"/accounts/{A}/grants", json={"amount": "10"}, headers=admin)).status_code == 201
    async with conn_engine.connect() as conn:
        tables_before = sorted(
            (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        )
    failures = []
    for value in HOSTILE:
        for method, url, kwargs in hostile_requests(value, A):
            response = await client.request(method, url, headers=admin, **kwargs)
            if response.status_code >= 500:
                failures.append(f"{method} {url[:80]} {json.dumps(kwargs)[:120]} -> {response.status_code}")
    for value in ASCII_HOSTILE:
        for header in ("Idempotency-Key", "X-Request-ID"):
            headers = {**admin, header: value[:200]}
            response = await client.post(f"/accounts/{A}/grants", json={"amount": "1"}, headers=headers)
            if response.status_code >= 500:
                failures.append(f"{header}: {value[:40]!r} -> {response.status_code}")
        response = await client.get("/accounts", headers={"X-API-Key": value})
        if response.status_code != 401:
            failures.append(f"X-API-Key: {value[:40]!r} -> {response.status_code}")
    assert failures == [], "\n".join(failures)
    async with conn_engine.connect() as conn:
        tables_after = sorted(
            (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        )
        accounts = (await conn.execute(text("SELECT id FROM accounts WHERE id = :id"), {"id": A})).scalars().all()
        keys = (await conn.execute(text("SELECT count(*) FROM api_keys"))).scalar()
    assert tables_after == tables_before and accounts == [A] and keys >= 1
    # And the service still works.
    assert (await client.get(f"/accounts/{A}/balance", headers=admin)).status_code == 200
