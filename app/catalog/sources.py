"""Upstream catalog sources, each read into the catalog file shape that the importer reads.

Every fetch is bounded: a deadline per attempt, a few retries with exponential backoff on connection
errors, timeouts, 429 and 5xx, and a size limit enforced while the body streams in. Upstream prices
are USD per token (decimal strings at OpenRouter, JSON numbers in LiteLLM's file); here they become
USD per 1M tokens by Decimal arithmetic only: JSON is parsed with parse_float=Decimal.
"""

import asyncio
import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from app.catalog import entries, litellm
from app.catalog.importer import RATE_KINDS, read_catalog
from app.catalog.model import exact
from app.config import Settings
from app.money import EXACT

# As schemas.ModelName: what the API accepts as the name part of a model id.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,199}$")
MAX_COUNT = 2**31 - 1  # the INTEGER columns of the models table
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "creditmeter-catalog-sync"

Progress = Callable[[int, int], None]  # (done, total) steps of one source


class SourceError(Exception):
    """A source could not be used. `unreachable`: it did not answer in time (a fallback may apply);
    otherwise its answer was unusable (HTTP error, malformed JSON, wrong shape, too large)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float = 30.0  # seconds per attempt, from the request to the last byte
    retries: int = 2
    max_bytes: int = 32 * 1024 * 1024
    backoff: float = 0.5  # seconds before the first retry, doubling after each


class LitellmTarget(NamedTuple):
    """Where a LiteLLM `litellm_provider` goes in our catalog."""

    provider: str
    prefixes: tuple[str, ...] = ()  # key prefixes stripped to get the model name
    slash: bool = False  # may the model name contain "/" (else the key is a regional variant)
    free: bool = False  # local models: explicit 0 prices
    regional: str | None = None  # "bedrock" or "azure": its regional keys are region variants (see litellm.py)


# The same mapping as scripts/build_catalog.py, which built the bundled catalog.
LITELLM_PROVIDERS: dict[str, LitellmTarget] = {
    "openai": LitellmTarget("openai", ("openai/",)),
    "text-completion-openai": LitellmTarget("openai", ("text-completion-openai/",)),
    "anthropic": LitellmTarget("anthropic", ("anthropic/",)),
    "gemini": LitellmTarget("google", ("gemini/",)),
    "vertex_ai": LitellmTarget("vertex", ("vertex_ai/",), slash=True),
    "cohere": LitellmTarget("cohere", ("cohere/",)),
    "cohere_chat": LitellmTarget("cohere", ("cohere_chat/",)),
    "cerebras": LitellmTarget("cerebras", ("cerebras/",)),
    "featherless_ai": LitellmTarget("featherless", ("featherless_ai/",), slash=True),
    "azure": LitellmTarget("azure", ("azure/",), regional="azure"),
    "azure_text": LitellmTarget("azure", ("azure_text/",)),
    "ollama": LitellmTarget("ollama", ("ollama/",), free=True),
    "mistral": LitellmTarget("mistral", ("mistral/",)),
    "codestral": LitellmTarget("mistral", ("codestral/",)),
    "text-completion-codestral": LitellmTarget("mistral", ("text-completion-codestral/",)),
    "deepseek": LitellmTarget("deepseek", ("deepseek/",)),
    "xai": LitellmTarget("xai", ("xai/",)),
    "groq": LitellmTarget("groq", ("groq/",), slash=True),
    "bedrock": LitellmTarget("bedrock", ("bedrock/",), regional="bedrock"),
    "bedrock_converse": LitellmTarget("bedrock", ("bedrock/converse/", "bedrock/"), regional="bedrock"),
    "together_ai": LitellmTarget("together", ("together_ai/",), slash=True),
    "novita": LitellmTarget("novita", ("novita/",), slash=True),
}

# Popular OpenRouter models, taken with their prices from the bundled catalog when the API cannot be
# used: enough to keep the common choices available, never used to change a stored price.
CURATED_OPENROUTER = (
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/gpt-4.1",
    "openai/gpt-4.1-mini",
    "openai/gpt-5",
    "openai/gpt-5-mini",
    "openai/o3",
    "openai/o4-mini",
    "anthropic/claude-sonnet-4",
    "anthropic/claude-opus-4",
    "anthropic/claude-3.7-sonnet",
    "anthropic/claude-3.5-haiku",
    "google/gemini-2.5-pro",
    "google/gemini-2.0-flash-001",
    "meta-llama/llama-3.3-70b-instruct",
    "meta-llama/llama-3.1-8b-instruct",
    "meta-llama/llama-4-maverick",
    "mistralai/mistral-large",
    "mistralai/mistral-small-3.1-24b-instruct",
    "deepseek/deepseek-chat",
    "deepseek/deepseek-r1",
    "qwen/qwen-2.5-72b-instruct",
    "cohere/command-r-plus",
)


@dataclass(frozen=True, slots=True)
class Upstreams:
    """Where each source lives, and the catalog providers its models go to."""

    openrouter_url: str = "https://openrouter.ai"
    openrouter_api_key: str | None = None
    ollama_url: str = "http://127.0.0.1:11434"
    litellm: str | None = None  # URL or path
    limits: Limits = Limits()
    openrouter_provider: str = "openrouter"
    ollama_provider: str = "ollama"
    litellm_providers: Mapping[str, LitellmTarget] = field(default_factory=lambda: LITELLM_PROVIDERS)
    # genai-prices: the catalog providers it syncs, each to the provider id it is stored under; None: every
    # provider it prices (app/catalog/genai_prices.py TARGETS), under its own id.
    genai_prices_providers: Mapping[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Upstreams":
        return cls(
            openrouter_url=settings.openrouter_base_url,
            openrouter_api_key=settings.openrouter_api_key,
            ollama_url=settings.ollama_base_url,
            litellm=settings.litellm_prices,
            limits=Limits(
                timeout=settings.sync_timeout_seconds,
                retries=settings.sync_retries,
                max_bytes=settings.sync_max_bytes,
            ),
        )


@dataclass
class SourceData:
    """What one source says, in the catalog file shape (see importer.import_catalog)."""

    name: str  # openrouter | ollama | litellm
    source: str  # api | curated | curated_fallback | ollama | ollama_unreachable | file | url
    providers: list[dict[str, str]]
    models: list[dict[str, Any]]
    # The provider whose unlisted models have vanished, with every id its listing named (malformed
    # entries included); None where absence proves nothing: a fallback, a partial fetch, a price file.
    complete_listing_of: str | None = None
    listed: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    detail: str | None = None
    only_new: bool = False  # a fallback list adds missing models and never changes stored ones


def client(limits: Limits) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(limits.timeout),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


# Fetching


class _Retry(Exception):
    """An answer worth asking again for (429, 5xx)."""


async def fetch_json(
    http: httpx.AsyncClient,
    limits: Limits,
    source: str,
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    problem = ""
    for attempt in range(limits.retries + 1):
        if attempt:
            await asyncio.sleep(limits.backoff * 2 ** (attempt - 1))
        try:
            # The deadline covers the whole answer: httpx's own timeouts are per read, so a server
            # dribbling bytes would otherwise never time out.
            async with asyncio.timeout(limits.timeout):
                raw = await _read(http, limits, source, method, url, body, headers)
        except _Retry as exc:
            problem = str(exc)
        except TimeoutError:
            problem = f"no complete answer within {limits.timeout:g} s"
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            return parse_json(raw, f"{source}: {url}")
    attempts = "1 attempt" if limits.retries == 0 else f"{limits.retries + 1} attempts"
    raise SourceError(f"{source}: {url} unreachable ({problem}; {attempts})", unreachable=True)


async def _read(http, limits: Limits, source: str, method: str, url: str, body, headers) -> bytes:
    async with http.stream(method, url, json=body, headers=headers) as response:
        if response.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise SourceError(f"{source}: {url} answered HTTP {response.status_code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise SourceError(too_large(source, url, limits.max_bytes))
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limits.max_bytes:
                raise SourceError(too_large(source, url, limits.max_bytes))
        return bytes(data)


def too_large(source: str, where: str, limit: int) -> str:
    return f"{source}: {where}: the response exceeds the {limit}-byte limit (BILLING_SYNC_MAX_BYTES)"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{where}: malformed JSON ({exc})") from None


# Values


def per_million(value: Any, what: str) -> Decimal:
    """A per-token USD price as USD per 1M tokens, exactly; negative stays negative (a sentinel)."""
    return usd(value, what).scaleb(6, context=EXACT)  # never rounds: an inexact result raises


def usd(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"`{what}` is not a decimal number: {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValueError(f"`{what}` is not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"`{what}` is not a finite number: {value!r}")
    return number


def count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"`{what}` is not a token count: {value!r}")
    return value


def day(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(value[:10]).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"`{what}` is not a date: {value!r}") from None


def model_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not MODEL_NAME.match(value):
        raise ValueError(f"`{what}` is not a usable model name: {value!r}")
    return value


def obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"`{what}` is not an object")
    return value


def strings(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"`{what}` is not a list of strings")
    return value


def price(
    source: str,
    input: Decimal,
    output: Decimal | None = None,
    cached_input: Decimal | None = None,
    cache_write: Decimal | None = None,
    per_request: Decimal | None = None,
    cache_write_1h: Decimal | None = None,
) -> dict[str, Any]:
    """A price entry, undated (the sync dates it). A negative rate, the routers' -1, means the price
    is variable: the model is unpriced, every rate null, never a negative charge."""
    rates = {
        "input": input,
        "output": output,
        "cached_input": cached_input,
        "cache_write": cache_write,
        "cache_write_1h": cache_write_1h,
    }
    per_request = per_request or Decimal(0)
    if per_request < 0 or any(rate is not None and rate < 0 for rate in rates.values()):
        return variable(source)
    return {kind: exact(rate) for kind, rate in rates.items()} | {
        "per_request": exact(per_request),
        "tiers": [],
        "source": source,
    }


def variable(source: str) -> dict[str, Any]:
    return dict.fromkeys(RATE_KINDS) | {"per_request": "0", "tiers": [], "source": f"{source} (variable price)"}


MODEL_FACTS = entries.MODEL_FACTS


def fact_labels(known: dict[str, Any], label: str) -> dict[str, str]:
    """{fact: label} for every fact the source knows (a value that is not None), in the catalog file's
    terms: the model facts, the capabilities and `created` (as scripts/build_catalog.py labels them)."""
    names = (*MODEL_FACTS, *litellm.CAPABILITIES, "created")
    return {fact: label for fact in names if known.get(fact) is not None}


def model_entry(provider: str, name: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A model in the catalog file's shape; `facts` names the source of each fact the entry knows."""
    entry = {
        "id": f"{provider}/{name}",
        "provider": provider,
        "name": name,
        "display_name": None,
        "type": kind,
        "context_window": None,
        "max_output_tokens": None,
        "max_input_tokens": None,
        "dimensions": None,
        "capabilities": {},
        "input_modalities": None,
        "output_modalities": None,
        "facts": {},
        "aliases": [],
        "created": None,
        "deprecation_date": None,
        "prices": [],
    }
    return entry | fields


def unique(models: list[dict[str, Any]], errors: list[str], source: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in models:
        if entry["id"] in seen:
            errors.append(f"{source}: model '{entry['name']}' is listed twice; the first entry is used")
        else:
            seen[entry["id"]] = entry
    return list(seen.values())


# OpenRouter: GET /api/v1/models and /api/v1/embeddings/models

OPENROUTER_RATES = {
    "prompt": "input",
    "completion": "output",
    "input_cache_read": "cached_input",
    "input_cache_write": "cache_write",
}


def openrouter_entry(item: Any, provider: str, *, embedding_list: bool = False) -> dict[str, Any]:
    item = obj(item, "model")
    name = model_name(item.get("id"), "id")
    pricing = obj(item.get("pricing"), "pricing")
    architecture = obj(item.get("architecture"), "architecture")
    inputs = strings(architecture.get("input_modalities"), "architecture.input_modalities")
    outputs = strings(architecture.get("output_modalities"), "architecture.output_modalities") or []
    params = strings(item.get("supported_parameters"), "supported_parameters")
    embedding = embedding_list or "embeddings" in outputs
    for key in ("prompt",) if embedding else ("prompt", "completion"):
        if pricing.get(key) is None:
            raise ValueError(f"`pricing.{key}` is missing")
    rates = {
        kind: per_million(pricing[key], f"pricing.{key}")
        for key, kind in OPENROUTER_RATES.items()
        if pricing.get(key) is not None
    }
    request = pricing.get("request")
    per_request = usd(request, "pricing.request") if request is not None else None
    context = count(item.get("context_length"), "context_length")
    created = item.get("created")
    if created is not None and (isinstance(created, bool) or not isinstance(created, int) or created < 0):
        raise ValueError(f"`created` is not a Unix time: {created!r}")
    top = obj(item.get("top_provider"), "top_provider")
    display_name = item.get("name")
    if isinstance(display_name, str):
        display_name = display_name.strip()[:200] or None
    known = {
        "context_window": context,
        "max_output_tokens": None if embedding else count(top.get("max_completion_tokens"), "max_completion_tokens"),
        "max_input_tokens": context if embedding else None,
        "input_modalities": litellm.modalities(inputs, "architecture.input_modalities"),
        "output_modalities": litellm.modalities(outputs or None, "architecture.output_modalities"),
    }
    capabilities = {
        "tools": None if params is None else "tools" in params,
        "vision": None if inputs is None else "image" in inputs,
        "audio_input": None if inputs is None else "audio" in inputs,
        "reasoning": None if params is None else bool({"reasoning", "include_reasoning"} & set(params)),
        "json_output": None if params is None else bool({"response_format", "structured_outputs"} & set(params)),
        "prompt_caching": True if "cached_input" in rates else None,
    }
    dates = {
        "created": None if created is None else datetime.fromtimestamp(created, UTC).date().isoformat(),
        "deprecation_date": day(item.get("expiration_date"), "expiration_date"),
    }
    return model_entry(
        provider,
        name,
        "embedding" if embedding else "language",
        display_name=display_name if isinstance(display_name, str) else None,
        **known,
        capabilities=capabilities,
        facts=fact_labels(known | capabilities | dates, "openrouter api"),
        **dates,
        prices=[
            price(
                "openrouter api",
                rates["input"],
                output=rates.get("output"),
                cached_input=rates.get("cached_input"),
                cache_write=rates.get("cache_write"),
                per_request=per_request,
            )
        ],
    )


def openrouter_models(body: Any, provider: str, *, embedding_list: bool, where: str) -> SourceData:
    """One listing answer; malformed entries are skipped and reported, the others kept."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise SourceError(f"openrouter: {where}: expected an object with a `data` list of models")
    data = SourceData("openrouter", "api", [], [], complete_listing_of=provider)
    for index, item in enumerate(body["data"]):
        known = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        if known is not None:
            data.listed.add(f"{provider}/{known}")
        try:
            data.models.append(openrouter_entry(item, provider, embedding_list=embedding_list))
        except (ValueError, ArithmeticError) as exc:
            data.errors.append(f"openrouter: {where}: data[{index}] ({known or 'no id'}) skipped: {exc}")
            if known is None:  # an entry we cannot even name: its model may have vanished or not
                data.complete_listing_of = None
    return data


async def read_openrouter(http: httpx.AsyncClient, up: Upstreams, *, curated: bool = False) -> SourceData:
    provider = up.openrouter_provider
    if curated:
        return curated_openrouter(provider, "curated", None)
    headers = {"Authorization": f"Bearer {up.openrouter_api_key}"} if up.openrouter_api_key else None
    base = up.openrouter_url.rstrip("/")
    try:
        body = await fetch_json(http, up.limits, "openrouter", f"{base}/api/v1/models", headers=headers)
    except SourceError as exc:
        if exc.unreachable:
            return curated_openrouter(provider, "curated_fallback", exc.message)
        raise
    data = openrouter_models(body, provider, embedding_list=False, where="/api/v1/models")
    try:
        url = f"{base}/api/v1/embeddings/models"
        body = await fetch_json(http, up.limits, "openrouter", url, headers=headers)
        embeddings = openrouter_models(body, provider, embedding_list=True, where="/api/v1/embeddings/models")
    except SourceError as exc:
        # The language models are still good; without the embedding list nothing counts as vanished.
        data.errors.append(f"{exc.message}; embedding models not synced")
        data.complete_listing_of = None
    else:
        # A model in both lists is the embedding list's.
        ids = {entry["id"] for entry in embeddings.models}
        data.models = [entry for entry in data.models if entry["id"] not in ids] + embeddings.models
        data.listed |= embeddings.listed
        data.errors += embeddings.errors
        if embeddings.complete_listing_of is None:
            data.complete_listing_of = None
    data.models = unique(data.models, data.errors, "openrouter")
    data.providers = [{"id": provider, "name": provider_name("openrouter")}]
    return data


@functools.cache
def _bundled() -> dict[str, Any]:
    return read_catalog()


def provider_name(provider: str) -> str:
    names = {p["id"]: p["name"] for p in _bundled()["providers"]}
    return names.get(provider, provider)


def curated_openrouter(provider: str, source: str, detail: str | None) -> SourceData:
    bundled = {m["name"]: m for m in _bundled()["models"] if m["provider"] == "openrouter" and m["prices"]}
    models = [
        copy.deepcopy(bundled[name]) | {"id": f"{provider}/{name}", "provider": provider, "aliases": []}
        for name in CURATED_OPENROUTER
        if name in bundled
    ]
    providers = [{"id": provider, "name": provider_name("openrouter")}]
    return SourceData("openrouter", source, providers, models, detail=detail, only_new=True)


# Ollama: GET /api/tags, then POST /api/show for each installed model


def ollama_entry(provider: str, name: str, tag: dict[str, Any], show: Any) -> dict[str, Any]:
    show = obj(show, "/api/show answer")
    info = obj(show.get("model_info"), "model_info")
    details = obj(tag.get("details"), "details")
    capabilities = strings(show.get("capabilities"), "capabilities")
    architecture = info.get("general.architecture")
    prefix = f"{architecture}." if isinstance(architecture, str) else None
    context = count(info.get(f"{prefix}context_length"), "context_length") if prefix else None
    if capabilities is not None:
        embedding = "embedding" in capabilities and "completion" not in capabilities
    else:  # servers before 0.6.4 name no capabilities: go by the family and the name
        embedding = details.get("family") in ("bert", "nomic-bert") or "embed" in name
    flags = capabilities or []
    size = count(info.get(f"{prefix}embedding_length"), "embedding_length") if embedding and prefix else None
    known = {
        "context_window": context,
        "max_input_tokens": context if embedding else None,
        # The embedding length of a language model is its hidden size, not an output dimension.
        "dimensions": size if embedding else None,
    }
    listed = {
        "tools": "tools" in flags if capabilities is not None else None,
        "vision": "vision" in flags if capabilities is not None else None,
        "reasoning": "thinking" in flags if capabilities is not None else None,
    }
    return model_entry(
        provider,
        name,
        "embedding" if embedding else "language",
        **known,
        capabilities=listed,
        facts=fact_labels(known | listed, "ollama api"),
        # Local inference costs nothing upstream: an explicit 0 price, never "unpriced".
        prices=[price("ollama (local)", Decimal(0), output=None if embedding else Decimal(0))],
    )


async def read_ollama(http: httpx.AsyncClient, up: Upstreams, progress: Progress | None = None) -> SourceData:
    provider, base = up.ollama_provider, up.ollama_url.rstrip("/")
    providers = [{"id": provider, "name": provider_name("ollama")}]
    try:
        tags = await fetch_json(http, up.limits, "ollama", f"{base}/api/tags")
        if not isinstance(tags, dict) or not isinstance(tags.get("models"), list):
            raise SourceError(f"ollama: {base}/api/tags: expected an object with a `models` list")
        data = SourceData("ollama", "ollama", providers, [], complete_listing_of=provider)
        items = tags["models"]
        for index, item in enumerate(items):
            if progress:  # the listing, one answer per model, then the sync's write
                progress(index + 1, len(items) + 2)
            name = (item.get("name") or item.get("model")) if isinstance(item, dict) else None
            try:
                name = model_name(name, "name")
            except ValueError as exc:
                data.errors.append(f"ollama: /api/tags: models[{index}] skipped: {exc}")
                data.complete_listing_of = None
                continue
            data.listed.add(f"{provider}/{name}")
            try:
                show = await fetch_json(
                    http, up.limits, "ollama", f"{base}/api/show", method="POST", body={"model": name}
                )
                data.models.append(ollama_entry(provider, name, item, show))
            except SourceError as exc:
                if exc.unreachable:
                    raise
                data.errors.append(f"{exc.message}; model '{name}' skipped")
            except (ValueError, ArithmeticError) as exc:
                data.errors.append(f"ollama: /api/show of '{name}' skipped: {exc}")
    except SourceError as exc:
        if not exc.unreachable:
            raise
        # A local server that is not running is a state to report, not a failure of the sync.
        return SourceData("ollama", "ollama_unreachable", providers, [], detail=exc.message)
    data.models = unique(data.models, data.errors, "ollama")
    return data


# LiteLLM's model_prices_and_context_window.json, from a path or a URL (read by app/catalog/litellm.py,
# as the bundled catalog's build script reads it)


def litellm_target(mapping: Mapping[str, LitellmTarget], litellm_provider: Any) -> LitellmTarget | None:
    if not isinstance(litellm_provider, str):
        return None
    if litellm_provider.startswith("vertex_ai-") and "vertex_ai" in mapping:
        return mapping["vertex_ai"]
    return mapping.get(litellm_provider)


def litellm_prices(item: dict[str, Any], target: LitellmTarget, label: str) -> list[dict[str, Any]]:
    """The entry's price as a list of at most one entry; raises litellm.FloatArtefact and ValueError."""
    try:
        quoted = litellm.price(item, free=target.free)
    except litellm.VariablePrice:
        return [variable(label)]
    return [] if quoted is None else [quoted | {"source": label}]


def litellm_entry(
    target: LitellmTarget, name: str, item: dict[str, Any], label: str, prices: list[dict[str, Any]]
) -> dict[str, Any]:
    known = litellm.facts(item)
    return model_entry(
        target.provider,
        name,
        litellm.kind(item),
        **{fact: known[fact] for fact in MODEL_FACTS},
        capabilities={cap: known[cap] for cap in litellm.CAPABILITIES if known[cap] is not None},
        facts=fact_labels(known, label),
        deprecation_date=known["deprecation_date"],
        prices=prices,
    )


def litellm_models(body: Any, mapping: Mapping[str, LitellmTarget], label: str) -> SourceData:
    if not isinstance(body, dict):
        raise SourceError("litellm: expected an object of models keyed by name")
    data = SourceData("litellm", "file", [], [])
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    regional: list[tuple[str, str, str, dict[str, Any]]] = []  # (in-region model id, region, key, entry)
    for key in sorted(body):
        item = body[key]
        if key == "sample_spec":
            continue
        if not isinstance(item, dict):
            data.errors.append(f"litellm: '{key}' skipped: not an object")
            continue
        target = litellm_target(mapping, item.get("litellm_provider"))
        if target is None or litellm.kind(item) is None:
            continue  # a provider we do not carry, or an image/audio/rerank model
        name = next((key[len(p) :] for p in target.prefixes if key.startswith(p)), key)
        if (found := litellm.regional(target.regional, name)) is not None:
            regional.append((f"{target.provider}/{found[1]}", found[0], key, item))
            continue
        if not name or ("/" in name and not target.slash):
            continue  # a commitment or other variant the catalog has no place for
        model_id = f"{target.provider}/{name}"
        # The same model under several keys ("gpt-4o", "openai/gpt-4o"): the fullest entry wins.
        if model_id not in chosen or len(item) > len(chosen[model_id][1]):
            chosen[model_id] = (key, item)
    for model_id, (key, item) in chosen.items():
        target = litellm_target(mapping, item["litellm_provider"])
        try:
            name = model_name(model_id.split("/", 1)[1], "name")
            try:
                prices = litellm_prices(item, target, label)
            except litellm.FloatArtefact as exc:  # the model's other facts are still good
                data.errors.append(f"litellm: '{key}': price not used: {exc}")
                prices = []
            data.models.append(litellm_entry(target, name, item, label, prices))
        except (ValueError, ArithmeticError) as exc:
            data.errors.append(f"litellm: '{key}' skipped: {exc}")
    add_regions(data, regional, mapping)
    data.providers = [{"id": p, "name": provider_name(p)} for p in sorted({m["provider"] for m in data.models})]
    return data


def add_regions(data: SourceData, regional: list, mapping: Mapping[str, LitellmTarget]) -> None:
    """A regional key (a Bedrock cross-region profile, an Azure data zone) priced apart from its in-region
    model becomes a region variant of that model's price; one priced alike adds nothing."""
    by_id = {entry["id"]: entry for entry in data.models}
    for model_id, region, key, item in regional:
        entry = by_id.get(model_id)
        base = entry["prices"][0] if entry and entry["prices"] else None
        if base is None or base["input"] is None:
            continue  # no in-region price to vary
        try:
            quoted = litellm.price(item, free=litellm_target(mapping, item["litellm_provider"]).free)
        except (ValueError, ArithmeticError) as exc:
            data.errors.append(f"litellm: '{key}': region price not used: {exc}")
            continue
        listed = base.setdefault("variants", [])
        taken = [entries.conditions(variant) for variant in listed]
        for variant in [] if quoted is None else litellm.region_variants(base, region, quoted):
            if entries.conditions(variant) not in taken:  # the first key of a region wins (sorted order)
                listed.append(variant)
                taken.append(entries.conditions(variant))
        if not listed:
            del base["variants"]


async def read_litellm(http: httpx.AsyncClient, up: Upstreams, location: str | None) -> SourceData:
    location = location or up.litellm
    if not location:
        raise SourceError("litellm: no price file given (--litellm-file, `litellm_url` or LITELLM_PRICES)")
    if location.startswith(("http://", "https://")):
        body = await fetch_json(http, up.limits, "litellm", location)
        source = "url"
    else:
        body = parse_json(read_file(Path(location), up.limits.max_bytes), f"litellm: {location}")
        source = "file"
    data = litellm_models(body, up.litellm_providers, "litellm " + Path(location).name)
    data.source = source
    return data


# genai-prices: the installed package's bundled data (app/catalog/genai_prices.py, as the build script
# reads it), never its network auto-update. Refreshing its prices means upgrading the package.


async def read_genai_prices(up: Upstreams, at: datetime) -> SourceData:
    """What the installed genai-prices says of the catalog's models (not a complete listing of any
    provider: a model it stops pricing keeps its last price)."""
    from app.catalog import genai_prices  # the package's data takes a moment to load: only when asked for

    models, _, label = await asyncio.to_thread(genai_prices.catalog_models, at.date(), _bundled())
    mapping = up.genai_prices_providers or {provider: provider for provider in genai_prices.TARGETS}
    found, names = [], {}
    for model in models:
        if (provider := mapping.get(model["provider"])) is not None:
            names[provider] = provider_name(model["provider"])
            entry = model | {"id": f"{provider}/{model['name']}", "provider": provider}
            found.append(model_entry(provider, model["name"], model["type"]) | entry)
    providers = [{"id": provider, "name": names[provider]} for provider in sorted(names)]
    return SourceData("genai-prices", "package", providers, found, detail=label)


def read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as file:
            raw = file.read(max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"litellm: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise SourceError(too_large("litellm", str(path), max_bytes))
    return raw
