"""What the sync and the async client share, without I/O: requests are built, retried and decoded here
as generators that yield what to do next (`Send` a request, `Sleep` before a retry); `Client` and
`AsyncClient` only carry the steps out, one with blocking calls, the other with awaits (`drive` below
and its async twin in aio.py)."""

import email.utils
import random
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from creditmeter.errors import APIConnectionError, APIError, error_class
from creditmeter.models import ErrorObject

T = TypeVar("T")
USER_AGENT = "creditmeter-python/0.1.0"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# The service answers 503 while its database is unavailable, with Retry-After; 502 and 504 come
# from proxies in front of it.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The request never reached the service: resending cannot do anything twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may or may not have been handled: resent only when it carries its idempotency key.
MAYBE_SENT = (httpx.ReadError, httpx.WriteError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One operation: what to send and what type the answer decodes to (None: no body expected)."""

    method: str
    path: str
    answer: type[T] | None
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Resending it is harmless: a read, or a write the service recognises again (an `event_id`, an
    # `Idempotency-Key`, a release). Others are resent only when they surely were not handled.
    idempotent: bool = True


@dataclass(frozen=True, slots=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Program = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential backoff with jitter: attempt n waits a random time in [delay/2, delay], where delay
    is `backoff` * 2**n up to `max_backoff`; a Retry-After from the service is honoured (up to
    `max_retry_after`) instead."""

    max_retries: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


NO_RETRY = Retry(max_retries=0)


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds or as an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def segment(value: str) -> str:
    """A path segment: an id may hold `/` (`openai/gpt-4o`), `:` or spaces; the service decodes `%2F`."""
    return quote(value, safe="")


def params_of(**values: Any) -> list[tuple[str, str]]:
    """Query parameters, without the None ones; a list repeats its key; times as RFC 3339."""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        key = name.rstrip("_")  # `from_` is sent as `from`
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, datetime):
                item = item.isoformat()
            pairs.append((key, str(item)))
    return pairs


def body_of(**values: Any) -> dict[str, Any]:
    """A JSON body without the None fields: the service's defaults apply to what is not said."""
    return {name: value for name, value in values.items() if value is not None}


class Core:
    """Builds each request, runs the retry policy and decodes the answer or raises the typed error."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        retry: Retry | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if api_key:
            self.headers["X-API-Key"] = api_key
        self._decoders: dict[type, msgspec.json.Decoder] = {}

    def request(self, call: Call) -> httpx.Request:
        headers = dict(self.headers)
        headers.update(call.headers)
        content = None
        if call.body is not None:
            content = msgspec.json.encode(call.body)
            headers["Content-Type"] = "application/json"
        return httpx.Request(
            call.method, self.base_url + call.path, params=call.params or None, content=content, headers=headers
        )

    def exchange(self, call: Call[T]) -> Program[T]:
        """Sends the call until it gets an answer worth returning, and decodes it. Every attempt sends
        the same request: same body (so the same `event_id`s) and the same `Idempotency-Key`."""
        request = self.request(call)
        attempt = 0
        while True:
            try:
                response = yield Send(request)
            except httpx.TransportError as exc:
                retryable = isinstance(exc, NOT_SENT) or (isinstance(exc, MAYBE_SENT) and call.idempotent)
                if not retryable or attempt >= self.retry.max_retries:
                    raise APIConnectionError(f"{call.method} {call.path}: {exc!r}") from exc
                yield Sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            status = response.status_code
            # A 429 was refused before any work; a 5xx may have done some, so it needs idempotency.
            retryable = status == 429 or (status in RETRY_STATUSES and call.idempotent)
            if retryable and attempt < self.retry.max_retries:
                yield Sleep(self.retry.delay(attempt, retry_after(response)))
                attempt += 1
                continue
            return self.decode(call, response)

    def decode(self, call: Call[T], response: httpx.Response) -> T:
        if response.status_code >= 400:
            raise api_error(response)
        if call.answer is None:
            return None  # type: ignore[return-value]
        if call.answer is str:  # a CSV export
            return response.text  # type: ignore[return-value]
        decoder = self._decoders.get(call.answer)
        if decoder is None:
            decoder = self._decoders[call.answer] = msgspec.json.Decoder(call.answer)
        return decoder.decode(response.content)


def api_error(response: httpx.Response) -> APIError:
    status = response.status_code
    try:
        error = msgspec.json.decode(response.content, type=dict[str, ErrorObject])["error"]
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        # Not the service's error shape: a proxy or a load balancer answered.
        error = ErrorObject(message=response.text[:500] or response.reason_phrase, type="api_error", code="http_error")
    return error_class(status)(
        status,
        error.code,
        error.message,
        type=error.type,
        param=error.param,
        request_id=response.headers.get("x-request-id"),
        response=response,
    )


def drive(program: Program[T], send, sleep) -> T:
    """Runs a program with blocking `send(request) -> response` and `sleep(seconds)`."""
    step = next(program)
    while True:
        try:
            if isinstance(step, Sleep):
                sleep(step.seconds)
                step = program.send(None)
                continue
            try:
                response = send(step.request)
            except httpx.TransportError as exc:
                step = program.throw(exc)
            else:
                step = program.send(response)
        except StopIteration as stop:
            return stop.value
