"""Model-based test of the books: Hypothesis runs random sequences of grants, usage events (single and batch),
holds, settlements, releases, clock advances, sweeps, adjustments and reversals against the real service, while a
reference model written here with Decimal predicts every answer, every balance and what is left of every credit lot.

The model is deliberately naive: per account a balance, the credit lots in creation order (drawn earliest-expiring
first, never below zero, a new lot first paying back debt), the holds, and the recorded events. Expiry is lazy in
the service (a write to the account, or the sweep, expires what is due; a read shows the books as they are), so the
model expires lots exactly when the service is told to: on the writes that open the account's books and commit.

Hypothesis' stateful runner is synchronous, so it runs in a thread of its own and every rule sends its requests to
the test's event loop (where the async test client lives) and waits for the answer. Each example starts from emptied
books (the catalog stays) with accounts of its own, so it replays the same wherever it runs. The run is derandomized
(the same examples every time, about 30 s); MODEL_EXAMPLES=500 [MODEL_STEPS=60] explores with a random seed instead,
and MODEL_SHRINK=1 lets Hypothesis shrink a failure to its shortest form (minutes).
"""

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from app import pricing
from app.asgi import create_app
from app.keys import service as key_service
from app.keys.schemas import KeyCreate
from app.ledger.service import expire_due_grants
from app.reconcile import reconcile
from tests.helpers import KEEP_TABLES

NANO = Decimal("0.000000001")
# The test's own model: upstream USD per 1M tokens, and its margin override.
RATES = {"input": Decimal(3), "cached_input": Decimal("0.01234"), "cache_write": Decimal("3.75"), "output": Decimal(15)}
MARGIN = Decimal("1.2")
CREDITS_PER_USD = Decimal(100)
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
STATUS_OF = {
    "validation_error": 400,
    "account_not_found": 404,
    "model_not_found": 404,
    "authorization_not_found": 404,
    "usage_event_not_found": 404,
    "authorization_settled": 409,
    "nothing_to_reverse": 409,
    "idempotency_key_reused": 422,
}
RECONCILE_EVERY = 10  # steps

HYPOTHESIS_SETTINGS = settings(
    max_examples=25,
    # Shrinking a failure replays whole examples against the service and can take minutes: on request only
    # (MODEL_SHRINK=1); without it the failing example's steps are still printed in full.
    phases=list(Phase) if os.environ.get("MODEL_SHRINK") else [Phase.explicit, Phase.reuse, Phase.generate],
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)


def cost_of(input_tokens: int, output_tokens: int = 0, cached: int = 0, cache_write: int = 0) -> Decimal:
    """Credits for a call, by hand: exact USD x margin x credits per USD, rounded once to 9 places (half even)."""
    with localcontext(Context(prec=80)):
        usd = (
            (input_tokens - cached - cache_write) * RATES["input"]
            + cached * RATES["cached_input"]
            + cache_write * RATES["cache_write"]
            + output_tokens * RATES["output"]
        ) / Decimal(1_000_000)
        return (usd * MARGIN * CREDITS_PER_USD).quantize(NANO, rounding=ROUND_HALF_EVEN)


def money(value: Decimal) -> str:
    return format(value.quantize(NANO), "f")


def at(text_: str | None) -> datetime | None:
    return None if text_ is None else datetime.fromisoformat(text_)


# The reference model


@dataclass
class Lot:
    """A grant, a positive adjustment or a reversal: credits that later debits draw from."""

    amount: Decimal
    remaining: Decimal
    expires_at: datetime | None
    expired_at: datetime | None = None


@dataclass
class Hold:
    id: str
    account: str
    amount: Decimal
    expires_at: datetime
    released_at: datetime | None = None
    settled_by: str | None = None
    settled_amount: Decimal | None = None

    def open(self, now: datetime) -> bool:
        return self.settled_by is None and self.released_at is None and self.expires_at > now

    def status(self, now: datetime) -> str:
        if self.settled_by is not None:
            return "settled"
        if self.released_at is not None:
            return "released"
        return "expired" if self.expires_at <= now else "pending"


@dataclass
class Event:
    account: str
    event_id: str
    payload: dict[str, Any]
    cost: Decimal
    balance_after: Decimal
    overdrawn: bool
    occurred_at: datetime
    response: dict[str, Any] | None = None  # the first answer, without audience-specific fields


@dataclass
class Books:
    """One customer account."""

    id: str
    overdraft_limit: Decimal
    balance: Decimal = Decimal(0)
    lots: list[Lot] = field(default_factory=list)
    grant_keys: dict[str, tuple[dict, dict]] = field(default_factory=dict)  # key -> (request, first answer)
    adjustment_keys: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    reversals: dict[str, dict] = field(default_factory=dict)  # event_id -> first answer
    journal: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)  # the ledger: kind, amount, after

    def post(self, kind: str, amount: Decimal) -> Decimal:
        self.balance += amount
        self.journal.append((kind, amount, self.balance))
        return self.balance

    def due(self, now: datetime) -> list[Lot]:
        due = [lot for lot in self.lots if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= now]
        return sorted(due, key=lambda lot: lot.expires_at)  # stable: the oldest first among equals

    def expire(self, now: datetime) -> None:
        """What the service does when it opens this account's books: expire every lot that is due."""
        for lot in self.due(now):
            self.post("expiration", -lot.remaining)
            lot.remaining = Decimal(0)
            lot.expired_at = now

    def credit(self, kind: str, amount: Decimal, expires_at: datetime | None = None) -> Lot:
        """A new lot first pays back debt: it keeps only what is left above zero."""
        lot = Lot(amount, min(amount, max(self.balance + amount, Decimal(0))), expires_at)
        self.lots.append(lot)
        self.post(kind, amount)
        return lot

    def draw(self, amount: Decimal, now: datetime) -> None:
        """Debits draw from the earliest-expiring lot first (never-expiring last, then oldest first)."""
        ordered = sorted(
            (
                i
                for i, lot in enumerate(self.lots)
                if lot.remaining > 0 and (lot.expires_at is None or lot.expires_at > now)
            ),
            key=lambda i: (self.lots[i].expires_at is None, self.lots[i].expires_at or now, i),
        )
        for i in ordered:
            take = min(self.lots[i].remaining, amount)
            self.lots[i].remaining -= take
            amount -= take
            if amount == 0:
                break


def payload_of(body: dict) -> dict[str, Any]:
    """What a retry of a usage event must repeat (the service's rule: tokens, model, hold, metadata)."""
    fields = {name: body.get(name, 0) for name in TOKEN_FIELDS}
    return fields | {
        "model": body["model"],
        "authorization_id": body.get("authorization_id"),
        "metadata": body.get("metadata"),
    }


def differing(first: dict, second: dict) -> list[str]:
    return sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))


def retry_differs(payload: dict, occurred_at: datetime, body: dict) -> list[str]:
    """The fields in which a retry differs from the event it repeats: `occurred_at` counts only when the retry
    gives it (the contract's "default now" cannot be repeated), whether the first copy is stored or earlier in
    the same batch."""
    fields = differing(payload, payload_of(body))
    if "occurred_at" in body and at(body["occurred_at"]) != occurred_at:
        fields = sorted([*fields, "occurred_at"])
    return fields


def normalized(event: dict) -> dict:
    """An event as any audience sees it, replay flag aside."""
    return {k: v for k, v in event.items() if k not in ("upstream_cost_usd", "replay")}


# The bridge from Hypothesis' thread to the test's event loop


class Api:
    def __init__(self, client: AsyncTestClient, loop: asyncio.AbstractEventLoop, admin: dict[str, str]) -> None:
        self.client, self.loop, self.admin = client, loop, admin

    def run(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def request(self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
        return self.run(self.client.request(method, url, headers=headers or self.admin, **kwargs))

    def gather(self, *calls: tuple[str, str]) -> list[httpx.Response]:
        """GETs sent together: the checks after every step cost one round trip."""

        async def send():
            return await asyncio.gather(*(self.client.request(m, url, headers=self.admin) for m, url in calls))

        return self.run(send())

    def on_app_loop(self, function: Callable, *args) -> Any:
        """The app runs on a loop of its own (the test client's portal); its asyncpg pool works only there."""
        return self.client.blocking_portal.call(function, *args)


def expect_error(response: httpx.Response, code: str, param: str | None = None) -> None:
    assert response.status_code == STATUS_OF[code], response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if param is not None:
        assert error.get("param") == param, error


class BooksMachine(RuleBasedStateMachine):
    """One Hypothesis example: two fresh accounts of its own, driven by random operations."""

    api: Api
    model: str
    price_from: datetime  # when the test's price took effect
    clock: Any
    engine: Any
    examples = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.tag = f"mb{next(self.examples)}-{uuid.uuid4().hex[:6]}"
        self.books: dict[str, Books] = {}
        self.events: dict[tuple[str, str], Event] = {}
        self.holds: dict[str, Hold] = {}
        self.bound: dict[str, str] = {}  # a usage:write key bound to the first account
        self.ids = itertools.count(1)
        self.steps = 0

    # Helpers

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids)}"

    def draw_account(self, data) -> Books:
        return self.books[data.draw(st.sampled_from(sorted(self.books)), label="account")]

    def pending(self, account: str) -> Decimal:
        return sum((h.amount for h in self.holds.values() if h.account == account and h.open(self.now)), Decimal(0))

    def reconcile(self) -> None:
        async def check():
            async with self.engine.connect() as conn:
                return await reconcile(conn)

        report = self.api.run(check())
        assert report.ok, report.violations

    # Accounts

    @initialize(
        limits=st.lists(st.sampled_from(["0", "25", "1000"]), min_size=2, max_size=2),
        funds=st.lists(st.sampled_from(["0", "20", "150"]), min_size=2, max_size=2),
        expiring=st.booleans(),
    )
    def open_accounts(self, limits, funds, expiring):
        self.api.admin = {"X-API-Key": self.api.run(reset_database(self.engine))}
        for name, limit in zip("ab", limits, strict=True):
            account_id = f"{self.tag}-{name}"
            response = self.api.request(
                "POST", "/accounts", json={"id": account_id, "name": account_id, "overdraft_limit": limit}
            )
            assert response.status_code == 201, response.text
            self.books[account_id] = Books(account_id, Decimal(limit))
        for (account_id, books), amount in zip(sorted(self.books.items()), funds, strict=True):
            if amount != "0":
                expires_at = self.now + timedelta(hours=1) if expiring else None
                body = {"amount": amount} | ({"expires_at": expires_at.isoformat()} if expires_at else {})
                response = self.api.request("POST", f"/accounts/{account_id}/grants", json=body)
                assert response.status_code == 201, response.text
                books.credit("grant", Decimal(amount), expires_at)
        first = sorted(self.books)[0]
        response = self.api.request(
            "POST", "/api-keys", json={"name": "gateway", "scopes": ["usage:write"], "account_id": first}
        )
        assert response.status_code == 201, response.text
        self.bound = {"X-API-Key": response.json()["key"]}

    # Grants

    def grant_body(self, data) -> dict:
        amount = data.draw(st.sampled_from(["0.000000001", "0.5", "3", "10", "25.123456789", "100"]), label="amount")
        body: dict[str, Any] = {"amount": amount}
        expires_in = data.draw(st.sampled_from([None, None, 60, 3600, 86400]), label="expires_in")
        if expires_in is not None:
            body["expires_at"] = (self.now + timedelta(seconds=expires_in)).isoformat()
        if data.draw(st.booleans(), label="described"):
            body["description"] = "top-up"
        return body

    @rule(data=st.data())
    def grant(self, data):
        books = self.draw_account(data)
        if data.draw(st.integers(0, 5), label="invalid") == 0:
            self.invalid_grant(data, books)
            return
        body = self.grant_body(data)
        key = data.draw(st.sampled_from([None, self.fresh("grant-key-")]), label="idempotency_key")
        headers = {**self.api.admin, **({"Idempotency-Key": key} if key else {})}
        response = self.api.request("POST", f"/accounts/{books.id}/grants", headers=headers, json=body)
        books.expire(self.now)
        lot = books.credit("grant", Decimal(body["amount"]), at(body.get("expires_at")))
        assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers, response.text
        answer = response.json()
        assert "replay" not in answer, answer
        assert (answer["amount"], answer["remaining"], answer["balance_after"]) == (
            money(lot.amount),
            money(lot.remaining),
            money(books.balance),
        ), answer
        assert at(answer["expires_at"]) == lot.expires_at and answer["expired_at"] is None, answer
        if key:
            books.grant_keys[key] = (body, answer)

    def invalid_grant(self, data, books: Books) -> None:
        body = data.draw(
            st.sampled_from(
                [
                    {"amount": "0"},
                    {"amount": "-5"},
                    {"amount": "1.0000000001"},
                    {"amount": "5", "expires_at": self.now.isoformat()},
                    {"amount": "5", "expires_at": (self.now - timedelta(seconds=1)).isoformat()},
                ]
            ),
            label="invalid grant",
        )
        response = self.api.request("POST", f"/accounts/{books.id}/grants", json=body)
        expect_error(response, "validation_error")

    @precondition(lambda self: any(books.grant_keys for books in self.books.values()))
    @rule(data=st.data(), same=st.booleans())
    def retry_grant(self, data, same):
        """The same Idempotency-Key again: the same payload replays the first answer, even after the clock moved and
        even once the grant's own `expires_at` has passed (the grant was made: a retry must learn so); another
        payload is refused, naming what differs (or, once `expires_at` has passed, as a request in the past)."""
        books = self.books[data.draw(st.sampled_from(sorted(a for a, b in self.books.items() if b.grant_keys)))]
        key = data.draw(st.sampled_from(sorted(books.grant_keys)), label="key")
        first, answer = books.grant_keys[key]
        past = first.get("expires_at") is not None and at(first["expires_at"]) <= self.now
        body = dict(first) if same else {**first, "amount": str(Decimal(first["amount"]) + 1)}
        response = self.api.request(
            "POST", f"/accounts/{books.id}/grants", headers={**self.api.admin, "Idempotency-Key": key}, json=body
        )
        if not same:
            if past and response.status_code == 400:
                expect_error(response, "validation_error", "expires_at")
            else:
                expect_error(response, "idempotency_key_reused", "amount")
            return
        assert response.status_code == 200, response.text
        assert response.headers.get("Idempotent-Replayed") == "true"
        assert response.json() == {**answer, "replay": True}

    # Usage

    def new_event(self, data, account: str) -> dict:
        inp = data.draw(st.sampled_from([0, 1, 7, 999, 12_345, 50_000, 200_000]), label="input_tokens")
        out = data.draw(st.sampled_from([0, 1, 333, 5000, 20_000]), label="output_tokens")
        cached = data.draw(st.sampled_from([0, inp // 3, inp]), label="cached")
        write = data.draw(st.sampled_from([0, (inp - cached) // 2]), label="cache_write")
        reasoning = data.draw(st.sampled_from([0, out // 2]), label="reasoning")
        body: dict[str, Any] = {"event_id": self.fresh("ev-"), "account_id": account, "model": self.model}
        body |= {"input_tokens": inp, "output_tokens": out}
        for name, value in (
            ("cached_input_tokens", cached),
            ("cache_write_tokens", write),
            ("reasoning_tokens", reasoning),
        ):
            if value:
                body[name] = value
        if data.draw(st.booleans(), label="with metadata"):
            body["metadata"] = {"route": data.draw(st.sampled_from(["chat", "batch"]))}
        if data.draw(st.integers(0, 3), label="occurred_at given") == 0:
            # In the past (but under the test's price), in another offset than UTC.
            earlier = max(self.now - timedelta(seconds=30), self.price_from)
            body["occurred_at"] = earlier.astimezone(timezone(timedelta(hours=2))).isoformat()
        return body

    def event_item(self, data, batch: list[dict]) -> dict:
        """One usage event to send: new, settling a hold, a retry (exact or not), invalid, or for no account."""
        account = self.draw_account(data).id
        kinds = ["new"] * 4 + ["settle"] * 2 + ["invalid", "ghost", "other-account-id"]
        if self.events:
            kinds += ["replay", "replay", "conflict"]
        if batch:
            kinds += ["repeat", "repeat"]
        kind = data.draw(st.sampled_from(kinds), label="kind")
        if kind in ("replay", "conflict"):
            stored = self.events[data.draw(st.sampled_from(sorted(self.events)), label="event")]
            body = {"event_id": stored.event_id, "account_id": stored.account, **self.body_of(stored)}
            if kind == "replay" and data.draw(st.booleans(), label="repeat occurred_at"):
                body["occurred_at"] = stored.occurred_at.isoformat()
            if kind == "conflict":
                change = data.draw(
                    st.sampled_from(["input_tokens", "metadata", "authorization_id", "occurred_at"]), label="change"
                )
                if change == "occurred_at":
                    body["occurred_at"] = (stored.occurred_at - timedelta(seconds=1)).isoformat()
                elif change == "input_tokens":
                    body["input_tokens"] += 1
                elif change == "metadata":
                    body["metadata"] = {"route": "changed"}
                else:
                    body["authorization_id"] = "auth_other"
            return body
        if kind == "repeat":
            body = dict(data.draw(st.sampled_from(batch), label="earlier item"))
            change = data.draw(st.sampled_from([None, "output_tokens", "occurred_at"]), label="change")
            if change == "output_tokens":
                body["output_tokens"] = body.get("output_tokens", 0) + 1
            elif change == "occurred_at":  # left out: a retry need not repeat it
                body.pop("occurred_at", None)
            return body
        body = self.new_event(data, account)
        if kind == "settle":
            choices = [*self.holds, "auth_unknown"]  # in the order they were made: ids are random
            body["authorization_id"] = data.draw(st.sampled_from(choices), label="hold")
        elif kind == "invalid":
            defect = data.draw(
                st.sampled_from(["model", "cached", "cache_write", "reasoning", "negative", "nul", "future"]),
                label="defect",
            )
            if defect == "model":
                body["model"] = "nobody/no-such-model"
            elif defect == "cached":
                body["cached_input_tokens"] = body["input_tokens"] + 1
                body.pop("cache_write_tokens", None)
            elif defect == "cache_write":
                body["cached_input_tokens"] = body["input_tokens"] // 2
                body["cache_write_tokens"] = body["input_tokens"] - body["input_tokens"] // 2 + 1
            elif defect == "reasoning":
                body["reasoning_tokens"] = body["output_tokens"] + 1
            elif defect == "negative":
                body["input_tokens"] = -1
                body.pop("cached_input_tokens", None)
                body.pop("cache_write_tokens", None)
            elif defect == "future":
                body["occurred_at"] = (self.now + timedelta(minutes=2)).isoformat()
            else:
                body["event_id"] += "\u0000"
        elif kind == "ghost":
            body["account_id"] = f"{self.tag}-ghost"
        elif kind == "other-account-id" and self.events:
            # An event id another account already used is a new event here.
            other = [e for e in self.events.values() if e.account != account]
            if other:
                body["event_id"] = data.draw(st.sampled_from(sorted(e.event_id for e in other)), label="foreign id")
                if (account, body["event_id"]) in self.events:
                    body["event_id"] = self.fresh("ev-")
        return body

    @staticmethod
    def body_of(event: Event) -> dict:
        body = {"model": event.payload["model"]}
        body |= {name: event.payload[name] for name in TOKEN_FIELDS if event.payload[name]}
        body.setdefault("input_tokens", 0)
        for name in ("authorization_id", "metadata"):
            if event.payload[name] is not None:
                body[name] = event.payload[name]
        return body

    def prepare_error(self, body: dict) -> tuple[str, str] | None:
        """The service's checks before recording, in its order."""
        if "occurred_at" in body and at(body["occurred_at"]) > self.now + timedelta(minutes=1):
            return "validation_error", "occurred_at"
        if "\x00" in body["event_id"]:
            return "validation_error", "event_id"
        if body["model"] != self.model:
            return "model_not_found", "model"
        tokens = {name: body.get(name, 0) for name in TOKEN_FIELDS}
        for name, value in tokens.items():
            if value < 0:
                return "validation_error", name
        if tokens["cached_input_tokens"] > tokens["input_tokens"]:
            return "validation_error", "cached_input_tokens"
        if tokens["cached_input_tokens"] + tokens["cache_write_tokens"] > tokens["input_tokens"]:
            return "validation_error", "cache_write_tokens"
        if tokens["reasoning_tokens"] > tokens["output_tokens"]:
            return "validation_error", "reasoning_tokens"
        return None

    def expect_record(self, items: list[dict]) -> list[tuple]:
        """The outcome of recording `items` in one request: ("created", Event), ("duplicate", Event) or
        ("error", code, param), per item, following the contract's rules (one event per account and event_id, an
        exact retry replays, another payload is refused; a hold is settled once, by an event of its account)."""
        now = self.now
        results: list[tuple | None] = [None] * len(items)
        ready = []
        for index, body in enumerate(items):
            problem = self.prepare_error(body)
            if problem:
                results[index] = ("error", *problem)
            else:
                ready.append(index)
        for account in sorted({items[i]["account_id"] for i in ready}):
            if account in self.books:
                self.books[account].expire(now)

        def key(index: int) -> tuple[str, str]:
            return items[index]["account_id"], items[index]["event_id"]

        first: dict[tuple[str, str], int] = {}
        for index in ready:
            first.setdefault(key(index), index)
        existing = dict(self.events)
        new = []
        for event_key, index in first.items():
            if event_key[0] not in self.books:
                results[index] = ("error", "account_not_found", "account_id")
            elif event_key in existing:
                results[index] = self.replay_outcome(items[index], existing[event_key])
            else:
                new.append(index)
        settling: dict[str, int] = {}
        for index in list(new):
            hold_id = items[index].get("authorization_id")
            if hold_id is None:
                continue
            hold = self.holds.get(hold_id)
            if hold is None or hold.account != items[index]["account_id"]:
                results[index] = ("error", "authorization_not_found", "authorization_id")
            elif hold.settled_by is not None or hold_id in settling:
                results[index] = ("error", "authorization_settled", "authorization_id")
            else:
                settling[hold_id] = index
                continue
            new.remove(index)
        spent: dict[str, Decimal] = {}
        for index in new:
            body = items[index]
            books = self.books[body["account_id"]]
            cost = cost_of(
                body["input_tokens"],
                body.get("output_tokens", 0),
                body.get("cached_input_tokens", 0),
                body.get("cache_write_tokens", 0),
            )
            books.post("usage", -cost)
            spent[books.id] = spent.get(books.id, Decimal(0)) + cost
            event = Event(
                books.id,
                body["event_id"],
                payload_of(body),
                cost,
                books.balance,
                books.balance < -books.overdraft_limit,
                at(body["occurred_at"]) if "occurred_at" in body else now,
            )
            self.events[key(index)] = event
            results[index] = ("created", event)
        for account, amount in spent.items():
            self.books[account].draw(amount, now)
        for hold_id, index in settling.items():
            event = results[index][1]
            self.holds[hold_id].settled_by, self.holds[hold_id].settled_amount = event.event_id, event.cost
        for index in ready:
            if results[index] is not None:
                continue
            if key(index) in existing:
                results[index] = self.replay_outcome(items[index], existing[key(index)])
                continue
            original, first_body = results[first[key(index)]], items[first[key(index)]]
            first_at = at(first_body["occurred_at"]) if "occurred_at" in first_body else now
            if original[0] == "error" and original[1] == "account_not_found":
                results[index] = original
            elif fields := retry_differs(payload_of(first_body), first_at, items[index]):
                results[index] = ("error", "idempotency_key_reused", fields[0])
            elif original[0] == "error":
                results[index] = original
            else:
                results[index] = ("duplicate", original[1])
        return results

    @staticmethod
    def replay_outcome(body: dict, event: Event) -> tuple:
        fields = retry_differs(event.payload, event.occurred_at, body)
        return ("error", "idempotency_key_reused", fields[0]) if fields else ("duplicate", event)

    def check_event(self, expected: tuple, answer: dict, finance: bool) -> None:
        """An event in an answer against the model's; the first answer is kept for later replays."""
        kind, event = expected
        assert (answer["event_id"], answer["account_id"], answer["model"]) == (
            event.event_id,
            event.account,
            self.model,
        ), answer
        assert {name: answer[name] for name in TOKEN_FIELDS} == {name: event.payload[name] for name in TOKEN_FIELDS}
        assert (answer["cost"], answer["balance_after"], answer["overdrawn"]) == (
            money(event.cost),
            money(event.balance_after),
            event.overdrawn,
        ), (answer, event)
        assert (answer["authorization_id"], answer["metadata"]) == (
            event.payload["authorization_id"],
            event.payload["metadata"],
        ), answer
        assert at(answer["occurred_at"]) == event.occurred_at, (answer, event)
        assert answer.get("replay", False) is (kind == "duplicate"), answer
        assert ("upstream_cost_usd" in answer) is finance, answer
        if event.response is None:
            event.response = normalized(answer)
        else:
            assert normalized(answer) == event.response, "a replay must repeat the first answer"

    @rule(data=st.data())
    def record_one(self, data):
        body = self.event_item(data, [])
        bound = body["account_id"] == sorted(self.books)[0] and data.draw(st.booleans(), label="bound key")
        sent = {k: v for k, v in body.items() if k != "account_id"} if bound else body
        response = self.api.request("POST", "/usage", headers=self.bound if bound else None, json=sent)
        (expected,) = self.expect_record([body])
        if expected[0] == "error":
            expect_error(response, expected[1], expected[2])
            return
        assert response.status_code == (201 if expected[0] == "created" else 200), response.text
        assert (response.headers.get("Idempotent-Replayed") == "true") is (expected[0] == "duplicate")
        self.check_event(expected, response.json(), finance=not bound)

    @rule(data=st.data(), size=st.integers(min_value=1, max_value=6))
    def record_batch(self, data, size):
        items: list[dict] = []
        for _ in range(size):
            items.append(self.event_item(data, items))
        response = self.api.request("POST", "/usage/batch", json={"events": items})
        assert response.status_code == 200, response.text
        answer = response.json()
        expected = self.expect_record(items)
        assert len(answer["results"]) == len(items)
        for index, (result, outcome) in enumerate(zip(answer["results"], expected, strict=True)):
            assert result["index"] == index and result["event_id"] == items[index]["event_id"], result
            assert result["status"] == outcome[0], (items[index], result, outcome)
            if outcome[0] == "error":
                assert (result["error"]["code"], result["error"].get("param")) == outcome[1:], (result, outcome)
                assert "event" not in result
            else:
                self.check_event(outcome, result["event"], finance=True)
        counts = [sum(1 for o in expected if o[0] == status) for status in ("created", "duplicate", "error")]
        assert [answer["created"], answer["duplicates"], answer["errors"]] == counts

    # Holds

    @rule(
        data=st.data(),
        inp=st.sampled_from([0, 1, 5000, 50_000]),
        out=st.sampled_from([0, 100, 2000, 20_000]),
        ttl=st.sampled_from([60, 600, 3600]),
    )
    def hold(self, data, inp, out, ttl):
        books = self.draw_account(data)
        cached = data.draw(st.sampled_from([0, inp // 2]), label="cached")
        amount = cost_of(inp, out, cached)
        # The service expires what is due before it looks at the available credits (and keeps that only if the
        # hold is made: a refusal rolls everything back).
        available = books.balance - sum((lot.remaining for lot in books.due(self.now)), Decimal(0))
        available -= self.pending(books.id)
        call = {"account_id": books.id, "model": self.model, "input_tokens": inp, "max_output_tokens": out}
        if cached:
            call["cached_input_tokens"] = cached
        response = self.api.request("POST", "/authorizations", json=call | {"ttl_seconds": ttl})
        if amount > available:
            assert response.status_code == 402, (response.text, amount, available)
            assert response.json()["error"]["code"] == "insufficient_credits", response.text
            return
        assert response.status_code == 201, (response.text, amount, available)
        books.expire(self.now)
        body = response.json()
        assert (body["amount"], body["available"], body["status"]) == (
            money(amount),
            money(available - amount),
            "pending",
        )
        assert at(body["expires_at"]) == self.now + timedelta(seconds=ttl)
        self.holds[body["id"]] = Hold(body["id"], books.id, amount, self.now + timedelta(seconds=ttl))

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data):
        hold_id = data.draw(st.sampled_from([*self.holds, "auth_unknown"]), label="hold")
        response = self.api.request("POST", f"/authorizations/{hold_id}/release")
        hold = self.holds.get(hold_id)
        if hold is None:
            expect_error(response, "authorization_not_found")
            return
        if hold.settled_by is not None:
            expect_error(response, "authorization_settled")
            return
        if hold.released_at is None and hold.expires_at > self.now:
            hold.released_at = self.now
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], at(body["released_at"])) == (hold.status(self.now), hold.released_at), body

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def read_hold(self, data):
        hold = self.holds[data.draw(st.sampled_from(list(self.holds)), label="hold")]
        response = self.api.request("GET", f"/authorizations/{hold.id}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["amount"], body["event_id"]) == (
            hold.status(self.now),
            money(hold.amount),
            hold.settled_by,
        ), body
        settled = None if hold.settled_amount is None else money(hold.settled_amount)
        assert body["settled_amount"] == settled, body

    @rule(data=st.data(), inp=st.sampled_from([0, 5000, 200_000]), out=st.sampled_from([0, 2000, 20_000]))
    def estimate(self, data, inp, out):
        """An estimate for an account prices the call as a hold would, with the account's available credits as
        its balance shows them."""
        books = self.draw_account(data)
        call = {"account_id": books.id, "model": self.model, "input_tokens": inp, "max_output_tokens": out}
        response = self.api.request("POST", "/estimate", json=call)
        assert response.status_code == 200, response.text
        body = response.json()
        credits = cost_of(inp, out)
        available = books.balance - self.pending(books.id)
        assert body["credits"] == money(credits), body
        if not books.due(self.now):  # with credits due to expire, either figure is defensible
            assert body["account"] == {
                "account_id": books.id,
                "available": money(available),
                "covered": credits <= available,
            }, body

    # Time

    @rule(seconds=st.sampled_from([1, 59, 60, 600, 3600, 86400, 3 * 86400]))
    def advance_clock(self, seconds):
        self.clock.advance(seconds=seconds)

    @rule()
    def sweep(self):
        self.api.on_app_loop(expire_due_grants, self.api.client.app.state.pool, self.now)
        for books in self.books.values():
            books.expire(self.now)

    # Corrections

    @rule(
        data=st.data(),
        amount=st.sampled_from(["-50", "-3.5", "-0.000000001", "0.000000001", "2", "40"]),
        keyed=st.booleans(),
    )
    def adjust(self, data, amount, keyed):
        books = self.draw_account(data)
        key = self.fresh("adjustment-key-") if keyed else None
        body = {"amount": amount, "reason": "correction"}
        headers = {**self.api.admin, **({"Idempotency-Key": key} if key else {})}
        response = self.api.request("POST", f"/accounts/{books.id}/adjustments", headers=headers, json=body)
        assert response.status_code == 201, response.text
        books.expire(self.now)
        value = Decimal(amount)
        if value > 0:
            books.credit("adjustment", value)
        else:
            books.post("adjustment", value)
            books.draw(-value, self.now)
        answer = response.json()
        assert (answer["amount"], answer["balance_after"]) == (money(value), money(books.balance)), answer
        assert "replay" not in answer
        if key:
            books.adjustment_keys[key] = (body, answer)

    @precondition(lambda self: any(books.adjustment_keys for books in self.books.values()))
    @rule(data=st.data(), same=st.booleans())
    def retry_adjustment(self, data, same):
        books = self.books[data.draw(st.sampled_from(sorted(a for a, b in self.books.items() if b.adjustment_keys)))]
        key = data.draw(st.sampled_from(sorted(books.adjustment_keys)), label="key")
        first, answer = books.adjustment_keys[key]
        body = dict(first) if same else {**first, "reason": "another reason"}
        response = self.api.request(
            "POST", f"/accounts/{books.id}/adjustments", headers={**self.api.admin, "Idempotency-Key": key}, json=body
        )
        if not same:
            expect_error(response, "idempotency_key_reused", "reason")
            return
        assert response.status_code == 200 and response.headers.get("Idempotent-Replayed") == "true", response.text
        assert response.json() == {**answer, "replay": True}

    @precondition(lambda self: self.events)
    @rule(data=st.data())
    def reverse(self, data):
        books = self.books[data.draw(st.sampled_from(sorted({e.account for e in self.events.values()})))]
        own = sorted(event_id for (account, event_id) in self.events if account == books.id)
        event_id = data.draw(st.sampled_from([*own, "ev-unknown"]), label="event")
        response = self.api.request(
            "POST", f"/accounts/{books.id}/reversals", json={"event_id": event_id, "reason": "refund"}
        )
        event = self.events.get((books.id, event_id))
        if event is None:
            expect_error(response, "usage_event_not_found", "event_id")
            return
        if event.cost == 0:  # nothing to give back, and nothing changes
            expect_error(response, "nothing_to_reverse")
            return
        books.expire(self.now)
        if event_id in books.reversals:
            assert response.status_code == 200 and response.headers.get("Idempotent-Replayed") == "true", response.text
            assert response.json() == {**books.reversals[event_id], "replay": True}
            return
        assert response.status_code == 201, response.text
        books.credit("reversal", event.cost)
        answer = response.json()
        assert (answer["amount"], answer["balance_after"]) == (money(event.cost), money(books.balance)), answer
        books.reversals[event_id] = answer

    # Invariants

    @invariant()
    def books_match_the_model(self):
        self.steps += 1
        accounts = sorted(self.books.values(), key=lambda books: books.id)
        calls = [("GET", f"/accounts/{books.id}/{what}") for books in accounts for what in ("balance", "grants")]
        responses = iter(self.api.gather(*calls))
        for books in accounts:
            balance, grants = next(responses), next(responses)
            assert balance.status_code == 200 and grants.status_code == 200, (balance.text, grants.text)
            pending = self.pending(books.id)
            assert balance.json() == {
                "account_id": books.id,
                "balance": money(books.balance),
                "pending": money(pending),
                "available": money(books.balance - pending),
                "overdraft_limit": money(books.overdraft_limit),
            }
            lots = [
                (g["amount"], g["remaining"], at(g["expires_at"]), at(g["expired_at"])) for g in grants.json()["data"]
            ]
            assert lots == [
                (money(lot.amount), money(lot.remaining), lot.expires_at, lot.expired_at) for lot in books.lots
            ], books.id
        if self.steps % RECONCILE_EVERY == 0:
            self.reconcile()
            self.check_ledgers()

    def check_ledgers(self) -> None:
        """Every entry of every account's ledger, in order, with its running balance."""
        for books in self.books.values():
            response = self.api.request("GET", f"/accounts/{books.id}/ledger", params={"limit": 1000})
            assert response.status_code == 200, response.text
            entries = [(e["kind"], e["amount"], e["balance_after"]) for e in response.json()["data"]]
            assert entries == [(kind, money(amount), money(after)) for kind, amount, after in books.journal], books.id

    def teardown(self):
        if not self.books:
            return
        self.reconcile()
        self.check_ledgers()
        for books in self.books.values():
            response = self.api.request("GET", "/usage", params={"account_id": books.id, "limit": 1000})
            assert response.status_code == 200, response.text
            listed = sorted((e["event_id"], e["cost"]) for e in response.json()["data"])
            assert listed == sorted((e.event_id, money(e.cost)) for e in self.events.values() if e.account == books.id)


# The test


async def reset_database(engine) -> str:
    """Every example starts from empty books (the catalog stays), so it replays the same wherever it runs and the
    reconciliation sees only its own entries; returns a new admin key, as the old one went with the tables."""
    async with engine.begin() as conn:
        tables = (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        names = ", ".join(f'"{name}"' for name in tables if name not in KEEP_TABLES)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        created = await key_service.create(
            conn, KeyCreate(name="model admin", scopes=["admin"]), actor="test", now=datetime.now(UTC)
        )
    return created.key


@pytest.fixture
async def client(settings, conn_engine, clock) -> AsyncIterator[AsyncTestClient]:
    """The app with its expiry sweeper idle (once an hour): grants expire only when the model says so."""
    async with AsyncTestClient(create_app(replace(settings, expiry_sweep_seconds=3600), clock)) as client:
        yield client


@pytest.fixture
async def priced_model(client, admin, scratch, conn_engine, clock) -> AsyncIterator[str]:
    """A model of this test's own with simple prices and its own margin, so the model can price calls by hand."""
    model = f"{scratch}/mb"
    response = await client.put(
        "/catalog/models", json={"provider": scratch, "name": "mb", "type": "language"}, headers=admin
    )
    assert response.status_code in (200, 201), response.text
    price = {"model": model} | {kind: str(rate) for kind, rate in RATES.items()}
    assert (await client.post("/catalog/prices", json=price, headers=admin)).status_code == 201
    margin = {"scope": "model", "target": model, "margin": str(MARGIN)}
    assert (await client.put("/catalog/margins", json=margin, headers=admin)).status_code == 201
    clock.at = datetime.now(UTC)  # the price is in effect from now on
    yield model
    # `scratch` deletes the model's prices next: what was charged with them goes first.
    async with conn_engine.begin() as conn:
        tables = (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        names = ", ".join(f'"{name}"' for name in tables if name not in KEEP_TABLES)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def test_cost_by_hand_is_the_service_pricing():
    """The model prices by hand; the service's pure pricing function agrees on every shape of call used here."""
    rates = pricing.Rates(**RATES)
    for inp, out, cached, write in [
        (200_000, 20_000, 66_666, 66_667),
        (7, 1, 2, 2),
        (999, 333, 333, 333),
        (0, 0, 0, 0),
    ]:
        usage = pricing.Usage(inp, out, cached, write)
        quote = pricing.quote("m", rates, usage, embedding=False, margin=MARGIN, credits_per_usd=CREDITS_PER_USD)
        assert quote.credits == cost_of(inp, out, cached, write)


async def test_books_follow_the_model(client, admin, priced_model, clock, conn_engine):
    machine = type(
        "Machine",
        (BooksMachine,),
        {
            "api": Api(client, asyncio.get_running_loop(), admin),
            "model": priced_model,
            "price_from": clock.now(),
            "clock": clock,
            "engine": conn_engine,
        },
    )
    chosen = HYPOTHESIS_SETTINGS
    if os.environ.get("MODEL_EXAMPLES"):  # a longer, randomly seeded exploration, run by hand
        chosen = settings(
            chosen,
            derandomize=False,
            max_examples=int(os.environ["MODEL_EXAMPLES"]),
            stateful_step_count=int(os.environ.get("MODEL_STEPS", chosen.stateful_step_count)),
        )
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=chosen)
