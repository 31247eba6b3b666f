"""Upstream catalog sources against real HTTP servers on 127.0.0.1 answering like the real APIs:
OpenRouter's model lists, a local Ollama, LiteLLM's price file. No patched client, no network."""

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.catalog import sources
from app.catalog.sources import Limits, LitellmTarget, SourceError, Upstreams

# Short limits keep the slow and unreachable cases fast; retries still happen.
LIMITS = Limits(timeout=0.5, retries=1, max_bytes=256 * 1024, backoff=0.01)


# A real HTTP server


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0  # before the status line
    body_delay: float = 0.0  # between the headers and the body
    content_length: bool = True  # False: the body ends when the connection closes


@dataclass
class Upstream:
    """An HTTP server on an OS-assigned port. Each route answers with its replies in turn (the last
    one repeats); every request is recorded."""

    routes: dict[tuple[str, str], list[Reply | Callable[[Any], Reply]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Upstream":
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.answer(self, "GET")

            def do_POST(self) -> None:
                upstream.answer(self, "POST")

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client that gave up (a timeout test) is not a server error

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.stopping.set()  # wakes the slow handlers
        self.server.shutdown()
        self.server.server_close()

    def on(self, path: str, *replies: Reply | Callable[[Any], Reply] | Any, method: str = "GET") -> None:
        self.routes[(method, path)] = [r if isinstance(r, Reply) or callable(r) else json_reply(r) for r in replies]

    def hits(self, path: str) -> int:
        return sum(1 for _, p, _, _ in self.requests if p == path)

    def answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self.requests.append((method, handler.path, dict(handler.headers), body))
        replies = self.routes.get((method, handler.path))
        if not replies:
            reply = json_reply({"error": "not found"}, status=404)
        else:
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if callable(reply):
            reply = reply(json.loads(body) if body else None)
        self.stopping.wait(reply.delay)
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        if reply.content_length:
            handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.flush()
        self.stopping.wait(reply.body_delay)
        handler.wfile.write(reply.body)


def json_reply(body: Any, status: int = 200, **options) -> Reply:
    return Reply(status=status, body=json.dumps(body).encode(), **options)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def upstreams(url: str, **fields) -> Upstreams:
    return replace(Upstreams(openrouter_url=url, ollama_url=url, limits=LIMITS), **fields)


# Answers shaped like the real APIs


def openrouter_model(model_id: str, prompt: str = "0.0000025", completion: str = "0.00001", **extra) -> dict:
    """An entry of OpenRouter's GET /api/v1/models: USD per token as strings."""
    entry = {
        "id": model_id,
        "canonical_slug": model_id,
        "hugging_face_id": None,
        "name": f"Test: {model_id}",
        "created": 1715558400,
        "description": "A model.",
        "context_length": 128000,
        "architecture": {
            "modality": "text+image->text",
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": prompt,
            "completion": completion,
            "request": "0",
            "image": "0.003613",
            "web_search": "0",
            "internal_reasoning": "0",
            "input_cache_read": "0.00000125",
        },
        "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": True},
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice", "response_format", "seed"],
        "default_parameters": {},
        "expiration_date": None,
    }
    return entry | extra


OPENROUTER_MODELS = {
    "data": [
        openrouter_model("openai/gpt-4o"),
        openrouter_model(
            "anthropic/claude-sonnet-4",
            "0.000003",
            "0.000015",
            pricing={
                "prompt": "0.000003",
                "completion": "0.000015",
                "request": "0",
                "image": "0.0048",
                "input_cache_read": "0.0000003",
                "input_cache_write": "0.00000375",
            },
            supported_parameters=["max_tokens", "reasoning", "include_reasoning", "tools", "stop"],
        ),
        openrouter_model("meta-llama/llama-3.3-70b-instruct:free", "0", "0"),
        # The router's own entry: its price depends on the model it picks, written as -1.
        openrouter_model("openrouter/auto", "-1", "-1", pricing={"prompt": "-1", "completion": "-1"}),
        openrouter_model(
            "perplexity/sonar",
            "0.000001",
            "0.000001",
            pricing={"prompt": "0.000001", "completion": "0.000001", "request": "0.005"},
        ),
    ]
}
OPENROUTER_EMBEDDINGS = {
    "data": [
        openrouter_model(
            "openai/text-embedding-3-small",
            "0.00000002",
            "0",
            name="OpenAI: Text Embedding 3 Small",
            context_length=8192,
            architecture={
                "modality": "text->embeddings",
                "input_modalities": ["text"],
                "output_modalities": ["embeddings"],
                "tokenizer": "GPT",
            },
            pricing={"prompt": "0.00000002", "completion": "0", "request": "0", "image": "0"},
            top_provider={"context_length": 8192, "max_completion_tokens": None, "is_moderated": False},
            supported_parameters=[],
        )
    ]
}


def serve_openrouter(upstream: Upstream, models: Any = OPENROUTER_MODELS, embeddings: Any = OPENROUTER_EMBEDDINGS):
    upstream.on("/api/v1/models", models)
    upstream.on("/api/v1/embeddings/models", embeddings)


OLLAMA_TAGS = {
    "models": [
        {
            "name": "llama3.2:latest",
            "model": "llama3.2:latest",
            "modified_at": "2025-05-04T17:37:44.706015396-07:00",
            "size": 2019393189,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "3.2B",
                "quantization_level": "Q4_K_M",
            },
        },
        {
            "name": "nomic-embed-text:latest",
            "model": "nomic-embed-text:latest",
            "modified_at": "2025-04-21T09:12:02.12345-07:00",
            "size": 274302450,
            "digest": "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "nomic-bert",
                "families": ["nomic-bert"],
                "parameter_size": "137M",
                "quantization_level": "F16",
            },
        },
    ]
}
OLLAMA_SHOW = {
    "llama3.2:latest": {
        "modelfile": "FROM llama3.2:latest",
        "parameters": 'stop "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": OLLAMA_TAGS["models"][0]["details"],
        "model_info": {
            "general.architecture": "llama",
            "general.parameter_count": 3212749888,
            "llama.context_length": 131072,
            "llama.embedding_length": 3072,
            "llama.block_count": 28,
        },
        "capabilities": ["completion", "tools"],
        "modified_at": "2025-05-04T17:37:44.706015396-07:00",
    },
    "nomic-embed-text:latest": {
        "modelfile": "FROM nomic-embed-text:latest",
        "details": OLLAMA_TAGS["models"][1]["details"],
        "model_info": {
            "general.architecture": "nomic-bert",
            "nomic-bert.context_length": 2048,
            "nomic-bert.embedding_length": 768,
        },
        "capabilities": ["embedding"],
    },
}


def serve_ollama(upstream: Upstream, tags: Any = OLLAMA_TAGS, show: dict | None = None) -> None:
    show = OLLAMA_SHOW if show is None else show
    upstream.on("/api/tags", tags)

    def answer(request: Any) -> Reply:
        name = (request or {}).get("model")
        if name not in show:
            return json_reply({"error": f"model '{name}' not found"}, status=404)
        return json_reply(show[name])

    upstream.on("/api/show", answer, method="POST")


# Numbers exactly as LiteLLM's file writes them: per-token USD in exponent notation.
LITELLM_FILE = """{
    "sample_spec": {"max_tokens": "LEGACY", "input_cost_per_token": 0.0, "litellm_provider": "one of", "mode": "chat"},
    "gpt-4o": {"max_tokens": 16384, "max_input_tokens": 128000, "max_output_tokens": 16384,
               "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
               "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai", "mode": "chat",
               "supports_function_calling": true, "supports_vision": true, "supports_prompt_caching": true,
               "supports_response_schema": true},
    "text-embedding-3-small": {"max_tokens": 8191, "max_input_tokens": 8191, "output_vector_size": 1536,
                               "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0,
                               "litellm_provider": "openai", "mode": "embedding"},
    "gemini/gemini-1.5-pro": {"max_tokens": 8192, "max_input_tokens": 2097152, "max_output_tokens": 8192,
                              "input_cost_per_token": 1.25e-06, "input_cost_per_token_above_128k_tokens": 2.5e-06,
                              "output_cost_per_token": 5e-06, "output_cost_per_token_above_128k_tokens": 1e-05,
                              "litellm_provider": "gemini", "mode": "chat", "deprecation_date": "2025-09-24"},
    "gemini/gemini-exp-1206": {"max_tokens": 8192, "input_cost_per_token": 0, "output_cost_per_token": 0,
                               "litellm_provider": "gemini", "mode": "chat"},
    "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
    "ollama/llama3": {"max_tokens": 8192, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                      "litellm_provider": "ollama", "mode": "chat"},
    "some-router/odd": {"input_cost_per_token": 1e-06, "litellm_provider": "unknown-provider", "mode": "chat"},
    "gpt-broken": {"input_cost_per_token": "cheap", "output_cost_per_token": 1e-05,
                   "litellm_provider": "openai", "mode": "chat"}
}"""


def litellm_mapping(provider: str, local: str) -> dict[str, LitellmTarget]:
    return {
        "openai": LitellmTarget(provider, ("openai/",)),
        "gemini": LitellmTarget(provider, ("gemini/",)),
        "ollama": LitellmTarget(local, ("ollama/",), free=True),
    }


async def read(name: str, up: Upstreams, **options) -> sources.SourceData:
    async with sources.client(up.limits) as http:
        if name == "openrouter":
            return await sources.read_openrouter(http, up, **options)
        if name == "ollama":
            return await sources.read_ollama(http, up)
        return await sources.read_litellm(http, up, options.get("location"))


def by_name(data: sources.SourceData) -> dict[str, dict]:
    return {entry["name"]: entry for entry in data.models}


# Exact arithmetic


@pytest.mark.parametrize(
    ("per_token", "per_million"),
    [
        ("0.0000025", "2.5"),
        ("0.00001", "10"),
        ("0.000000075", "0.075"),
        ("0.00000375", "3.75"),
        ("0", "0"),
        ("0.000000123456789012345678901234567", "0.123456789012345678901234567"),
        (Decimal("2.5E-06"), "2.5"),
        (Decimal("1e-05"), "10"),
        (0, "0"),
    ],
)
def test_per_token_prices_become_exact_per_million(per_token, per_million):
    assert sources.exact(sources.per_million(per_token, "x")) == per_million


@pytest.mark.parametrize("value", ["abc", "", "NaN", "Infinity", 1.5, True, None, [], "1e999999999"])
def test_a_price_that_is_not_a_decimal_is_refused(value):
    with pytest.raises((ValueError, ArithmeticError)):
        sources.per_million(value, "pricing.prompt")


# OpenRouter


async def test_openrouter_models_and_embeddings(upstream):
    serve_openrouter(upstream)
    data = await read("openrouter", upstreams(upstream.url, openrouter_api_key="sk-or-test"))
    assert (data.source, data.errors, data.complete_listing_of) == ("api", [], "openrouter")
    models = by_name(data)
    # What the router lists about a model, each fact labelled with the listing.
    gpt4o = models["openai/gpt-4o"]
    assert (gpt4o["input_modalities"], gpt4o["output_modalities"]) == (["text", "image"], ["text"])
    listed = ("context_window", "max_output_tokens", "input_modalities", "output_modalities", "tools", "vision")
    listed += ("audio_input", "reasoning", "json_output", "prompt_caching", "created")
    assert gpt4o["facts"] == dict.fromkeys(listed, "openrouter api")
    assert models["openai/text-embedding-3-small"]["output_modalities"] == ["embedding"]
    assert set(models) == {
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4",
        "meta-llama/llama-3.3-70b-instruct:free",
        "openrouter/auto",
        "perplexity/sonar",
        "openai/text-embedding-3-small",
    }
    gpt4o = models["openai/gpt-4o"]
    assert gpt4o["id"] == "openrouter/openai/gpt-4o"
    assert (gpt4o["display_name"], gpt4o["type"], gpt4o["created"]) == ("Test: openai/gpt-4o", "language", "2024-05-13")
    assert (gpt4o["context_window"], gpt4o["max_output_tokens"]) == (128000, 16384)
    assert gpt4o["capabilities"] | {} == {
        "tools": True,
        "vision": True,
        "audio_input": False,
        "reasoning": False,
        "json_output": True,
        "prompt_caching": True,
    }
    (price,) = gpt4o["prices"]
    assert (price["input"], price["output"], price["cached_input"], price["per_request"]) == ("2.5", "10", "1.25", "0")
    claude = models["anthropic/claude-sonnet-4"]["prices"][0]
    assert (claude["input"], claude["output"], claude["cached_input"], claude["cache_write"]) == (
        "3",
        "15",
        "0.3",
        "3.75",
    )
    assert models["anthropic/claude-sonnet-4"]["capabilities"]["reasoning"] is True
    assert models["perplexity/sonar"]["prices"][0]["per_request"] == "0.005"  # USD per request, not per token
    free = models["meta-llama/llama-3.3-70b-instruct:free"]["prices"][0]
    assert (free["input"], free["output"]) == ("0", "0")
    embedding = models["openai/text-embedding-3-small"]
    assert (embedding["type"], embedding["max_input_tokens"], embedding["prices"][0]["input"]) == (
        "embedding",
        8192,
        "0.02",
    )
    # The key goes to OpenRouter, and only there.
    assert all(headers.get("Authorization") == "Bearer sk-or-test" for _, _, headers, _ in upstream.requests)


async def test_the_minus_one_sentinel_is_a_variable_price_never_a_negative_one(upstream):
    serve_openrouter(upstream)
    auto = by_name(await read("openrouter", upstreams(upstream.url)))["openrouter/auto"]
    (price,) = auto["prices"]
    assert [price[kind] for kind in ("input", "output", "cached_input", "cache_write")] == [None] * 4
    assert price["source"] == "openrouter api (variable price)"


async def test_partial_data_skips_and_reports_the_bad_entries(upstream):
    no_pricing = openrouter_model("acme/no-pricing")
    del no_pricing["pricing"]
    bad_price = openrouter_model("acme/bad-price", prompt="cheap")
    models = {
        "data": [
            openrouter_model("openai/gpt-4o"),
            no_pricing,
            bad_price,
            openrouter_model("acme/huge-context", context_length=10**12),
            openrouter_model("acme/bad-name!"),
            "not an object",
            openrouter_model("anthropic/claude-sonnet-4", "0.000003", "0.000015"),
        ]
    }
    serve_openrouter(upstream, models=models)
    data = await read("openrouter", upstreams(upstream.url))
    assert set(by_name(data)) == {"openai/gpt-4o", "anthropic/claude-sonnet-4", "openai/text-embedding-3-small"}
    assert len(data.errors) == 5, data.errors
    joined = "\n".join(data.errors)
    for expected in (
        "data[1] (acme/no-pricing) skipped: `pricing.prompt` is missing",
        "data[2] (acme/bad-price) skipped: `pricing.prompt` is not a decimal number: 'cheap'",
        "data[3] (acme/huge-context) skipped: `context_length` is not a token count",
        "data[4] (acme/bad-name!) skipped: `id` is not a usable model name",
        "data[5] (no id) skipped: `model` is not an object",
    ):
        assert expected in joined
    # Skipped entries with an id are still listed (they have not vanished); an entry without one
    # makes the listing incomplete, so nothing may be deprecated from it.
    assert "openrouter/acme/no-pricing" in data.listed
    assert data.complete_listing_of is None


async def test_malformed_json_is_a_clear_error(upstream):
    upstream.on("/api/v1/models", Reply(body=b'{"data": [{"id": "openai/gpt-4o", "pricing": {'))
    with pytest.raises(SourceError) as raised:
        await read("openrouter", upstreams(upstream.url))
    assert not raised.value.unreachable
    assert raised.value.message.startswith(f"openrouter: {upstream.url}/api/v1/models: malformed JSON")
    assert upstream.hits("/api/v1/models") == 1  # a broken answer is not retried


@pytest.mark.parametrize(
    "body",
    [b'{"models": []}', b"[]", b'{"data": {"id": "x"}}', b'{"data": null}', b'{"data": [NaN]}'],
)
async def test_wrong_shape_is_a_clear_error(upstream, body):
    upstream.on("/api/v1/models", Reply(body=body))
    with pytest.raises(SourceError, match="openrouter: ") as raised:
        await read("openrouter", upstreams(upstream.url))
    assert "malformed JSON" in raised.value.message or "expected an object with a `data` list" in raised.value.message


async def test_server_errors_are_retried_with_backoff(upstream):
    upstream.on("/api/v1/models", json_reply({"error": "busy"}, status=503), OPENROUTER_MODELS)
    upstream.on("/api/v1/embeddings/models", OPENROUTER_EMBEDDINGS)
    data = await read("openrouter", upstreams(upstream.url))
    assert (data.source, len(data.models)) == ("api", 6)
    assert upstream.hits("/api/v1/models") == 2


async def test_client_errors_are_not_retried(upstream):
    upstream.on("/api/v1/models", json_reply({"error": {"code": 401, "message": "No auth"}}, status=401))
    with pytest.raises(SourceError, match="answered HTTP 401"):
        await read("openrouter", upstreams(upstream.url))
    assert upstream.hits("/api/v1/models") == 1


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(json_reply(OPENROUTER_MODELS, delay=1), id="slow to answer"),
        pytest.param(json_reply(OPENROUTER_MODELS, body_delay=1), id="slow body"),
    ],
)
async def test_a_slow_server_times_out_and_openrouter_falls_back_to_the_curated_list(upstream, reply):
    upstream.on("/api/v1/models", reply)
    started = time.monotonic()
    data = await read("openrouter", upstreams(upstream.url, limits=replace(LIMITS, timeout=0.2)))
    assert time.monotonic() - started < 0.9  # two attempts of 0.2 s, not the server's 1 s
    assert upstream.hits("/api/v1/models") == 2
    assert data.source == "curated_fallback"
    assert "no complete answer within 0.2 s; 2 attempts" in data.detail
    assert (data.only_new, data.complete_listing_of, data.errors) == (True, None, [])
    assert "openai/gpt-4o" in by_name(data)


async def test_unreachable_openrouter_falls_back_to_the_curated_list(closed_port):
    data = await read("openrouter", upstreams(closed_port, openrouter_provider="mine"))
    assert data.source == "curated_fallback"
    assert "unreachable (ConnectError" in data.detail
    models = by_name(data)
    assert len(models) >= 20
    assert all(entry["id"] == f"mine/{name}" and entry["prices"] for name, entry in models.items())
    assert models["openai/gpt-4o-mini"]["prices"][-1]["input"] == "0.15"


async def test_curated_on_request_does_not_call_the_api(upstream):
    data = await read("openrouter", upstreams(upstream.url), curated=True)
    assert (data.source, data.detail, upstream.requests) == ("curated", None, [])
    assert len(data.models) == len(sources.CURATED_OPENROUTER)  # every curated model is in the bundle


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
async def test_a_response_over_the_size_limit_is_refused(upstream, content_length):
    big = {"data": [openrouter_model(f"acme/model-{i}") for i in range(400)]}
    upstream.on("/api/v1/models", json_reply(big, content_length=content_length))
    assert len(json.dumps(big)) > LIMITS.max_bytes
    with pytest.raises(SourceError, match=r"exceeds the 262144-byte limit \(BILLING_SYNC_MAX_BYTES\)") as raised:
        await read("openrouter", upstreams(upstream.url))
    assert not raised.value.unreachable


async def test_without_the_embedding_list_nothing_counts_as_vanished(upstream):
    upstream.on("/api/v1/models", OPENROUTER_MODELS)
    upstream.on("/api/v1/embeddings/models", Reply(body=b"<html>oops</html>", content_type="text/html"))
    data = await read("openrouter", upstreams(upstream.url))
    assert data.source == "api" and len(data.models) == 5
    assert data.complete_listing_of is None
    assert "embedding models not synced" in data.errors[0]


# Ollama


async def test_ollama_installed_models_are_free(upstream):
    serve_ollama(upstream)
    data = await read("ollama", upstreams(upstream.url, ollama_provider="local"))
    assert (data.source, data.errors, data.complete_listing_of) == ("ollama", [], "local")
    models = by_name(data)
    llama, embed = models["llama3.2:latest"], models["nomic-embed-text:latest"]
    assert (llama["id"], llama["type"], llama["context_window"], llama["dimensions"]) == (
        "local/llama3.2:latest",
        "language",
        131072,
        None,
    )
    assert llama["capabilities"] == {"tools": True, "vision": False, "reasoning": False}
    assert (llama["prices"][0]["input"], llama["prices"][0]["output"]) == ("0", "0")
    assert (embed["type"], embed["dimensions"], embed["max_input_tokens"]) == ("embedding", 768, 2048)
    assert (embed["prices"][0]["input"], embed["prices"][0]["output"]) == ("0", None)
    shown = [json.loads(body) for method, path, _, body in upstream.requests if path == "/api/show"]
    assert shown == [{"model": "llama3.2:latest"}, {"model": "nomic-embed-text:latest"}]


async def test_ollama_model_without_details_is_skipped_and_reported(upstream):
    serve_ollama(upstream, show={"llama3.2:latest": OLLAMA_SHOW["llama3.2:latest"]})
    data = await read("ollama", upstreams(upstream.url))
    assert set(by_name(data)) == {"llama3.2:latest"}
    assert "answered HTTP 404; model 'nomic-embed-text:latest' skipped" in data.errors[0]
    assert "ollama/nomic-embed-text:latest" in data.listed and data.complete_listing_of == "ollama"


async def test_unreachable_ollama_is_a_state_not_an_error(closed_port):
    data = await read("ollama", upstreams(closed_port))
    assert (data.source, data.models, data.errors) == ("ollama_unreachable", [], [])
    assert data.detail.startswith(f"ollama: {closed_port}/api/tags unreachable")


async def test_ollama_malformed_tags_is_an_error(upstream):
    upstream.on("/api/tags", {"models": "llama3.2"})
    with pytest.raises(SourceError, match="expected an object with a `models` list"):
        await read("ollama", upstreams(upstream.url))


# LiteLLM


async def test_litellm_file(tmp_path, upstream):
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(LITELLM_FILE)
    up = upstreams(upstream.url, litellm_providers=litellm_mapping("p", "local"))
    data = await read("litellm", up, location=str(path))
    assert data.source == "file"
    models = {entry["id"]: entry for entry in data.models}
    assert set(models) == {
        "p/gpt-4o",
        "p/text-embedding-3-small",
        "p/gemini-1.5-pro",
        "p/gemini-exp-1206",
        "local/llama3",
    }
    assert data.errors == ["litellm: 'gpt-broken' skipped: `input_cost_per_token` is not a decimal number: 'cheap'"]
    gpt4o = models["p/gpt-4o"]
    assert gpt4o["prices"][0] | {} == {
        "input": "2.5",
        "output": "10",
        "cached_input": "1.25",
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": "0",
        "tiers": [],
        "source": "litellm model_prices_and_context_window.json",
    }
    assert gpt4o["capabilities"] == {"tools": True, "vision": True, "prompt_caching": True, "json_output": True}
    assert (gpt4o["context_window"], gpt4o["max_output_tokens"]) == (128000, 16384)
    embedding = models["p/text-embedding-3-small"]
    assert (embedding["type"], embedding["dimensions"], embedding["prices"][0]["input"]) == ("embedding", 1536, "0.02")
    gemini = models["p/gemini-1.5-pro"]
    assert gemini["deprecation_date"] == "2025-09-24"
    assert gemini["prices"][0]["tiers"] == [
        {"above_input_tokens": 128000, "input": "2.5", "output": "10", "cached_input": None, "cache_write": None}
        | {"cache_write_1h": None}
    ]
    assert models["p/gemini-exp-1206"]["prices"] == []  # all zero: LiteLLM's "unknown"
    assert models["local/llama3"]["prices"][0]["input"] == "0"  # a local model is free
    assert [p["id"] for p in data.providers] == ["local", "p"]


async def test_litellm_from_a_url(upstream):
    upstream.on("/model_prices_and_context_window.json", Reply(body=LITELLM_FILE.encode()))
    up = upstreams(upstream.url, litellm_providers=litellm_mapping("p", "local"))
    data = await read("litellm", up, location=f"{upstream.url}/model_prices_and_context_window.json")
    assert data.source == "url" and len(data.models) == 5


async def test_litellm_bad_files(tmp_path):
    up = upstreams("http://127.0.0.1:9", limits=replace(LIMITS, max_bytes=1024))
    with pytest.raises(SourceError, match="cannot read"):
        await read("litellm", up, location=str(tmp_path / "missing.json"))
    (tmp_path / "big.json").write_text(LITELLM_FILE)
    with pytest.raises(SourceError, match="exceeds the 1024-byte limit"):
        await read("litellm", up, location=str(tmp_path / "big.json"))
    (tmp_path / "broken.json").write_text('{"gpt-4o": {"input_cost_per_token": 2.5e-06,')
    with pytest.raises(SourceError, match=r"broken\.json: malformed JSON"):
        await read("litellm", up, location=str(tmp_path / "broken.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(SourceError, match="expected an object of models"):
        await read("litellm", up, location=str(tmp_path / "list.json"))
    with pytest.raises(SourceError, match="no price file given"):
        await read("litellm", up)


async def test_the_real_client_settings_are_bounded():
    client = sources.client(LIMITS)
    async with client:
        assert client.timeout == httpx.Timeout(0.5)
        assert client.headers["User-Agent"] == sources.USER_AGENT
