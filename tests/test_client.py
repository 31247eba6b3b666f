"""The Python client (clients/python) against the real service: the app served by uvicorn on a local
port, over real sockets, with a real local proxy in between where a test needs failures on the wire."""

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import creditmeter
import httpx
import msgspec
import pytest
import uvicorn
from anthropic.types import Message
from creditmeter import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    InsufficientCreditsError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    Retry,
    UnprocessableEntityError,
)
from creditmeter.models import BatchResult, UsageEventIn
from openai.types.chat import ChatCompletion
from openai.types.responses import Response as OpenAIResponse
from sqlalchemy import text

from app.asgi import create_app

# tests/test_usage.py's worked example: gpt-4o at $2.50 (input), $1.25 (cached input) and $10 (output)
# per 1M tokens, margin 1.4, 100 credits per USD:
# (86 x 2.50 + 1920 x 1.25 + 300 x 10) / 1e6 x 1.4 x 100 = 0.786100000 credits.
GPT4O = {"model": "gpt-4o", "input_tokens": 2006, "cached_input_tokens": 1920, "output_tokens": 300}
GPT4O_COST = Decimal("0.786100000")
FAST = Retry(max_retries=4, backoff=0.01, max_backoff=0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app in uvicorn, in a thread of this process, on a port of its own."""

    def __init__(self, settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class Attempt:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return msgspec.json.decode(self.body)


@dataclass
class Proxy:
    """A real HTTP proxy in front of the service that misbehaves as told, attempt by attempt: `fail`
    (503 with Retry-After: 0), `busy` (429 with Retry-After: 1), `drop` (closes the connection without
    answering), `lose` (forwards, then closes without passing the answer on); then it forwards."""

    upstream: str
    script: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Proxy":
        proxy = self
        forward = httpx.Client(base_url=self.upstream, timeout=30)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.attempts.append(Attempt(self.command, self.path, dict(self.headers), body))
                action = proxy.script.pop(0) if proxy.script else "forward"
                if action == "drop":
                    self.close_connection = True
                    return
                if action in ("fail", "busy"):
                    status, after = (503, "0") if action == "fail" else (429, "1")
                    payload = b'{"error": {"message": "try again", "type": "t", "code": "retry"}}'
                    self.send_response(status)
                    self.send_header("Retry-After", after)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = forward.request(self.command, self.path, content=body, headers=headers)
                if action == "lose":  # the service did the work; its answer never arrives
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "content-encoding", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def service(settings):
    with LiveServer(settings) as server:
        yield server.url


@pytest.fixture
async def admin_key(make_key) -> str:
    return await make_key("admin")


@pytest.fixture
def api(service, admin_key):
    with Client(service, admin_key, retry=FAST) as api:
        yield api


def funded(api: Client, credits: str = "100") -> str:
    """A new account with `credits` granted; returns its id."""
    account_id = f"acct-{uuid.uuid4().hex[:10]}"
    api.create_account("Test", id=account_id)
    if credits:
        api.create_grant(account_id, Decimal(credits), description="top-up")
    return account_id


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# Every endpoint, typed


async def test_usage_estimates_and_holds_decode_to_typed_records(api):
    account_id = funded(api)
    event = api.record_usage(account_id=account_id, event_id="e-1", **GPT4O)
    assert isinstance(event, creditmeter.models.UsageEvent) and event.status == "charged"
    assert event.cost == GPT4O_COST and isinstance(event.cost, Decimal)
    assert event.balance_after == Decimal(100) - GPT4O_COST and isinstance(event.balance_after, Decimal)
    assert event.margin == Decimal("1.4") and event.model == "openai/gpt-4o"
    assert isinstance(event.occurred_at, datetime) and event.replay is False
    again = api.record_usage(account_id=account_id, event_id="e-1", **GPT4O)
    assert again.replay is True and again.cost == GPT4O_COST

    batch = api.record_batch(
        [UsageEventIn(account_id=account_id, event_id="e-2", **GPT4O), {"account_id": account_id, **GPT4O}]
    )
    assert [r.status for r in batch.results] == ["created", "created"] and batch.created == 2
    assert batch.results[1].event_id.startswith("evt_")  # made up by the client
    page = api.list_usage(account_id=account_id, limit=2)
    assert [e.event_id for e in page.data][:1] == ["e-1"] and page.next_cursor
    rest = api.list_usage(account_id=account_id, cursor=page.next_cursor)
    assert len(page.data) + len(rest.data) == 3 and rest.next_cursor is None
    every = [e.event_id for e in api.paginate(api.list_usage, account_id=account_id, limit=1)]
    assert every == [e.event_id for e in page.data + rest.data]

    estimate = api.estimate("gpt-4o", input_tokens=2006, cached_input_tokens=1920, output_tokens=300)
    assert estimate.credits == GPT4O_COST and sum(line.credits for line in estimate.breakdown) == GPT4O_COST
    covered = api.estimate("gpt-4o", account_id=account_id, input_tokens=10, max_output_tokens=10)
    assert covered.account.covered is True and covered.account.available == Decimal(100) - 3 * GPT4O_COST
    comparison = api.compare(["gpt-4o", "gpt-4o-mini", "no-such-model-x"], input_tokens=1000, output_tokens=100)
    assert [e.credits for e in comparison.estimates] == sorted(e.credits for e in comparison.estimates)
    assert [u.model for u in comparison.unavailable] == ["no-such-model-x"]
    assert comparison.unavailable[0].error.code == "model_not_found"

    hold = api.authorize(account_id, "gpt-4o", input_tokens=1000, max_output_tokens=100, ttl_seconds=60)
    assert hold.status == "pending" and hold.id.startswith("auth_") and isinstance(hold.amount, Decimal)
    assert api.get_authorization(hold.id).amount == hold.amount
    balance = api.get_balance(account_id)
    assert balance.pending == hold.amount and balance.available == balance.balance - hold.amount
    released = api.release(hold.id)
    assert released.status == "released" and api.get_balance(account_id).pending == 0


async def test_accounts_ledger_reports_catalog_and_keys(api):
    account_id = funded(api, "50.5")
    account = api.get_account(account_id)
    assert account.balance == Decimal("50.5") and isinstance(account.overdraft_limit, Decimal)
    assert account_id in [a.id for a in api.list_accounts(limit=1000).data]
    grants = api.list_grants(account_id).data
    assert [(g.amount, g.remaining, g.description) for g in grants] == [(Decimal("50.5"), Decimal("50.5"), "top-up")]
    adjustment = api.create_adjustment(account_id, "-0.5", "goodwill reversed")
    assert adjustment.balance_after == Decimal(50) and adjustment.amount == Decimal("-0.5")
    api.record_usage(account_id=account_id, event_id="r-1", **GPT4O)
    reversal = api.create_reversal(account_id, "r-1", "refund")
    assert reversal.amount == GPT4O_COST and reversal.balance_after == Decimal(50)
    entries = api.list_ledger(account_id).data
    assert [e.kind for e in entries] == ["grant", "adjustment", "usage", "reversal"]
    assert entries[-1].balance_after == Decimal(50) and entries[2].amount == -GPT4O_COST
    assert [e.kind for e in api.list_ledger(account_id, kind=["usage"]).data] == ["usage"]
    assert api.export_ledger(account_id).splitlines()[0].startswith("id,account_id,kind")

    report = api.usage_report(group_by=["account", "model"], account_id=account_id)
    assert [(r.account, r.model, r.events, r.credits) for r in report.rows] == [
        (account_id, "openai/gpt-4o", 1, GPT4O_COST)
    ]
    assert report.totals.credits_reversed == GPT4O_COST and report.unrated.events == 0
    assert "account,model,events" in api.export_usage_report(group_by=["account", "model"])
    today = datetime.now(UTC).date()
    trial = api.trial_balance(account_id=account_id, from_=str(today), to=str(today + timedelta(days=1)))
    [row] = trial.accounts
    assert (row.grants, row.closing) == (Decimal("50.5"), Decimal(50))

    models = api.list_models(provider="openai", type="language")
    gpt4o = next(m for m in models.models if m.id == "openai/gpt-4o")
    # Rates are JSON numbers on the wire; they decode to the exact Decimal, never through a float.
    assert gpt4o.input_cost_per_1m_tokens == Decimal("350") and isinstance(gpt4o.cost_per_1k_input, Decimal)
    assert gpt4o.pricing.input == Decimal("350") and gpt4o.pricing.cached_input == Decimal("175")
    assert api.get_model("openai/gpt-4o").id == "openai/gpt-4o"
    assert api.get_model("gpt-4o-2024-08-06").root in ("openai/gpt-4o", "openai/gpt-4o-2024-08-06")
    assert "openai" in [p.id for p in api.list_providers().providers]
    embedding = api.list_embedding_models().models[0]
    assert api.get_embedding_model(embedding.id).dimensions == embedding.dimensions
    assert api.resolve_model("gpt-4o", provider="openai").model == "openai/gpt-4o"
    listed = api.list_openai_models()
    assert listed.object == "list" and "openai/gpt-4o" in [m.id for m in listed.data]
    assert api.get_openai_model("openai/gpt-4o").owned_by == "openai"

    created = api.create_api_key("svc", ["usage:write"], account_id=account_id)
    assert created.key and created.scopes == ["usage:write"]
    assert created.id in [k.id for k in api.list_api_keys(account_id=account_id).data]
    assert api.revoke_api_key(created.id).revoked_at is not None
    assert api.health().status == "ok" and api.ready().status == "ready"
    assert "billing_usage_events_total" in api.metrics()


async def test_attribution_in_events_and_reports(api):
    account_id = funded(api)
    event = api.record_usage(account_id=account_id, end_user="user-7", tags=["beta", "search"], **GPT4O)
    assert (event.end_user, event.tags) == ("user-7", ["beta", "search"]) and event.api_key_id
    api.record_usage(account_id=account_id, tags=["beta"], **GPT4O)
    by_user = api.usage_report(group_by=["end_user"], account_id=account_id)
    assert [(r.end_user, r.events) for r in by_user.rows] == [("user-7", 1)] and by_user.totals.events == 2
    by_tag = api.usage_report(group_by=["tag"], account_id=account_id)
    assert [(r.tag, r.events) for r in by_tag.rows] == [("beta", 2), ("search", 1)]
    by_key = api.usage_report(group_by=["api_key"], account_id=account_id, end_user="user-7")
    assert [(r.api_key, r.events) for r in by_key.rows] == [(event.api_key_id, 1)]
    assert api.usage_report(group_by=["model"], account_id=account_id, tag="search").totals.events == 1
    assert api.export_usage_report(group_by=["end_user"], account_id=account_id, end_user="user-7").count("\n") == 2


async def test_async_client_shares_the_operations(service, admin_key):
    async with AsyncClient(service, admin_key, retry=FAST) as api:
        account_id = f"acct-{uuid.uuid4().hex[:10]}"
        await api.create_account("Async", id=account_id)
        grant = await api.create_grant(account_id, Decimal("10"))
        assert grant.balance_after == Decimal(10)
        events = await asyncio.gather(*(api.record_usage(account_id=account_id, **GPT4O) for _ in range(3)))
        assert len({e.event_id for e in events}) == 3 and all(e.cost == GPT4O_COST for e in events)
        assert (await api.get_balance(account_id)).balance == Decimal(10) - 3 * GPT4O_COST
        listed = [e.event_id async for e in api.paginate(api.list_usage, account_id=account_id, limit=2)]
        assert sorted(listed) == sorted(e.event_id for e in events)
        assert (await api.estimate("gpt-4o", **{k: v for k, v in GPT4O.items() if k != "model"})).credits == (
            GPT4O_COST
        )
        with pytest.raises(NotFoundError):
            await api.get_account("nobody-here")


async def test_catalog_administration(api, scratch, conn_engine):
    # `scratch` was made through another instance of the app: this one hears of it by NOTIFY.
    wait_for(lambda: scratch in [p.id for p in api.list_providers().providers])
    assert api.update_provider(scratch, name="Renamed").name == "Renamed"
    model_id = f"{scratch}/m1"
    model = api.upsert_model(scratch, "m1", context_window=1000, supports_tools=True)
    assert (model.id, model.priced, model.context_window) == (model_id, False, 1000)
    price = api.add_price(model_id, input=Decimal("1.5"), output="3", cached_input=Decimal("0.75"))
    assert (price.model_id, price.input, price.output, price.cached_input) == (
        model_id,
        Decimal("1.5"),
        Decimal(3),
        Decimal("0.75"),
    )
    assert [p.id for p in api.price_history(model_id).data] == [price.id]
    margin = api.set_margin("model", model_id, Decimal(2))
    assert margin.margin == Decimal(2) and margin.id in [m.id for m in api.list_margins().margins]
    assert api.list_margins().default_margin == Decimal("1.4")
    # $1.50 per 1M input tokens x margin 2 x 100 credits per USD.
    assert api.get_model(model_id).pricing.input == Decimal(300)

    alias = api.add_alias(f"{scratch}-deploy", model_id, provider=scratch)
    assert (alias.model, alias.provider, alias.source) == (model_id, scratch, "operator")
    assert [a.alias for a in api.list_aliases(model=model_id, source="operator").aliases] == [alias.alias]
    assert api.resolve_model(alias.alias, provider=scratch).model == model_id
    assert api.delete_alias(alias.alias, provider=scratch) is None
    assert api.list_aliases(model=model_id, source="operator").aliases == []

    extra = f"{scratch}x"
    try:
        created = api.create_provider(extra, "Extra", enabled=False)
        assert (created.id, created.name, created.configured) == (extra, "Extra", False)
        with pytest.raises(ConflictError) as info:
            api.create_provider(extra, "Again")
        assert info.value.status == 409
    finally:
        async with conn_engine.begin() as conn:
            await conn.execute(text("DELETE FROM providers WHERE id = :id"), {"id": extra})


async def test_catalog_import_sync_pickers_and_audit(api):
    imported = api.import_catalog()
    assert imported.prices_added == 0 and imported.models > 0  # imported once already: nothing new
    synced = api.sync_catalog(sources=["genai-prices"], dry_run=True)
    assert synced.dry_run is True and [r.name for r in synced.results] == ["genai-prices"]
    openrouter = api.openrouter_models(curated=True)
    assert openrouter.source == "curated" and openrouter.total == len(openrouter.models) > 0
    priced = next(m for m in openrouter.models if m.pricing is not None)
    assert isinstance(priced.pricing.prompt, Decimal) and priced.pricing.prompt > 0
    embeddings = api.openrouter_embeddings(curated=True)
    assert embeddings.source == "curated" and embeddings.total == len(embeddings.models)
    ollama = api.ollama_models()
    assert ollama.source in ("ollama", "ollama_unreachable") and ollama.total == len(ollama.models)
    created = api.create_api_key("audited", ["catalog:read"])
    api.revoke_api_key(created.id)
    audit = [(entry.action, entry.target) for entry in api.api_key_audit(limit=1000).data]
    assert [action for action, target in audit if target == f"api_key:{created.id}"] == [
        "api_key.created",
        "api_key.revoked",
    ]


# Errors


async def test_errors_are_typed_with_the_service_error_object(api, service, make_key):
    with Client(service, "cmk_not_a_real_key", retry=FAST) as stranger, pytest.raises(AuthenticationError) as info:
        stranger.list_accounts()
    assert (info.value.status, info.value.code, info.value.type) == (401, "invalid_api_key", "authentication_error")
    assert info.value.message and info.value.request_id

    with pytest.raises(NotFoundError) as info:
        api.get_account("nobody-here")
    assert (info.value.status, info.value.code) == (404, "account_not_found")

    account_id = funded(api, "1")
    api.record_usage(account_id=account_id, event_id="same", **GPT4O)
    with pytest.raises(UnprocessableEntityError) as info:
        api.record_usage(account_id=account_id, event_id="same", **{**GPT4O, "output_tokens": 301})
    assert (info.value.status, info.value.code, info.value.param) == (422, "idempotency_key_reused", "output_tokens")
    assert info.value.error.type == "invalid_request_error" and "output_tokens" in info.value.error.message

    with pytest.raises(BadRequestError) as info:
        api.record_usage(account_id=account_id, **{**GPT4O, "cached_input_tokens": 5000})
    assert (info.value.status, info.value.code, info.value.param) == (400, "validation_error", "cached_input_tokens")

    with pytest.raises(InsufficientCreditsError) as info:
        api.authorize(account_id, "gpt-4o", input_tokens=1_000_000, max_output_tokens=100_000)
    assert (info.value.status, info.value.code, info.value.type) == (402, "insufficient_credits", "billing_error")

    with Client(service, await make_key("catalog:read")) as reader, pytest.raises(PermissionDeniedError) as info:
        reader.create_account("No")
    assert (info.value.status, info.value.code) == (403, "insufficient_scope")

    with pytest.raises(TypeError, match="Decimal"):
        api.create_grant(account_id, 0.1)


# Retries


async def test_a_503_is_retried_with_the_same_client_made_event_id(api, service, admin_key):
    account_id = funded(api)
    proxy = Proxy(service, ["fail", "fail"]).start()
    try:
        with Client(proxy.url, admin_key, retry=FAST) as flaky:
            event = flaky.record_usage(account_id=account_id, **GPT4O)
    finally:
        proxy.stop()
    sent = [attempt.json()["event_id"] for attempt in proxy.attempts]
    assert len(sent) == 3 and set(sent) == {event.event_id} and event.event_id.startswith("evt_")
    assert event.status == "charged" and event.replay is False


async def test_a_lost_answer_is_retried_without_charging_twice(api, service, admin_key):
    account_id = funded(api, "")
    proxy = Proxy(service, ["lose", "forward", "lose"]).start()
    try:
        with Client(proxy.url, admin_key, retry=FAST) as flaky:
            grant = flaky.create_grant(account_id, Decimal(5))  # handled, answer lost; the retry replays it
            event = flaky.record_usage(account_id=account_id, **GPT4O)  # the same for usage
    finally:
        proxy.stop()
    keys = [a.headers.get("Idempotency-Key") for a in proxy.attempts if a.path.endswith("/grants")]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]
    events = [a.json()["event_id"] for a in proxy.attempts if a.path == "/usage"]
    assert events == [event.event_id, event.event_id]
    assert grant.replay is True and event.replay is True
    # Credited once and charged once, though the service handled each request twice.
    assert api.get_balance(account_id).balance == Decimal(5) - GPT4O_COST
    assert len(api.list_ledger(account_id).data) == 2


async def test_a_refused_connection_is_retried_until_the_service_listens(api, service, admin_key):
    account_id = funded(api)
    proxy = Proxy(service)
    threading.Timer(0.3, proxy.start).start()
    try:
        with Client(proxy.url, admin_key, retry=Retry(max_retries=8, backoff=0.1, max_backoff=0.4)) as patient:
            event = patient.record_usage(account_id=account_id, **GPT4O)
    finally:
        wait_for(lambda: hasattr(proxy, "server"))
        proxy.stop()
    assert event.cost == GPT4O_COST and len(proxy.attempts) == 1


async def test_a_429_waits_for_its_retry_after(api, service, admin_key):
    proxy = Proxy(service, ["busy"]).start()
    try:
        with Client(proxy.url, admin_key, retry=FAST) as limited:
            started = time.monotonic()
            assert limited.health().status == "ok"
            waited = time.monotonic() - started
    finally:
        proxy.stop()
    assert waited >= 0.95 and len(proxy.attempts) == 2


async def test_retries_run_out_and_unsafe_writes_are_not_resent(service, admin_key):
    proxy = Proxy(service, ["fail"] * 10 + ["drop"] * 10).start()
    try:
        with Client(proxy.url, admin_key, retry=Retry(max_retries=2, backoff=0.01)) as flaky:
            with pytest.raises(InternalServerError) as info:
                flaky.get_balance("x")
            assert (info.value.status, len(proxy.attempts)) == (503, 3)
            with pytest.raises(InternalServerError):
                flaky.create_account("Once")  # a 503 may have created it: not resent
            assert len(proxy.attempts) == 4
            proxy.script[:] = ["drop"] * 10
            with pytest.raises(APIConnectionError):
                flaky.create_account("Once")  # a dropped connection may have created it: not resent
            assert len(proxy.attempts) == 5
            with pytest.raises(APIConnectionError):
                flaky.get_balance("x")
            assert len(proxy.attempts) == 8
    finally:
        proxy.stop()


async def test_the_async_client_retries_with_the_same_event_id(api, service, admin_key):
    account_id = funded(api)
    proxy = Proxy(service, ["drop", "fail"]).start()
    try:
        async with AsyncClient(proxy.url, admin_key, retry=FAST) as flaky:
            event = await flaky.record_usage(account_id=account_id, **GPT4O)
    finally:
        proxy.stop()
    assert [a.json()["event_id"] for a in proxy.attempts] == [event.event_id] * 3
    assert api.get_balance(account_id).balance == Decimal(100) - GPT4O_COST


async def test_mistakes_are_refused_before_anything_is_sent(service, admin_key):
    proxy = Proxy(service).start()
    try:
        with Client(proxy.url, admin_key) as api:
            with pytest.raises(msgspec.ValidationError, match="input_token"):
                api.record_batch([{"account_id": "a", "model": "gpt-4o", "input_token": 5}])
            with pytest.raises(TypeError):
                api.record_usage(account_id="a", model="gpt-4o", input_token=5)
            with pytest.raises(TypeError, match="not both"):
                api.record_usage(UsageEventIn(model="gpt-4o"), input_tokens=5)
            with pytest.raises(ValueError, match="max_events"):
                api.batcher(max_events=1001)
            hold = api.hold("a", "gpt-4o", input_tokens=1, max_output_tokens=1)
            with pytest.raises(RuntimeError, match="not placed"):
                hold.settle(input_tokens=1, output_tokens=1)
    finally:
        proxy.stop()
    assert proxy.attempts == []


async def test_hold_settles_with_the_provider_response(api):
    account_id = funded(api)
    with api.hold(account_id, "gpt-4o", provider="openai", input_tokens=2006, max_output_tokens=1000) as hold:
        response = ChatCompletion.model_validate(OPENAI_CHAT)  # the upstream call
        event = hold.settle(response, metadata={"request": "r-1"})
    assert (event.authorization_id, event.usage_format, event.provider) == (hold.id, "openai", "openai")
    assert event.metadata == {"request": "r-1"} and event.input_tokens == 2006 and event.output_tokens == 300
    assert api.get_authorization(hold.id).settled_amount == event.cost


async def test_a_hold_is_settled_once(api):
    account_id = funded(api)
    with api.hold(account_id, "gpt-4o", input_tokens=10, max_output_tokens=10) as hold:
        hold.settle(input_tokens=10, output_tokens=10)
        with pytest.raises(RuntimeError, match="already settled"):
            hold.settle(input_tokens=10, output_tokens=10)
    assert api.get_authorization(hold.id).status == "settled"


# The batcher


async def test_batcher_sends_every_n_events(api, service, admin_key):
    account_id = funded(api)
    seen: list[BatchResult] = []
    proxy = Proxy(service).start()
    try:
        with Client(proxy.url, admin_key, retry=FAST) as counted:
            batcher = counted.batcher(max_events=3, max_delay_ms=60_000, on_result=lambda e, r: seen.append(r))
            ids = [batcher.add(account_id=account_id, **GPT4O) for _ in range(7)]
            wait_for(lambda: batcher.report.created == 6)
            assert [len(a.json()["events"]) for a in proxy.attempts] == [3, 3]
            batcher.close()
    finally:
        proxy.stop()
    assert [len(a.json()["events"]) for a in proxy.attempts] == [3, 3, 1]  # the last one on close
    assert sorted(r.event_id for r in seen) == sorted(ids)
    assert api.get_balance(account_id).balance == Decimal(100) - 7 * GPT4O_COST


async def test_batcher_sends_after_max_delay(api):
    account_id = funded(api)
    with api.batcher(max_events=1000, max_delay_ms=300) as batcher:
        started = time.monotonic()
        batcher.add(account_id=account_id, **GPT4O)
        batcher.add(account_id=account_id, **GPT4O)
        wait_for(lambda: batcher.report.batches == 1)
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 5 and batcher.report.created == 2


async def test_batcher_flushes_on_close_and_surfaces_rejected_events(api):
    account_id = funded(api)
    batcher = api.batcher(max_events=1000, max_delay_ms=60_000)
    good = batcher.add(account_id=account_id, **GPT4O)
    bad = batcher.add(account_id=account_id, **{**GPT4O, "cached_input_tokens": 9999})
    lost = batcher.add(account_id="no-such-account", **GPT4O)
    assert api.list_usage(account_id=account_id).data == []  # nothing sent yet
    report = batcher.close()
    assert report.created == 1 and report.batches == 1
    assert [(r.event.event_id, r.result.error.code) for r in report.rejected] == [
        (bad, "validation_error"),
        (lost, "account_not_found"),
    ]
    assert [e.event_id for e in api.list_usage(account_id=account_id).data] == [good]
    with pytest.raises(RuntimeError):
        batcher.add(account_id=account_id, **GPT4O)


async def test_batcher_flushes_at_interpreter_exit(api, service, admin_key):
    account_id = funded(api)
    script = (
        "import sys, creditmeter\n"
        "api = creditmeter.Client(sys.argv[1], sys.argv[2])\n"
        "batcher = api.batcher(max_events=1000, max_delay_ms=600_000)\n"
        "for _ in range(3):\n"
        f"    batcher.add(account_id={account_id!r}, model='gpt-4o', input_tokens=10, output_tokens=5)\n"
        "# no close: the program just ends\n"
    )
    subprocess.run([sys.executable, "-c", script, service, admin_key], check=True, timeout=60)
    assert len(api.list_usage(account_id=account_id).data) == 3


async def test_batcher_reports_a_batch_it_could_not_deliver(api, admin_key):
    with Client(f"http://127.0.0.1:{free_port()}", admin_key, retry=Retry(max_retries=1, backoff=0.01)) as nowhere:
        batcher = nowhere.batcher(max_events=2, max_delay_ms=60_000)
        ids = [batcher.add(account_id="a", **GPT4O) for _ in range(2)]
        report = batcher.flush()
        assert [r.event.event_id for r in report.rejected] == ids
        assert {r.result.error.code for r in report.rejected} == {"connection_error"}


async def test_async_batcher_by_count_time_and_close(service, admin_key, api):
    account_id = funded(api)

    async def until(condition) -> None:
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async with AsyncClient(service, admin_key, retry=FAST) as aclient:
        async with aclient.batcher(max_events=2, max_delay_ms=1000) as batcher:
            started = time.monotonic()
            for _ in range(5):
                batcher.add(account_id=account_id, **GPT4O)
            await until(lambda: batcher.report.created == 4)  # two full batches go at once
            assert batcher.report.batches == 2
            await until(lambda: batcher.report.created == 5)  # the fifth event once it waited 1 s
            assert time.monotonic() - started >= 1
            batcher.add(account_id=account_id, **GPT4O)
        assert batcher.report.created == 6  # sent on leaving the block
    assert api.get_balance(account_id).balance == Decimal(100) - 6 * GPT4O_COST


# Holds


async def test_hold_settles_with_the_actual_usage(api):
    account_id = funded(api)
    with api.hold(account_id, "gpt-4o", input_tokens=2006, max_output_tokens=4000) as hold:
        assert api.get_balance(account_id).pending == hold.authorization.amount > GPT4O_COST
        event = hold.settle(input_tokens=2006, cached_input_tokens=1920, output_tokens=300)
    assert event.authorization_id == hold.id and event.cost == GPT4O_COST
    settled = api.get_authorization(hold.id)
    assert settled.status == "settled" and settled.settled_amount == GPT4O_COST
    balance = api.get_balance(account_id)
    assert (balance.balance, balance.pending) == (Decimal(100) - GPT4O_COST, Decimal(0))


async def test_hold_is_released_on_an_exception_or_without_settling(api):
    account_id = funded(api)
    with (
        pytest.raises(ZeroDivisionError),
        api.hold(account_id, "gpt-4o", input_tokens=10, max_output_tokens=10) as h,
    ):
        raise ZeroDivisionError("the upstream call failed")
    assert api.get_authorization(h.id).status == "released"
    with api.hold(account_id, "gpt-4o", input_tokens=10, max_output_tokens=10) as unused:
        pass
    assert api.get_authorization(unused.id).status == "released"
    balance = api.get_balance(account_id)
    assert (balance.balance, balance.pending) == (Decimal(100), Decimal(0))
    with (
        pytest.raises(InsufficientCreditsError),
        api.hold(account_id, "gpt-4o", input_tokens=10, max_output_tokens=10**8),
    ):
        pytest.fail("the block must not run without a hold")


async def test_async_hold_settle_and_release(service, admin_key, api):
    account_id = funded(api)
    async with AsyncClient(service, admin_key, retry=FAST) as aclient:
        async with aclient.hold(account_id, "gpt-4o", input_tokens=2006, max_output_tokens=1000) as hold:
            event = await hold.settle(
                usage={
                    "prompt_tokens": 2006,
                    "completion_tokens": 300,
                    "prompt_tokens_details": {"cached_tokens": 1920},
                },
                usage_format="openai",
            )
        assert event.cost == GPT4O_COST and event.authorization_id == hold.id
        with pytest.raises(RuntimeError):
            async with aclient.hold(account_id, "gpt-4o", input_tokens=10, max_output_tokens=10) as failed:
                raise RuntimeError("upstream call failed")
        assert (await aclient.get_authorization(failed.id)).status == "released"
    assert api.get_balance(account_id).balance == Decimal(100) - GPT4O_COST


# Provider responses


OPENAI_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_730_000_000,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}
OPENAI_RESPONSES = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1_730_000_000,
    "model": "gpt-4o-2024-08-06",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "service_tier": "default",
    "usage": {
        "input_tokens": 2006,
        "input_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 0},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 120},
        "total_tokens": 2306,
    },
}
ANTHROPIC = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 5000,
        "cache_read_input_tokens": 4000,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 2000,
    },
}
GEMINI = {
    "candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}],
    "modelVersion": "gemini-2.5-flash",
    "usageMetadata": {
        "promptTokenCount": 10000,
        "cachedContentTokenCount": 4000,
        "candidatesTokenCount": 700,
        "thoughtsTokenCount": 300,
        "totalTokenCount": 11000,
    },
}
BEDROCK = {
    "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 5000,
        "cacheReadInputTokens": 4000,
        "cacheWriteInputTokens": 3000,
        "outputTokens": 2000,
        "totalTokens": 14000,
    },
    "metrics": {"latencyMs": 812},
}


class GeminiUsage:
    """Shaped as the google-genai SDK's objects: attributes in snake case."""

    def __init__(self) -> None:
        self.prompt_token_count = 10000
        self.cached_content_token_count = 4000
        self.candidates_token_count = 700
        self.thoughts_token_count = 300
        self.tool_use_prompt_token_count = None


class GeminiResponse:
    def __init__(self) -> None:
        self.model_version = "gemini-2.5-flash"
        self.usage_metadata = GeminiUsage()


@pytest.mark.parametrize(
    ("response", "provider", "model", "tokens", "format_"),
    [
        (ChatCompletion.model_validate(OPENAI_CHAT), "openai", None, (2006, 1920, 0, 300, 0), "openai"),
        (OPENAI_CHAT, None, None, (2006, 1920, 0, 300, 0), "openai"),
        (
            OpenAIResponse.model_validate(OPENAI_RESPONSES),
            "openai",
            None,
            (2006, 1920, 0, 300, 120),
            "openai-responses",
        ),
        (Message.model_validate(ANTHROPIC), "anthropic", None, (12000, 4000, 3000, 2000, 0), "anthropic"),
        (ANTHROPIC, None, None, (12000, 4000, 3000, 2000, 0), "anthropic"),
        (GEMINI, "google", None, (10000, 4000, 0, 1000, 300), "gemini"),
        (GeminiResponse(), "gemini", None, (10000, 4000, 0, 1000, 300), "gemini"),
        (BEDROCK, "bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", (12000, 4000, 3000, 2000, 0), "bedrock"),
    ],
    ids=[
        "openai-sdk",
        "openai-dict",
        "responses-sdk",
        "anthropic-sdk",
        "anthropic-dict",
        "gemini",
        "genai-sdk",
        "bedrock",
    ],
)
async def test_record_response_sends_the_provider_usage_as_is(api, response, provider, model, tokens, format_):
    account_id = funded(api)
    event = api.record_response(response, account_id=account_id, provider=provider, model=model, metadata={"k": "v"})
    counts = (
        event.input_tokens,
        event.cached_input_tokens,
        event.cache_write_tokens,
        event.output_tokens,
        event.reasoning_tokens,
    )
    assert counts == tokens and event.usage_format == format_ and event.metadata == {"k": "v"}
    assert event.status == "charged" and event.cost > 0
    # The model string the response carried (or the one given) is the one reported.
    [stored] = api.list_usage(account_id=account_id).data
    assert (stored.reported_model or stored.model) == (model or response_model(response))


def response_model(response) -> str:
    if isinstance(response, dict):
        return response.get("model") or response["modelVersion"]
    return getattr(response, "model", None) or response.model_version


async def test_record_response_needs_a_model_and_a_usage(api):
    with pytest.raises(ValueError, match="model="):
        api.record_response(BEDROCK, account_id="a", provider="bedrock")
    with pytest.raises(ValueError, match="no usage"):
        api.record_response({"model": "gpt-4o", "choices": []}, account_id="a")


async def test_limits_schedules_and_webhooks(api):
    account_id = funded(api, "10")
    assert api.set_low_balance_threshold(account_id, "2.5").low_balance_threshold == Decimal("2.5")
    assert api.set_low_balance_threshold(account_id, None).low_balance_threshold is None

    made = api.create_limit(account_id, "end_user", "0.5", "month", value="user-1")
    assert (made.scope, made.value, made.amount, made.remaining) == (
        "end_user",
        "user-1",
        Decimal("0.5"),
        Decimal("0.5"),
    )
    event = api.record_usage(account_id=account_id, end_user="user-1", **GPT4O)
    assert event.over_limit is True
    with pytest.raises(InsufficientCreditsError) as refused:
        api.authorize(account_id, "gpt-4o", input_tokens=10, max_output_tokens=10, end_user="user-1")
    assert refused.value.code == "spend_limit_exceeded"
    [state] = api.list_limits(account_id).data
    assert state.spent == GPT4O_COST and state.reached
    api.delete_limit(account_id, made.id)
    assert api.list_limits(account_id).data == []

    schedule = api.create_grant_schedule(account_id, "5", "month", rollover="capped", rollover_cap="1")
    assert (schedule.rollover, schedule.rollover_cap, schedule.next_grant_at is not None) == (
        "capped",
        Decimal(1),
        True,
    )
    assert [g.schedule_id for g in api.list_grants(account_id).data][-1] == schedule.id
    assert api.get_grant_schedule(account_id, schedule.id).amount == Decimal(5)
    api.end_grant_schedule(account_id, schedule.id)
    assert api.list_grant_schedules(account_id).data[0].ended_at is not None

    hook = api.create_webhook("https://example.com/hooks", ["spend_limit.reached"], description="ops")
    assert hook.secret.startswith("whsec_") and api.get_webhook(hook.id).secret is None
    assert api.update_webhook(hook.id, disabled=True).disabled is True
    assert hook.id in [w.id for w in api.list_webhooks(limit=1000).data]
    assert api.list_deliveries(hook.id).data == []
    assert api.delete_webhook(hook.id).id == hook.id
