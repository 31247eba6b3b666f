"""Model pickers: the lists front ends fill their model dropdowns from (GET /api/models/...).

- OpenRouter's language models and its embedding models. With OPENROUTER_API_KEY set they come from
  OpenRouter's live listings (`source: "api"`), fetched as catalog sync fetches them (app/catalog/sources.py:
  the same base URL, key, deadline, retries and size limit). Without the key, or when the request asks
  (`curated=true`), they come from curated lists priced by the catalog (`"curated"`): nothing leaves the
  service. When OpenRouter does not answer, or answers nothing usable (an HTTP error, malformed JSON, a
  wrong shape, an answer over the size limit, a listing without one usable entry), the curated list answers
  (`"curated_fallback"`) and the reason is logged; unusable entries of a good listing are skipped, and logged.
- The local Ollama's inference models, from its `/api/tags` (`"ollama"`); `"ollama_unreachable"` with an
  `error` when it does not answer, or not usably.

Prices are the customer's, as in every catalog view: upstream USD x the margin in effect, in USD (per token,
or per 1M tokens for embeddings), as exact decimal strings made without a float. Upstream cost itself is
finance data (docs/DESIGN.md, "Units and rounding"), so no view here shows it.

Each worker keeps upstream answers a while (`Listings`), so a busy front end does not call upstream on every
request: OpenRouter's listings for LIVE_SECONDS (they change a few times a day), a failed fetch for
RETRY_SECONDS (the fallback answers at once meanwhile), Ollama's answer for OLLAMA_SECONDS (a model pulled a
moment ago shows up soon). One request per listing goes upstream at a time; the others wait for its answer.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import httpx
import msgspec

from app.catalog import sources
from app.catalog.model import Catalog, Model, exact
from app.catalog.schemas import (
    ListingSource,
    OllamaModel,
    OllamaModels,
    OpenRouterEmbedding,
    OpenRouterEmbeddings,
    OpenRouterModel,
    OpenRouterModels,
    TokenPricing,
)
from app.catalog.sources import CURATED_OPENROUTER, SourceError, Upstreams
from app.money import EXACT, exact_context

log = logging.getLogger("app.catalog.listings")

LIVE_SECONDS = 300.0
RETRY_SECONDS = 30.0
OLLAMA_SECONDS = 10.0

# USD per 1M tokens a live listing may state, by order of magnitude (Decimal.adjusted): a rate outside is an
# unusable entry. Without a bound, "1E-900000" (9 bytes upstream) would be a 900 kB string in every answer.
RATE_MAGNITUDES = range(-30, 7)

OPENROUTER_LISTINGS = {False: "/api/v1/models", True: "/api/v1/embeddings/models"}

# OpenRouter's vendor slugs, named as OpenRouter names them ("OpenAI: GPT-4o"); another slug is shown as it is.
VENDORS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "meta-llama": "Meta",
    "mistralai": "Mistral",
    "deepseek": "DeepSeek",
    "qwen": "Qwen",
    "cohere": "Cohere",
    "x-ai": "xAI",
    "amazon": "Amazon",
    "microsoft": "Microsoft",
    "nvidia": "NVIDIA",
    "perplexity": "Perplexity",
    "baai": "BAAI",
    "intfloat": "Intfloat",
    "sentence-transformers": "Sentence Transformers",
    "thenlper": "Thenlper",
    "openrouter": "OpenRouter",
}


class CuratedEmbedding(NamedTuple):
    """An embedding model of the curated list, by OpenRouter's id. Its price, dimensions and context come from
    the catalog: the synced `openrouter/<id>` when there is one, else `catalog`, the same model at its vendor or
    a host. `dimensions` is the vendor's published output size, for a model whose catalog entry states none."""

    id: str
    name: str
    provider: str
    catalog: str | None
    dimensions: int | None = None


CURATED_EMBEDDINGS = (
    CuratedEmbedding(
        "openai/text-embedding-3-small", "OpenAI Text Embedding 3 Small", "OpenAI", "openai/text-embedding-3-small"
    ),
    CuratedEmbedding(
        "openai/text-embedding-3-large", "OpenAI Text Embedding 3 Large", "OpenAI", "openai/text-embedding-3-large"
    ),
    CuratedEmbedding(
        "openai/text-embedding-ada-002", "OpenAI Text Embedding Ada 002", "OpenAI", "openai/text-embedding-ada-002"
    ),
    CuratedEmbedding("google/gemini-embedding-001", "Gemini Embedding 001", "Google", "google/gemini-embedding-001"),
    # docs.mistral.ai, "Embeddings": mistral-embed returns 1024 dimensions; codestral-embed 1536 by default.
    CuratedEmbedding("mistralai/mistral-embed-2312", "Mistral Embed", "Mistral", "mistral/mistral-embed", 1024),
    CuratedEmbedding(
        "mistralai/codestral-embed-2505", "Codestral Embed", "Mistral", "mistral/codestral-embed-2505", 1536
    ),
    # docs.cohere.com, "Cohere's Embed Models": v4.0 1536 by default; the v3.0 models 1024.
    CuratedEmbedding("cohere/embed-v4.0", "Cohere Embed v4.0", "Cohere", "cohere/embed-v4.0", 1536),
    CuratedEmbedding(
        "cohere/embed-english-v3.0", "Cohere Embed English v3.0", "Cohere", "cohere/embed-english-v3.0", 1024
    ),
    CuratedEmbedding(
        "cohere/embed-multilingual-v3.0",
        "Cohere Embed Multilingual v3.0",
        "Cohere",
        "cohere/embed-multilingual-v3.0",
        1024,
    ),
    # The model cards at huggingface.co: BAAI/bge-m3 1024, BAAI/bge-base-en-v1.5 768.
    CuratedEmbedding("baai/bge-m3", "BGE-M3 (Multilingual)", "BAAI", "novita/baai/bge-m3", 1024),
    CuratedEmbedding("baai/bge-base-en-v1.5", "BGE Base English v1.5", "BAAI", "together/BAAI/bge-base-en-v1.5", 768),
    # huggingface.co/Qwen/Qwen3-Embedding-8B and Qwen3-Embedding-0.6B: up to 4096 and 1024 dimensions.
    CuratedEmbedding("qwen/qwen3-embedding-8b", "Qwen3 Embedding 8B", "Qwen", "novita/qwen/qwen3-embedding-8b", 4096),
    CuratedEmbedding(
        "qwen/qwen3-embedding-0.6b", "Qwen3 Embedding 0.6B", "Qwen", "novita/qwen/qwen3-embedding-0.6b", 1024
    ),
    # Not in the bundled catalog, so unpriced until a sync brings OpenRouter's price. Dimensions from the model
    # cards at huggingface.co: intfloat/multilingual-e5-large 1024, sentence-transformers/all-MiniLM-L6-v2 384,
    # sentence-transformers/all-mpnet-base-v2 768, thenlper/gte-base 768.
    CuratedEmbedding("intfloat/multilingual-e5-large", "Multilingual E5 Large", "Intfloat", None, 1024),
    CuratedEmbedding("sentence-transformers/all-minilm-l6-v2", "all-MiniLM-L6-v2", "Sentence Transformers", None, 384),
    CuratedEmbedding(
        "sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2", "Sentence Transformers", None, 768
    ),
    CuratedEmbedding("thenlper/gte-base", "GTE Base", "Thenlper", None, 768),
)
CURATED_EMBEDDING_IDS = {entry.id: entry for entry in CURATED_EMBEDDINGS}

# Ollama families of embedding-only models (BERT and its descendants); a name with "embed" is one as well.
EMBEDDING_FAMILIES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert", "jina-bert-v2", "xlm-roberta"})


# This worker's upstream answers


@dataclass(frozen=True, slots=True)
class Fetched:
    entries: list[Any] = field(default_factory=list)  # usable models, in the order upstream lists them
    problem: str | None = None  # why there are none: the fallback answers


class Listings:
    """Upstream answers, each kept as long as its fetch says; concurrent requests for one listing share a fetch."""

    def __init__(self, timer: Callable[[], float] = time.monotonic) -> None:
        self.timer = timer
        self.answers: dict[Hashable, tuple[float, Fetched]] = {}
        self.locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[tuple[Fetched, float]]]) -> Fetched:
        answer = self._fresh(key)
        if answer is not None:
            return answer
        async with self.locks.setdefault(key, asyncio.Lock()):
            answer = self._fresh(key)  # fetched by the request this one waited for
            if answer is None:
                answer, seconds = await fetch()
                self.answers[key] = (self.timer() + seconds, answer)
            return answer

    def _fresh(self, key: Hashable) -> Fetched | None:
        kept = self.answers.get(key)
        return kept[1] if kept is not None and self.timer() < kept[0] else None


# OpenRouter


async def openrouter_models(
    cache: Listings, catalog: Catalog, up: Upstreams, now: datetime, *, curated: bool
) -> OpenRouterModels:
    source, fetched = await openrouter_listing(cache, up, curated=curated, embedding=False)
    if fetched is None:
        models = curated_models(catalog, up, now)
    else:
        models = [live_model(catalog, up, entry, now) for entry in fetched.entries]
    return OpenRouterModels(models=models, source=source, total=len(models))


async def openrouter_embeddings(
    cache: Listings, catalog: Catalog, up: Upstreams, now: datetime, *, curated: bool
) -> OpenRouterEmbeddings:
    source, fetched = await openrouter_listing(cache, up, curated=curated, embedding=True)
    if fetched is None:
        models = curated_embeddings(catalog, up, now)
    else:
        models = [live_embedding(catalog, up, entry, now) for entry in fetched.entries]
    return OpenRouterEmbeddings(models=models, source=source, total=len(models))


async def openrouter_listing(
    cache: Listings, up: Upstreams, *, curated: bool, embedding: bool
) -> tuple[ListingSource, Fetched | None]:
    """Where the answer comes from, and OpenRouter's live listing when that is where (None: the curated list)."""
    if curated or not up.openrouter_api_key:
        return "curated", None
    fetched = await cache.get(openrouter_key(up, embedding), lambda: fetch_openrouter(up, embedding=embedding))
    if fetched.problem is not None:
        return "curated_fallback", None
    return "api", fetched


def openrouter_key(up: Upstreams, embedding: bool) -> Hashable:
    # Another upstream (a changed setting, a test's server) is another listing.
    return ("openrouter", embedding, up.openrouter_url, up.openrouter_api_key, up.openrouter_provider, up.limits)


async def fetch_openrouter(up: Upstreams, *, embedding: bool) -> tuple[Fetched, float]:
    path = OPENROUTER_LISTINGS[embedding]
    url = up.openrouter_url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {up.openrouter_api_key}"}
    try:
        async with sources.client(up.limits) as http:
            body = await sources.fetch_json(http, up.limits, "openrouter", url, headers=headers)
        data = sources.openrouter_models(body, up.openrouter_provider, embedding_list=embedding, where=path)
    except SourceError as exc:
        return openrouter_failed(exc.message)
    except httpx.HTTPError as exc:  # an answer httpx cannot read: a bad Content-Encoding, endless redirects
        return openrouter_failed(f"openrouter: {url}: unreadable answer ({type(exc).__name__}: {exc})")
    if data.errors:
        log.warning("openrouter: %s: %d entries skipped, the first: %s", path, len(data.errors), data.errors[0])
    seen: set[str] = set()
    entries = []
    for entry in data.models:
        # The language listing may carry embedding models too; they have a listing of their own.
        if (entry["type"] == "embedding") != embedding or entry["name"] in seen:
            continue
        rates = [Decimal(rate) for rate in (entry["prices"][0]["input"], entry["prices"][0]["output"]) if rate]
        if any(rate and rate.adjusted() not in RATE_MAGNITUDES for rate in rates):
            log.warning("openrouter: %s: '%s' skipped: a price out of range %s", path, entry["name"], rates)
            continue
        seen.add(entry["name"])
        entries.append(entry)
    if not entries:
        return openrouter_failed(f"openrouter: {url}: the listing has no usable model")
    return Fetched(entries), LIVE_SECONDS


def openrouter_failed(problem: str) -> tuple[Fetched, float]:
    log.warning("%s; the curated list answers for the next %g s", problem, RETRY_SECONDS)
    return Fetched(problem=problem), RETRY_SECONDS


def live_model(catalog: Catalog, up: Upstreams, entry: dict[str, Any], now: datetime) -> OpenRouterModel:
    """An entry of OpenRouter's listing (as sources.openrouter_entry reads it), priced with our margin."""
    name, vendor = split_name(entry["name"], entry["display_name"])
    (price,) = entry["prices"]  # every rate null when the price is variable (`openrouter/auto`)
    margin = margin_of(catalog, up.openrouter_provider, entry["name"], now)
    return OpenRouterModel(
        id=entry["name"],
        name=name,
        provider=vendor,
        context=entry["context_window"],
        pricing=token_pricing(decimal(price["input"]), decimal(price["output"]), margin),
    )


def live_embedding(catalog: Catalog, up: Upstreams, entry: dict[str, Any], now: datetime) -> OpenRouterEmbedding:
    name, vendor = split_name(entry["name"], entry["display_name"])
    (price,) = entry["prices"]
    usd = decimal(price["input"])
    margin = margin_of(catalog, up.openrouter_provider, entry["name"], now)
    return OpenRouterEmbedding(
        id=entry["name"],
        name=name,
        provider=vendor,
        dimensions=dimensions_of(catalog, up, entry["name"]),
        context=entry["context_window"],
        cost_per_million=None if usd is None else dollars(times(usd, margin)),
    )


def curated_models(catalog: Catalog, up: Upstreams, now: datetime) -> list[OpenRouterModel]:
    """CURATED_OPENROUTER as the catalog has them; a model the catalog lacks is left out (it could not be billed)."""
    models = []
    for model_id in CURATED_OPENROUTER:
        model = catalog.models.get(f"{up.openrouter_provider}/{model_id}")
        if model is None:
            continue
        row, price = model.row, model.price_at(now)
        own = first_party(catalog, up, model_id)
        pricing: TokenPricing | msgspec.UnsetType = msgspec.UNSET
        if price is not None:
            pricing = token_pricing(price.rates.input, price.rates.output, catalog.margin_at(model, now))
        models.append(
            OpenRouterModel(
                id=model_id,
                name=row.display_name or model_id,
                provider=vendor_name(model_id),
                # OpenRouter's copy often lacks the context the vendor's own entry states.
                context=row.context_window or (own.row.context_window if own is not None else None),
                pricing=pricing,
            )
        )
    return models


def curated_embeddings(catalog: Catalog, up: Upstreams, now: datetime) -> list[OpenRouterEmbedding]:
    models = []
    for entry in CURATED_EMBEDDINGS:
        model = catalog_model(catalog, up, entry)
        row = model.row if model is not None else None
        models.append(
            OpenRouterEmbedding(
                id=entry.id,
                name=entry.name,
                provider=entry.provider,
                dimensions=(row.dimensions if row is not None else None) or entry.dimensions,
                context=(row.context_window or row.max_input_tokens) if row is not None else None,
                cost_per_million=input_cost(catalog, model, now),
            )
        )
    return models


def catalog_model(catalog: Catalog, up: Upstreams, entry: CuratedEmbedding) -> Model | None:
    synced = catalog.models.get(f"{up.openrouter_provider}/{entry.id}")
    return synced if synced is not None else catalog.models.get(entry.catalog or "")


def dimensions_of(catalog: Catalog, up: Upstreams, model_id: str) -> int | None:
    """An embedding's output size: the catalog's (synced, curated, the vendor's own entry), else the curated list's."""
    curated = CURATED_EMBEDDING_IDS.get(model_id)
    candidates = [catalog.models.get(f"{up.openrouter_provider}/{model_id}"), first_party(catalog, up, model_id)]
    if curated is not None:
        candidates.insert(1, catalog_model(catalog, up, curated))
    for model in candidates:
        if model is not None and model.row.dimensions:
            return model.row.dimensions
    return curated.dimensions if curated is not None else None


def first_party(catalog: Catalog, up: Upstreams, model_id: str) -> Model | None:
    """The vendor's own catalog model that an OpenRouter id stands for (`anthropic/claude-sonnet-4` is
    `anthropic/claude-sonnet-4-0`), when the vendor is a catalog provider."""
    vendor = model_id.split("/", 1)[0]
    model = catalog.resolve(model_id, vendor)
    return model if model is not None and model.provider != up.openrouter_provider else None


def split_name(model_id: str, display_name: str | None) -> tuple[str, str]:
    """(name, vendor): OpenRouter names a model "OpenAI: GPT-4o"; without a prefix, the vendor comes from the id."""
    if display_name and ": " in display_name:
        vendor, name = (part.strip() for part in display_name.split(": ", 1))
        if vendor and name:
            return name, vendor
    return display_name or model_id, vendor_name(model_id)


def vendor_name(model_id: str) -> str:
    slug = model_id.split("/", 1)[0]
    return VENDORS.get(slug.lower(), slug)


class _Unlisted(NamedTuple):
    """A model the catalog does not have, as much of one as `Catalog.margin_at` reads."""

    id: str
    provider: str


def margin_of(catalog: Catalog, provider: str, name: str, now: datetime) -> Decimal:
    """The margin a model of `provider` would be billed with: its own override, the provider's, or the default."""
    model = catalog.models.get(f"{provider}/{name}") or _Unlisted(f"{provider}/{name}", provider)
    return catalog.margin_at(model, now)


def token_pricing(input: Decimal | None, output: Decimal | None, margin: Decimal) -> TokenPricing | msgspec.UnsetType:
    """USD per 1M tokens as the customer's USD per token; no pricing unless both rates are known."""
    if input is None or output is None:
        return msgspec.UNSET
    return TokenPricing(prompt=per_token(input, margin), completion=per_token(output, margin))


def per_token(usd_per_million: Decimal, margin: Decimal) -> str:
    return exact(times(usd_per_million, margin).scaleb(-6, EXACT))


def input_cost(catalog: Catalog, model: Model | None, now: datetime) -> str | None:
    price = model.price_at(now) if model is not None else None
    if price is None or price.rates.input is None:
        return None
    return dollars(times(price.rates.input, catalog.margin_at(model, now)))


def times(a: Decimal, b: Decimal) -> Decimal:
    """a x b, exactly: a product has at most as many digits as its factors together."""
    digits = len(a.as_tuple().digits) + len(b.as_tuple().digits)
    return exact_context(digits).multiply(a, b)


def dollars(usd: Decimal) -> str:
    return f"${exact(usd)}"


def decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# Ollama


async def ollama_models(cache: Listings, catalog: Catalog, up: Upstreams) -> OllamaModels:
    """The local server's inference models, without the embedding-only ones (by family, name, or the catalog)."""
    fetched = await cache.get(("ollama", up.ollama_url, up.limits), lambda: fetch_ollama(up))
    if fetched.problem is not None:
        return OllamaModels(models=[], source="ollama_unreachable", total=0, error=fetched.problem)
    models = []
    for model, embedding in fetched.entries:
        known = catalog.models.get(f"{up.ollama_provider}/{model.id}")
        if not embedding and not (known is not None and known.embedding):
            models.append(model)
    return OllamaModels(models=models, source="ollama", total=len(models))


async def fetch_ollama(up: Upstreams) -> tuple[Fetched, float]:
    base = up.ollama_url.rstrip("/")
    url = f"{base}/api/tags"
    try:
        async with sources.client(up.limits) as http:
            body = await sources.fetch_json(http, up.limits, "ollama", url)
        if not isinstance(body, dict) or not isinstance(body.get("models"), list):
            raise SourceError(f"ollama: {url}: expected an object with a `models` list")
    except SourceError as exc:
        problem, unreachable = exc.message, exc.unreachable
    except httpx.HTTPError as exc:
        problem, unreachable = f"ollama: {url}: unreadable answer ({type(exc).__name__}: {exc})", False
    else:
        entries, seen = [], set()
        for index, item in enumerate(body["models"]):
            try:
                model, embedding = ollama_model(item)
            except (ValueError, ArithmeticError) as exc:
                log.warning("ollama: /api/tags: models[%d] skipped: %s", index, exc)
                continue
            if model.id not in seen:
                seen.add(model.id)
                entries.append((model, embedding))
        return Fetched(entries), OLLAMA_SECONDS
    # A server that is not running is a state (no Ollama here); one that answers nonsense is worth a warning.
    log.log(logging.INFO if unreachable else logging.WARNING, "%s", problem)
    # Keys with catalog:read see the error; where the server lives is the operator's to know.
    return Fetched(problem=problem.replace(base, "OLLAMA_BASE_URL")), OLLAMA_SECONDS


def ollama_model(item: Any) -> tuple[OllamaModel, bool]:
    """(the model, whether it is embedding-only) from an entry of /api/tags."""
    item = sources.obj(item, "model")
    name = sources.model_name(item.get("name") or item.get("model"), "name")
    details = sources.obj(item.get("details"), "details")
    family = text(details.get("family"), "details.family")
    families = sources.strings(details.get("families"), "details.families") or []
    size = item.get("size")
    if isinstance(size, Decimal) and size == size.to_integral_value():
        size = int(size)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"`size` is not a number of bytes: {size!r}")
    embedding = "embed" in name.lower() or bool(EMBEDDING_FAMILIES & {family, *families})
    model = OllamaModel(
        id=name,
        name=name,
        parameter_size=text(details.get("parameter_size"), "details.parameter_size"),
        quantization=text(details.get("quantization_level"), "details.quantization_level"),
        family=family,
        # Decimal megabytes, rounded half up, as `ollama list` shows sizes (986 MB for qwen2.5:1.5b).
        size_mb=None if size is None else (size + 500_000) // 1_000_000,
    )
    return model, embedding


def text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"`{what}` is not a string: {value!r}")
    return value.strip()[:200] or None
