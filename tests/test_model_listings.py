"""The model pickers (GET /api/models/openrouter, /api/models/openrouter/embeddings, /api/models/ollama) against real
HTTP servers on 127.0.0.1 answering like OpenRouter and Ollama (tests/test_catalog_sources.py): live, curated,
unreachable, slow and malformed upstreams; prices that are the customer's, exact to the digit; the curated lists
from the catalog; auth, bad parameters and the OpenAPI document."""

import asyncio
import logging
import re
import time
from dataclasses import replace
from decimal import Decimal

import pytest

from app.catalog import listings
from app.catalog.listings import CURATED_EMBEDDINGS, RETRY_SECONDS
from app.catalog.sources import CURATED_OPENROUTER
from tests import test_catalog_sources
from tests.helpers import assert_error
from tests.test_catalog_sources import (
    LIMITS,
    OLLAMA_TAGS,
    OPENROUTER_EMBEDDINGS,
    Reply,
    json_reply,
    openrouter_model,
    serve_ollama,
    upstreams,
)

# The real HTTP servers of the source tests.
upstream = test_catalog_sources.upstream
closed_port = test_catalog_sources.closed_port

OPENROUTER = "/api/models/openrouter"
EMBEDDINGS = "/api/models/openrouter/embeddings"
OLLAMA = "/api/models/ollama"
MODEL_FIELDS = {"id", "name", "provider", "context", "pricing"}
EMBEDDING_FIELDS = {"id", "name", "provider", "dimensions", "context", "cost_per_million"}
OLLAMA_FIELDS = {"id", "name", "parameter_size", "quantization", "family", "size_mb"}
# An exact decimal string as the document writes prices: no exponent, no trailing zero ("0.00000015", "0").
PLAIN = re.compile(r"^\d+(\.\d*[1-9])?$")
MARGIN = Decimal("1.4")  # DEFAULT_MARGIN

pytestmark = pytest.mark.shared_app  # one app for the module: `client` and `clock` are its


@pytest.fixture(autouse=True)
def default_upstreams(client):
    """Tests point the module's app at their own upstreams: each starts from the defaults, with no kept answers."""
    state = client.app.state
    default = state.upstreams
    state.listings = listings.Listings()
    yield
    state.upstreams = default


@pytest.fixture
async def reader(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read")}


@pytest.fixture
async def finance(make_key) -> dict[str, str]:
    return {"X-API-Key": await make_key("catalog:read", "ledger:read")}


def live(client, url: str, **fields) -> None:
    """Point the app at a local upstream, with an OpenRouter key: the live listings are asked."""
    client.app.state.upstreams = upstreams(url, openrouter_api_key="sk-or-test", **fields)


async def data(client, path: str, headers: dict[str, str], **params) -> dict:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "data"} and body["success"] is True, body
    return body["data"]


def by_id(listing: dict) -> dict[str, dict]:
    assert listing["total"] == len(listing["models"])
    return {model["id"]: model for model in listing["models"]}


def named(model_id: str, name: str, *args, **fields) -> dict:
    return openrouter_model(model_id, *args, name=name, **fields)


# Live, from OpenRouter's listing: what it names, in the order it lists, at the customer's price.

LIVE_MODELS = {
    "data": [
        named("openai/gpt-4o", "OpenAI: GPT-4o"),
        named("meta-llama/llama-3.3-70b-instruct:free", "Meta: Llama 3.3 70B Instruct (free)", "0", "0"),
        # Variable: priced by the model the router picks. No price is shown, never a negative one.
        named("openrouter/auto", "Auto Router", "-1", "-1", pricing={"prompt": "-1", "completion": "-1"}),
        # More digits than any float holds.
        named("acme/long-price", "Acme: Long Price", "0.000000123456789012345678901234567", "0.00000000000000000001"),
        # An embedding model in the language listing belongs to the embedding listing.
        OPENROUTER_EMBEDDINGS["data"][0],
    ]
}


async def test_live_openrouter_models_at_the_customers_price_per_token(client, reader, upstream):
    upstream.on("/api/v1/models", LIVE_MODELS)
    live(client, upstream.url)
    listing = await data(client, OPENROUTER, reader)
    assert listing["source"] == "api"
    models = by_id(listing)
    assert list(models) == [
        "openai/gpt-4o",
        "meta-llama/llama-3.3-70b-instruct:free",
        "openrouter/auto",
        "acme/long-price",
    ]
    assert all(set(model) <= MODEL_FIELDS and set(model) >= MODEL_FIELDS - {"pricing"} for model in models.values())
    # OpenRouter's 0.0000025 and 0.00001 USD a token x the 1.4 margin: 3.5 and 14 USD per 1M tokens.
    assert models["openai/gpt-4o"] == {
        "id": "openai/gpt-4o",
        "name": "GPT-4o",
        "provider": "OpenAI",
        "context": 128000,
        "pricing": {"prompt": "0.0000035", "completion": "0.000014"},
    }
    assert models["meta-llama/llama-3.3-70b-instruct:free"]["pricing"] == {"prompt": "0", "completion": "0"}
    assert (models["meta-llama/llama-3.3-70b-instruct:free"]["provider"], models["openrouter/auto"]["provider"]) == (
        "Meta",
        "OpenRouter",  # no "Vendor: " in its name: the vendor comes from the id
    )
    assert "pricing" not in models["openrouter/auto"]
    # 0.123456789012345678901234567 USD per 1M x 1.4 = 0.1728395046172839504617283938, digit for digit.
    assert models["acme/long-price"]["pricing"] == {
        "prompt": "0.0000001728395046172839504617283938",
        "completion": "0.000000000000000000014",
    }
    # The key goes to OpenRouter, as catalog sync sends it.
    assert all(headers.get("Authorization") == "Bearer sk-or-test" for _, _, headers, _ in upstream.requests)

    # Kept a while: the next requests do not ask OpenRouter again, and the embedding listing was never asked.
    for _ in range(3):
        assert (await data(client, OPENROUTER, reader))["models"] == listing["models"]
    assert (upstream.hits("/api/v1/models"), upstream.hits("/api/v1/embeddings/models")) == (1, 0)


async def test_the_margin_in_effect_prices_the_live_listing(client, admin, reader, upstream, scratch):
    upstream.on("/api/v1/models", LIVE_MODELS)
    live(client, upstream.url, openrouter_provider=scratch)
    before = by_id(await data(client, OPENROUTER, reader))["openai/gpt-4o"]["pricing"]
    margin = {"scope": "provider", "target": scratch, "margin": "2"}
    assert (await client.put("/catalog/margins", json=margin, headers=admin)).status_code == 201
    after = by_id(await data(client, OPENROUTER, reader))["openai/gpt-4o"]["pricing"]
    assert (before, after) == (
        {"prompt": "0.0000035", "completion": "0.000014"},
        {"prompt": "0.000005", "completion": "0.00002"},  # 2.5 and 10 USD per 1M x 2
    )
    assert upstream.hits("/api/v1/models") == 1  # the margin applies to the kept listing


async def test_concurrent_requests_share_one_fetch(client, reader, upstream):
    upstream.on("/api/v1/models", json_reply(LIVE_MODELS, delay=0.3))
    live(client, upstream.url)
    answers = await asyncio.gather(*(data(client, OPENROUTER, reader) for _ in range(4)))
    assert [answer["source"] for answer in answers] == ["api"] * 4
    assert upstream.hits("/api/v1/models") == 1


async def test_bad_entries_are_skipped_and_the_rest_listed(client, reader, upstream, caplog):
    no_pricing = named("acme/no-pricing", "Acme: No Pricing")
    del no_pricing["pricing"]
    models = {
        "data": [
            named("openai/gpt-4o", "OpenAI: GPT-4o"),
            no_pricing,
            named("acme/bad-price", "Acme: Bad", prompt="cheap"),
            named("acme/bad-name!", "Acme: Bad Name"),
            "not an object",
            named("openai/gpt-4o", "OpenAI: GPT-4o (again)"),  # listed twice: the first stands
            # Prices no model has: "1E-900000" would be a 900 kB string in every answer.
            named("acme/tiny", "Acme: Tiny", prompt="1E-40"),
            named("acme/huge", "Acme: Huge", completion="1E+20"),
        ]
    }
    upstream.on("/api/v1/models", models)
    live(client, upstream.url)
    with caplog.at_level(logging.WARNING, logger="app.catalog.listings"):
        listing = await data(client, OPENROUTER, reader)
    assert (listing["source"], list(by_id(listing))) == ("api", ["openai/gpt-4o"])
    assert listing["models"][0]["name"] == "GPT-4o"
    assert "4 entries skipped" in caplog.text and "acme/no-pricing" in caplog.text
    assert "'acme/tiny' skipped: a price out of range" in caplog.text and "'acme/huge' skipped" in caplog.text


# Curated: from the catalog, when OpenRouter is not configured or not asked


async def test_without_a_key_the_curated_list_comes_from_the_catalog(client, reader, finance, upstream):
    client.app.state.upstreams = upstreams(upstream.url)  # no OPENROUTER_API_KEY
    listing = await data(client, OPENROUTER, reader)
    assert upstream.requests == []  # nothing left the service
    assert listing["source"] == "curated"
    models = by_id(listing)
    assert list(models) == list(CURATED_OPENROUTER)  # the bundled catalog has every one
    for model in models.values():
        assert MODEL_FIELDS - {"pricing"} <= set(model) <= MODEL_FIELDS, model
        assert model["name"] and model["provider"]
        for price in model["pricing"].values():
            assert PLAIN.match(price), (model["id"], price)
    assert (models["openai/gpt-4o-mini"]["provider"], models["anthropic/claude-sonnet-4"]["provider"]) == (
        "OpenAI",
        "Anthropic",
    )
    assert models["meta-llama/llama-3.3-70b-instruct"]["provider"] == "Meta"

    # Each price is the catalog's upstream USD per 1M x the margin, / 10^6: the customer's price per token.
    for model_id in ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "deepseek/deepseek-r1"):
        catalog = (await client.get(f"/models/openrouter/{model_id}", headers=finance)).json()
        upstream_usd, margin = catalog["upstream"], Decimal(catalog["margin"])
        pricing = {kind: Decimal(price) for kind, price in models[model_id]["pricing"].items()}
        assert pricing == {
            "prompt": Decimal(upstream_usd["input"]) * margin / 10**6,
            "completion": Decimal(upstream_usd["output"]) * margin / 10**6,
        }
        if catalog["context_window"] is not None:
            assert models[model_id]["context"] == catalog["context_window"]


async def test_gpt_4o_mini_worked_example(client, reader):
    """The document's example model: 0.15 and 0.6 USD per 1M in the bundled catalog, x 1.4, per token."""
    mini = by_id(await data(client, OPENROUTER, reader))["openai/gpt-4o-mini"]
    assert mini == {
        "id": "openai/gpt-4o-mini",
        "name": mini["name"],
        "provider": "OpenAI",
        "context": 128000,
        "pricing": {"prompt": "0.00000021", "completion": "0.00000084"},
    }


@pytest.mark.parametrize("path", [OPENROUTER, EMBEDDINGS])
async def test_curated_on_request_does_not_ask_openrouter(client, reader, upstream, path):
    live(client, upstream.url)
    listing = await data(client, path, reader, curated="true")
    assert (listing["source"], upstream.requests) == ("curated", [])
    assert listing["total"] == len(listing["models"]) > 0


# OpenRouter down or unusable: the curated list, and the reason in the log


async def test_unreachable_openrouter_answers_the_curated_list(client, reader, closed_port):
    client.app.state.upstreams = upstreams(closed_port)
    curated = await data(client, OPENROUTER, reader)
    live(client, closed_port)
    for path in (OPENROUTER, EMBEDDINGS):
        fallback = await data(client, path, reader)
        assert fallback["source"] == "curated_fallback"
        if path == OPENROUTER:
            assert fallback["models"] == curated["models"]
        assert fallback["total"] == len(fallback["models"]) > 0


async def test_a_slow_openrouter_times_out_and_is_not_asked_again_at_once(client, reader, upstream, caplog):
    upstream.on("/api/v1/models", json_reply(LIVE_MODELS, delay=1))
    live(client, upstream.url, limits=replace(LIMITS, timeout=0.2))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="app.catalog.listings"):
        listing = await data(client, OPENROUTER, reader)
    assert time.monotonic() - started < 0.9  # two attempts of 0.2 s, not the server's 1 s
    assert listing["source"] == "curated_fallback"
    assert "no complete answer within 0.2 s; 2 attempts" in caplog.text
    assert f"the curated list answers for the next {RETRY_SECONDS:g} s" in caplog.text
    # Meanwhile the fallback answers at once, without waiting for OpenRouter again.
    started = time.monotonic()
    assert (await data(client, OPENROUTER, reader))["source"] == "curated_fallback"
    assert time.monotonic() - started < 0.15
    assert upstream.hits("/api/v1/models") == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=b'{"data": [{"id": "openai/gpt-4o", "pricing": {"prompt": "0.0000025"'), "malformed JSON"),
        (Reply(body=b'{"models": []}'), "expected an object with a `data` list"),
        (Reply(body=b'{"data": [NaN]}'), "malformed JSON"),
        (json_reply({"error": {"code": 401, "message": "No auth"}}, status=401), "answered HTTP 401"),
        (json_reply({"error": "busy"}, status=503), "unreachable (HTTP 503; 2 attempts)"),
        (Reply(body=b" " * 300_000), "exceeds the 262144-byte limit"),
        (json_reply({"data": []}), "the listing has no usable model"),
        (json_reply({"data": [{"id": "acme/x"}, "?"]}), "the listing has no usable model"),
        (Reply(body=b"<html>oops</html>", content_type="text/html"), "malformed JSON"),
        # The test server writes one more header this way: a body that is not the gzip it claims to be.
        (Reply(body=b'{"data": []}', content_type="application/json\r\nContent-Encoding: gzip"), "DecodingError"),
    ],
    ids=[
        "malformed JSON",
        "wrong shape",
        "NaN",
        "HTTP 401",
        "HTTP 503",
        "too large",
        "empty",
        "no usable entry",
        "HTML",
        "bad encoding",
    ],
)
async def test_an_unusable_answer_gives_the_curated_fallback(client, reader, upstream, caplog, reply, reason):
    upstream.on("/api/v1/models", reply)
    upstream.on("/api/v1/embeddings/models", reply)
    live(client, upstream.url)
    with caplog.at_level(logging.WARNING, logger="app.catalog.listings"):
        for path in (OPENROUTER, EMBEDDINGS):
            listing = await data(client, path, reader)
            assert listing["source"] == "curated_fallback"
            assert listing["total"] == len(listing["models"]) > 0
    assert reason in caplog.text
    assert "/api/v1/models" in caplog.text and "/api/v1/embeddings/models" in caplog.text


# Embedding models


async def test_the_curated_embedding_list(client, reader, finance):
    listing = await data(client, EMBEDDINGS, reader)
    assert listing["source"] == "curated"
    models = by_id(listing)
    assert list(models) == [entry.id for entry in CURATED_EMBEDDINGS]
    for model in models.values():
        assert set(model) == EMBEDDING_FIELDS, model
        assert isinstance(model["dimensions"], int) and model["dimensions"] > 0, model
        assert model["cost_per_million"] is None or re.match(r"^\$\d+(\.\d*[1-9])?$", model["cost_per_million"])
    providers = {model["provider"] for model in models.values()}
    assert len(providers) >= 8, providers
    assert {"OpenAI", "BAAI", "Cohere", "Mistral", "Google"} <= providers
    assert [
        (models[m]["dimensions"], models[m]["context"]) for m in ("openai/text-embedding-3-small", "baai/bge-m3")
    ] == [
        (1536, 8192),
        (1024, 8192),
    ]
    assert {"openai/text-embedding-3-large", "openai/text-embedding-ada-002"} <= set(models)

    # Priced from the catalog: upstream USD per 1M x the margin.
    for entry in CURATED_EMBEDDINGS:
        if entry.catalog is None:
            assert models[entry.id]["cost_per_million"] is None  # unpriced, never shown as free
            continue
        catalog = await client.get(f"/models/{entry.catalog}", headers=finance)
        assert catalog.status_code == 200, f"{entry.catalog} is no longer in the catalog"
        model = catalog.json()
        assert model["type"] == "embedding"
        expected = Decimal(model["upstream"]["input"]) * Decimal(model["margin"])
        assert Decimal(models[entry.id]["cost_per_million"].removeprefix("$")) == expected, entry.id
        assert models[entry.id]["dimensions"] == (model["dimensions"] or entry.dimensions)
    # 0.02 and 0.01 USD per 1M x 1.4.
    assert (models["openai/text-embedding-3-small"]["cost_per_million"], models["baai/bge-m3"]["cost_per_million"]) == (
        "$0.028",
        "$0.014",
    )


async def test_live_embedding_models(client, reader, upstream):
    def embedding(model_id: str, name: str, prompt: str, **fields) -> dict:
        entry = OPENROUTER_EMBEDDINGS["data"][0] | {"id": model_id, "name": name}
        return entry | {"pricing": {"prompt": prompt, "completion": "0"}} | fields

    upstream.on(
        "/api/v1/embeddings/models",
        {
            "data": [
                OPENROUTER_EMBEDDINGS["data"][0],  # "OpenAI: Text Embedding 3 Small"
                embedding("baai/bge-m3", "BAAI: bge-m3", "0.00000001"),
                embedding("acme/embed-new", "Acme: Embed New", "0.0000001", context_length=32768),
                embedding("acme/embed-variable", "Acme: Variable", "-1"),
                embedding("acme/broken", "Acme: Broken", "cheap"),
            ]
        },
    )
    live(client, upstream.url)
    listing = await data(client, EMBEDDINGS, reader)
    assert listing["source"] == "api"
    models = by_id(listing)
    assert models == {
        "openai/text-embedding-3-small": {
            "id": "openai/text-embedding-3-small",
            "name": "Text Embedding 3 Small",
            "provider": "OpenAI",
            "dimensions": 1536,  # the catalog's
            "context": 8192,
            "cost_per_million": "$0.028",
        },
        "baai/bge-m3": {
            "id": "baai/bge-m3",
            "name": "bge-m3",
            "provider": "BAAI",
            "dimensions": 1024,  # the curated list's, from the model card
            "context": 8192,
            "cost_per_million": "$0.014",
        },
        "acme/embed-new": {
            "id": "acme/embed-new",
            "name": "Embed New",
            "provider": "Acme",
            "dimensions": None,  # nobody states it
            "context": 32768,
            "cost_per_million": "$0.14",
        },
        "acme/embed-variable": {
            "id": "acme/embed-variable",
            "name": "Variable",
            "provider": "Acme",
            "dimensions": None,
            "context": 8192,
            "cost_per_million": None,
        },
    }
    assert (upstream.hits("/api/v1/embeddings/models"), upstream.hits("/api/v1/models")) == (1, 0)


# Ollama

OLLAMA_MODELS = {
    "models": [
        {
            "name": "qwen2.5:1.5b",
            "model": "qwen2.5:1.5b",
            "modified_at": "2025-05-01T10:00:00Z",
            "size": 986061892,
            "digest": "65ec06548149",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "qwen2",
                "families": ["qwen2"],
                "parameter_size": "1.5B",
                "quantization_level": "Q4_K_M",
            },
        },
        *OLLAMA_TAGS["models"],  # llama3.2:latest, nomic-embed-text:latest (family nomic-bert)
        {
            "name": "mxbai-embed-large:latest",
            "size": 669615493,
            "details": {"family": "bert", "families": ["bert"], "parameter_size": "334M", "quantization_level": "F16"},
        },
        {  # an embedding model of an LLM family, known by its name
            "name": "qwen3-embedding:0.6b",
            "size": 639150000,
            "details": {"family": "qwen3", "parameter_size": "595.78M", "quantization_level": "Q8_0"},
        },
        {"model": "phi3:mini", "size": 2176178913},  # no details: listed with nulls
        {"name": 42, "size": 1},
        {"name": "bad-size:latest", "size": "big"},
    ]
}


async def test_ollama_inference_models(client, reader, upstream, caplog):
    upstream.on("/api/tags", OLLAMA_MODELS)
    live(client, upstream.url)
    with caplog.at_level(logging.WARNING, logger="app.catalog.listings"):
        listing = await data(client, OLLAMA, reader)
    assert listing == {
        "models": [
            {
                "id": "qwen2.5:1.5b",
                "name": "qwen2.5:1.5b",
                "parameter_size": "1.5B",
                "quantization": "Q4_K_M",
                "family": "qwen2",
                "size_mb": 986,
            },
            {
                "id": "llama3.2:latest",
                "name": "llama3.2:latest",
                "parameter_size": "3.2B",
                "quantization": "Q4_K_M",
                "family": "llama",
                "size_mb": 2019,
            },
            {
                "id": "phi3:mini",
                "name": "phi3:mini",
                "parameter_size": None,
                "quantization": None,
                "family": None,
                "size_mb": 2176,
            },
        ],
        "source": "ollama",
        "total": 3,
    }
    assert "models[6] skipped" in caplog.text and "models[7] skipped" in caplog.text
    # One request for the list, none per model, and the answer is kept a few seconds.
    assert (await data(client, OLLAMA, reader)) == listing
    assert [path for _, path, _, _ in upstream.requests] == ["/api/tags"]


async def test_an_embedding_model_the_catalog_knows_is_left_out(client, reader, upstream, scratch, admin):
    """A sync learns from /api/show which models only embed; a name or family that does not tell is caught so."""
    serve_ollama(upstream)
    upstream.on("/api/tags", {"models": [OLLAMA_TAGS["models"][0] | {"name": "plain:latest", "model": "plain:latest"}]})
    live(client, upstream.url, ollama_provider=scratch)
    assert [m["id"] for m in (await data(client, OLLAMA, reader))["models"]] == ["plain:latest"]
    model = {"provider": scratch, "name": "plain:latest", "type": "embedding"}
    assert (await client.put("/catalog/models", json=model, headers=admin)).status_code == 200
    assert (await data(client, OLLAMA, reader))["models"] == []


async def test_unreachable_ollama(client, reader, closed_port):
    live(client, closed_port)
    listing = await data(client, OLLAMA, reader)
    assert set(listing) == {"models", "source", "total", "error"}
    assert (listing["models"], listing["source"], listing["total"]) == ([], "ollama_unreachable", 0)
    assert listing["error"].startswith("ollama: OLLAMA_BASE_URL/api/tags unreachable (ConnectError")
    assert closed_port not in listing["error"]  # where the server lives is not for every key to see


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (json_reply(OLLAMA_TAGS, delay=1), "no complete answer within 0.5 s; 2 attempts"),
        (Reply(body=b'{"models": [{"name": "llama3.2"'), "malformed JSON"),
        (json_reply({"models": "llama3.2"}), "expected an object with a `models` list"),
        (json_reply([]), "expected an object with a `models` list"),
        (json_reply({"error": "not found"}, status=404), "answered HTTP 404"),
        (json_reply({"error": "busy"}, status=500), "unreachable (HTTP 500; 2 attempts)"),
    ],
    ids=["slow", "malformed JSON", "wrong shape", "a list", "HTTP 404", "HTTP 500"],
)
async def test_an_unusable_ollama_answer_is_reported(client, reader, upstream, reply, error):
    upstream.on("/api/tags", reply)
    live(client, upstream.url)
    listing = await data(client, OLLAMA, reader)
    assert (listing["source"], listing["models"], listing["total"]) == ("ollama_unreachable", [], 0)
    assert error in listing["error"] and upstream.url not in listing["error"]


# Auth, parameters, the OpenAPI document


@pytest.mark.parametrize("path", [OPENROUTER, EMBEDDINGS, OLLAMA])
async def test_auth(client, admin, make_key, closed_port, path):
    live(client, closed_port)
    assert_error(await client.get(path), 401, "invalid_api_key")
    assert_error(await client.get(path, headers={"X-API-Key": "cmk_not-a-key"}), 401, "invalid_api_key")
    writer = await make_key("usage:write", "ledger:read")
    assert_error(await client.get(path, headers={"X-API-Key": writer}), 403, "insufficient_scope")
    reader = await make_key("catalog:read")
    for headers in ({"Authorization": f"Bearer {reader}"}, {"X-API-Key": reader}, admin):
        assert (await client.get(path, headers=headers)).status_code == 200


@pytest.mark.parametrize("path", [OPENROUTER, EMBEDDINGS])
@pytest.mark.parametrize("value", ["maybe", "", "2"])
async def test_a_bad_parameter_is_a_400(client, reader, path, value):
    error = assert_error(await client.get(path, params={"curated": value}, headers=reader), 400, "validation_error")
    assert error.get("param") == "curated"


async def test_openapi_documents_the_shapes(client):
    schema = (await client.get("/schema/openapi.json")).json()
    components = schema["components"]["schemas"]

    def answer(path: str) -> dict:
        operation = schema["paths"][path]["get"]
        assert {"401", "403"} <= set(operation["responses"])
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return components[ref.rsplit("/", 1)[-1]]

    for path, listing, model, fields in (
        (OPENROUTER, "OpenRouterModels", "OpenRouterModel", MODEL_FIELDS),
        (EMBEDDINGS, "OpenRouterEmbeddings", "OpenRouterEmbedding", EMBEDDING_FIELDS),
        (OLLAMA, "OllamaModels", "OllamaModel", OLLAMA_FIELDS),
    ):
        assert set(answer(path)["properties"]) == {"success", "data"}
        assert set(components[model]["properties"]) == fields
        assert {"models", "source", "total"} <= set(components[listing]["properties"])
    assert set(components["OllamaModels"]["properties"]) == {"models", "source", "total", "error"}
    (curated,) = schema["paths"][OPENROUTER]["get"]["parameters"]
    assert (curated["name"], curated["in"], curated["schema"]["type"]) == ("curated", "query", "boolean")


def test_every_curated_embedding_names_its_source_of_dimensions():
    assert len({entry.provider for entry in CURATED_EMBEDDINGS}) >= 8
    assert len({entry.id for entry in CURATED_EMBEDDINGS}) == len(CURATED_EMBEDDINGS)
    for entry in CURATED_EMBEDDINGS:
        assert entry.catalog is not None or entry.dimensions, entry
        assert listings.vendor_name(entry.id) == entry.provider, entry
