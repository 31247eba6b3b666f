#!/usr/bin/env python3
"""Generate app/catalog/default_catalog.json from maintained public datasets.

Nothing in the catalog is typed by hand: every model, price, limit and
capability comes from one of these two datasets (both MIT licensed):

* genai-prices (pydantic, MIT) -- primary source for prices. Read from the
  *installed* package (``genai_prices.data.providers``, the bundled snapshot;
  the package's network auto-update is never used). Prices are Decimals per
  1M tokens, with start-date price history and >N-input-token tiers.
* LiteLLM's ``model_prices_and_context_window.json`` (BerriAI, MIT; shipped
  inside the ``litellm`` wheel as
  ``litellm/model_prices_and_context_window_backup.json``) -- model lists,
  context windows, output limits, capabilities, embedding dimensions,
  deprecation dates, and prices for models genai-prices does not know.
  litellm is NOT installed; the JSON is read straight out of the wheel.

Regenerate (scratch venv outside the repo; nothing is added to the project,
litellm is only downloaded, never installed):

    python3 -m venv /tmp/catalog-venv
    /tmp/catalog-venv/bin/pip install genai-prices==0.2.3
    /tmp/catalog-venv/bin/pip download --no-deps litellm==1.109.1 -d /tmp/litellm-wheel
    /tmp/catalog-venv/bin/python scripts/build_catalog.py \\
        --litellm-wheel /tmp/litellm-wheel/litellm-1.109.1-*.whl --generated-at 2026-11-21

    # or with an already extracted JSON:
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
  LiteLLM per-token prices are multiplied by 1,000,000 as Decimals) and
  written as plain decimal strings ("2.5", "10", "0.075").
* genai-prices wins when it prices a model; LiteLLM prices are used for
  models genai-prices does not match, and for Vertex AI (genai-prices does not
  tell Vertex from the Gemini API; LiteLLM has Vertex-specific prices). Each
  price entry names its source.
* Dates: genai-prices start-date changes become price history. A price with
  no start date is dated --source-date; if it precedes a past price change it
  is dated by the model's ``created`` date, or dropped when that is unknown.
  ``created`` is the earliest date in a dated snapshot name of the model
  (name or alias, e.g. gpt-4o-2024-08-06), else null.
* Negative prices (router "-1" = variable) or float-artefact values make a
  model unpriced (``"prices": []``); models without a known price are
  unpriced too, except genai-prices' free models (":free", "(free)") and
  Ollama (local) models, which get explicit 0 prices. LiteLLM entries whose
  token prices are all 0.0 (free previews or placeholders) count as unknown.
* Time-of-day prices (DeepSeek) cannot be expressed: the price that applies
  for the larger part of the day is used. Service-tier/batch variants and
  audio/image/search prices are not represented; 1-hour cache writes are
  (``cache_write_1h``: genai-prices' ``cache_write_1h_mtok``, LiteLLM's
  ``cache_creation_input_token_cost_above_1hr``).
* Capabilities come from LiteLLM ``supports_*`` flags (absent flag = false,
  as LiteLLM reads it); without a LiteLLM entry they are null, except
  prompt_caching, which is true whenever a cached-input price exists.
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
* Aliases from resolution: LiteLLM's Bedrock cross-region profile ids
  ("us.anthropic....") and Vertex "@default" pointers are not models of their
  own. Where LiteLLM prices one as the model the resolver reaches for it, and
  only a fallback rule (not the data) reaches it, it becomes an alias of that
  model ("bedrock/apac.anthropic.claude-opus-4-8"). One LiteLLM prices apart
  is listed in the notes: the catalog has no model for it, and the resolver
  still answers the base model.
* Resolution check: every model resolves from its id, from its name with its
  provider as the hint, and from each alias; every name a match clause lists
  resolves to that clause's model; and no two clauses of one provider match
  one known name (a name or alias, a listed name, a LiteLLM name): so
  genai-prices' first-match-in-data-order never has to decide.

The script validates the result and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import re
import sys
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import takewhile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "app" / "catalog" / "default_catalog.json"
LITELLM_MEMBER = "litellm/model_prices_and_context_window_backup.json"

MILLION = Decimal(1_000_000)
LANGUAGE_MODES = {"chat", "completion", "responses"}
INCLUDED_MODES = LANGUAGE_MODES | {"embedding"}

# ---------------------------------------------------------------------------
# Provider configuration
# ---------------------------------------------------------------------------


@dataclass
class ProviderCfg:
    id: str
    name: str
    gp: str | None = None  # genai-prices provider id used for prices
    gp_own_models: bool = True  # add genai-prices models the provider lists
    gp_model_filter: Any = None  # callable(model_id) -> bool
    gp_fallback: bool = False  # use genai-prices fallback_model_providers
    litellm: tuple[str, ...] = ()  # litellm_provider values
    prefixes: tuple[str, ...] = ()  # key prefixes stripped from LiteLLM keys
    allow_slash: bool = False  # may model names contain "/"?
    first_party: bool = False  # bare aliases allowed
    free: bool = False  # explicit 0 prices (local models)
    prefer_litellm_prices: bool = False  # LiteLLM has provider-specific prices, genai-prices does not


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
        gp="openai",
        litellm=("openai", "text-completion-openai"),
        prefixes=("openai/", "text-completion-openai/"),
        first_party=True,
    ),
    ProviderCfg(
        "anthropic", "Anthropic", gp="anthropic", litellm=("anthropic",), prefixes=("anthropic/",), first_party=True
    ),
    ProviderCfg(
        "google",
        "Google Gemini",
        gp="google",
        litellm=("gemini",),
        prefixes=("gemini/",),
        gp_model_filter=lambda mid: not mid.startswith("claude"),
        first_party=True,
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
        gp="google",
        gp_own_models=False,
        gp_fallback=True,
        litellm=VERTEX_LITELLM,
        prefixes=("vertex_ai/",),
        allow_slash=True,
        prefer_litellm_prices=True,
    ),
    ProviderCfg(
        "cohere",
        "Cohere",
        gp="cohere",
        litellm=("cohere", "cohere_chat"),
        prefixes=("cohere/", "cohere_chat/"),
        first_party=True,
    ),
    ProviderCfg("openrouter", "OpenRouter", gp="openrouter", allow_slash=True, gp_model_filter=lambda mid: "/" in mid),
    ProviderCfg("cerebras", "Cerebras", gp="cerebras", litellm=("cerebras",), prefixes=("cerebras/",)),
    ProviderCfg(
        "featherless", "Featherless AI", litellm=("featherless_ai",), prefixes=("featherless_ai/",), allow_slash=True
    ),
    ProviderCfg(
        "azure",
        "Azure OpenAI",
        gp="azure",
        gp_fallback=True,
        litellm=("azure", "azure_text"),
        prefixes=("azure/", "azure_text/"),
    ),
    ProviderCfg("ollama", "Ollama (local)", litellm=("ollama",), prefixes=("ollama/",), free=True),
    ProviderCfg(
        "mistral",
        "Mistral AI",
        gp="mistral",
        litellm=("mistral", "codestral", "text-completion-codestral"),
        prefixes=("mistral/", "codestral/", "text-completion-codestral/"),
        first_party=True,
    ),
    ProviderCfg(
        "deepseek", "DeepSeek", gp="deepseek", litellm=("deepseek",), prefixes=("deepseek/",), first_party=True
    ),
    ProviderCfg("xai", "xAI", gp="x-ai", litellm=("xai",), prefixes=("xai/",), first_party=True),
    ProviderCfg("groq", "Groq", gp="groq", litellm=("groq",), prefixes=("groq/",), allow_slash=True),
    ProviderCfg(
        "bedrock",
        "AWS Bedrock",
        gp="aws",
        litellm=("bedrock", "bedrock_converse"),
        prefixes=("bedrock/converse/", "bedrock/"),
    ),
    ProviderCfg(
        "together", "Together AI", gp="together", litellm=("together_ai",), prefixes=("together_ai/",), allow_slash=True
    ),
    ProviderCfg("novita", "Novita AI", gp="novita", litellm=("novita",), prefixes=("novita/",), allow_slash=True),
]

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

# Bedrock cross-region inference-profile prefixes ("us.anthropic...").
BEDROCK_GEO = re.compile(r"^(us|eu|apac|au|jp|in|ca|global|us-gov)\.")
# gp models with no LiteLLM counterpart are classified by name: these are not
# token-billed language/embedding models.
NON_TEXT_NAME = re.compile(
    r"(tts|whisper|dall-e|imagen|veo|sora|transcri|moderation|realtime|(^|[-/])live([-.]|$)|image|"
    r"audio|speech|voice|(^|[-/.])ocr([-.]|$)|rerank|lyria|nano-banana)",
    re.I,
)
NON_MODEL_NAMES = {"container"}  # LiteLLM prices code-interpreter containers as a "chat" entry
NON_MODEL_PATTERN = re.compile(r"^together-ai-")  # LiteLLM's Together size-bucket prices, not models
EMBEDDING_NAME = re.compile(r"(embed|bge)", re.I)

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


def ordered_explicit_names(match: Any) -> list[str]:
    """Model names a genai-prices match clause lists explicitly (equals / or-of-equals), in order."""
    if hasattr(match, "equals"):
        return [match.equals]
    if hasattr(match, "or_"):
        return [n for c in match.or_ for n in ordered_explicit_names(c)]
    return []


def same_tail(a: str, b: str) -> int:
    """How many dot-separated parts two names end alike with (Bedrock: regional.anthropic.claude-...)."""
    parts = zip(reversed(a.split(".")), reversed(b.split(".")), strict=False)
    return sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], parts))


def explicit_names(match: Any) -> set[str]:
    return set(ordered_explicit_names(match))


CLAUSE_KEYS = {
    "ClauseEquals": "equals",
    "ClauseStartsWith": "starts_with",
    "ClauseEndsWith": "ends_with",
    "ClauseContains": "contains",
    "ClauseRegex": "regex",
}


def clause_json(clause: Any) -> dict[str, Any]:
    """A genai-prices match clause as the JSON its data is written in: {"starts_with": "x"}, {"or": [...]}."""
    kind = type(clause).__name__
    if kind in CLAUSE_KEYS:
        key = CLAUSE_KEYS[kind]
        return {key: getattr(clause, key)}
    if kind == "ClauseOr":
        return {"or": [clause_json(c) for c in clause.or_]}
    if kind == "ClauseAnd":
        return {"and": [clause_json(c) for c in clause.and_]}
    raise SystemExit(f"unknown genai-prices match clause {clause!r}")


# ---------------------------------------------------------------------------
# Decimal helpers
# ---------------------------------------------------------------------------


class Unpriced(Exception):
    """The price cannot be represented (negative sentinel, float artefact, ...)."""


def dec_str(value: Decimal) -> str:
    if not isinstance(value, Decimal) or isinstance(value, bool):
        raise TypeError(f"price must be a Decimal, got {type(value).__name__}: {value!r}")
    if not value.is_finite():
        raise Unpriced(f"non-finite price {value}")
    if value < 0:
        raise Unpriced(f"negative price {value}")
    s = format(value.normalize(), "f")
    return "0" if s in ("-0", "0.0") else s


def looks_float_derived(value: Decimal) -> bool:
    """A value with >=15 significant digits is the repr of a binary float, not a list price."""
    digits = value.normalize().as_tuple().digits
    return len(digits) >= 15


def per_token_to_mtok(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise Unpriced(f"price is not a decimal number: {value!r}")
    value = Decimal(value)
    if value < 0:
        raise Unpriced(f"negative price {value}")
    if looks_float_derived(value):
        raise Unpriced(f"float artefact {value}")
    return value * MILLION


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def as_date(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_litellm(args: argparse.Namespace) -> tuple[dict[str, Any], str, str]:
    if args.litellm_wheel:
        with zipfile.ZipFile(args.litellm_wheel) as zf:
            raw = zf.read(LITELLM_MEMBER)
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = zf.read(meta_name).decode()
        version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
        lic = re.search(r"^License-Expression: (.+)$", meta, re.M) or re.search(r"^License: (.+)$", meta, re.M)
        license_ = lic.group(1).strip() if lic else "UNKNOWN"
    else:
        raw = Path(args.litellm_json).read_bytes()
        if not args.litellm_version:
            sys.exit("--litellm-version is required with --litellm-json")
        version, license_ = args.litellm_version, args.litellm_license
    data = json.loads(raw, parse_float=Decimal)
    data.pop("sample_spec", None)
    return data, version, license_


def load_genai_prices() -> tuple[list[Any], str, str]:
    from genai_prices.data import providers  # bundled snapshot only

    meta = importlib.metadata.metadata("genai-prices")
    license_ = meta.get("License-Expression") or meta.get("License") or "UNKNOWN"
    return providers, importlib.metadata.version("genai-prices"), license_


# ---------------------------------------------------------------------------
# Price conversion
# ---------------------------------------------------------------------------

GP_FIELDS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
}


def gp_price_entry(mp: Any, tiered_cls: Any) -> dict[str, Any] | None:
    """genai-prices ModelPrice -> catalog price dict (without date/source); None when no token price."""
    values = {k: v for k, v in mp.__dict__.items() if not k.startswith("_") and v is not None}
    if "input_mtok" not in values and "output_mtok" not in values:
        return None

    for v in values.values():
        for d in [v.base, *(t.price for t in v.tiers)] if isinstance(v, tiered_cls) else [v]:
            if isinstance(d, Decimal) and looks_float_derived(d):
                raise Unpriced(f"float artefact {d}")

    def base(v: Any) -> Decimal:
        return v.base if isinstance(v, tiered_cls) else v

    entry: dict[str, Any] = {
        "input": dec_str(base(values.get("input_mtok", Decimal(0)))),
        "output": dec_str(base(values.get("output_mtok", Decimal(0)))),
        "cached_input": dec_str(base(values["cache_read_mtok"])) if "cache_read_mtok" in values else None,
        "cache_write": dec_str(base(values["cache_write_mtok"])) if "cache_write_mtok" in values else None,
        "cache_write_1h": dec_str(base(values["cache_write_1h_mtok"])) if "cache_write_1h_mtok" in values else None,
        "per_request": dec_str(values["requests_kcount"] / 1000) if "requests_kcount" in values else "0",
        "tiers": [],
    }
    thresholds = sorted(
        {t.start for k, v in values.items() if k in GP_FIELDS and isinstance(v, tiered_cls) for t in v.tiers}
    )
    for start in thresholds:
        tier: dict[str, Any] = {"above_input_tokens": start}
        for key, fld in GP_FIELDS.items():
            v = values.get(key)
            tier[fld] = None
            if isinstance(v, tiered_cls):
                applicable = v.base
                for t in v.tiers:
                    if t.start <= start:
                        applicable = t.price
                if applicable != v.base:
                    tier[fld] = dec_str(applicable)
        entry["tiers"].append(tier)
    return entry


LL_TIER_KEY = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost"
    r"|cache_creation_input_token_cost_above_1hr)_above_(\d+)k_tokens$"
)
LL_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
}


def ll_price_entry(e: dict[str, Any]) -> dict[str, Any] | None:
    """LiteLLM entry -> catalog price dict; None when there is no usable per-token price.

    LiteLLM writes 0.0 both for free previews and as a placeholder, so an all-zero
    entry is treated as unknown (local Ollama models are priced 0 separately).
    """
    if e.get("input_cost_per_token") is None:
        return None
    if all(v == 0 for k, v in e.items() if k in LL_FIELDS or LL_TIER_KEY.match(k)):
        return None
    base = {fld: per_token_to_mtok(e[k]) for k, fld in LL_FIELDS.items() if e.get(k) is not None}
    entry: dict[str, Any] = {
        "input": dec_str(base.get("input", Decimal(0))),
        "output": dec_str(base.get("output", Decimal(0))),
        "cached_input": dec_str(base["cached_input"]) if "cached_input" in base else None,
        "cache_write": dec_str(base["cache_write"]) if "cache_write" in base else None,
        "cache_write_1h": dec_str(base["cache_write_1h"]) if "cache_write_1h" in base else None,
        "per_request": dec_str(Decimal(e["input_cost_per_request"]))
        if e.get("input_cost_per_request") is not None
        else "0",
        "tiers": [],
    }
    if isinstance(e.get("input_cost_per_request"), Decimal) and e["input_cost_per_request"] < 0:
        raise Unpriced("negative per-request price")
    tiers: dict[int, dict[str, Any]] = {}
    for key, value in e.items():
        m = LL_TIER_KEY.match(key)
        if not m or value is None:
            continue
        fld = LL_FIELDS[m.group(1)]
        start = int(m.group(2)) * 1000
        tier = tiers.setdefault(
            start,
            {"above_input_tokens": start} | dict.fromkeys(LL_FIELDS.values()),
        )
        v = per_token_to_mtok(value)
        if fld not in base or v != base[fld]:
            tier[fld] = dec_str(v)
    entry["tiers"] = [tiers[k] for k in sorted(tiers) if any(tiers[k][f] is not None for f in LL_FIELDS.values())]
    return entry


ZERO_ENTRY = {
    "input": "0",
    "output": "0",
    "cached_input": None,
    "cache_write": None,
    "cache_write_1h": None,
    "per_request": "0",
    "tiers": [],
}


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


class Builder:
    def __init__(
        self, gp_providers: list[Any], gp_version: str, litellm: dict[str, Any], ll_version: str, source_date: dt.date
    ) -> None:
        from genai_prices.types import ConditionalPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint

        self.ConditionalPrice = ConditionalPrice
        self.StartDate = StartDateConstraint
        self.TimeOfDate = TimeOfDateConstraint
        self.Tiered = TieredPrices
        self.gp = {p.id: p for p in gp_providers}
        self.gp_all = gp_providers
        self.gp_src = f"genai-prices {gp_version}"
        self.ll_src = f"litellm {ll_version}"
        self.litellm = litellm
        self.source_date = source_date
        self.ll_by_id: dict[str, dict[str, Any]] = {}
        # LiteLLM names that are another form of a catalog model (a Bedrock cross-region profile).
        self.other_names: list[tuple[ProviderCfg, str, dict[str, Any]]] = []
        self.notes: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def note(self, kind: str, example: str) -> None:
        self.notes[kind] += 1
        if len(self.examples[kind]) < 6:
            self.examples[kind].append(example)

    # -- LiteLLM entries per provider -------------------------------------
    def litellm_entries(self, cfg: ProviderCfg) -> tuple[dict[str, tuple[str, dict]], dict[str, str]]:
        included: dict[str, tuple[str, dict]] = {}
        excluded: dict[str, str] = {}  # name -> mode, for non-text entries
        for key in sorted(self.litellm):
            e = self.litellm[key]
            if e.get("litellm_provider") not in cfg.litellm:
                continue
            name = key
            for pre in cfg.prefixes:
                if name.startswith(pre):
                    name = name[len(pre) :]
                    break
            if not name or (("/" in name) and not cfg.allow_slash):
                self.note("litellm: skipped regional/commitment variant", f"{cfg.id}: {key}")
                continue
            profile = cfg.id == "bedrock" and BEDROCK_GEO.match(name)
            if profile or (cfg.id == "vertex" and name.endswith("@default")):
                # Not models of their own; calls may still name them: see profile_aliases().
                if e.get("mode") in INCLUDED_MODES:
                    self.other_names.append((cfg, name, e))
                self.note("litellm: skipped bedrock cross-region profile / vertex @default", key)
                continue
            mode = e.get("mode")
            if mode not in INCLUDED_MODES:
                excluded.setdefault(name, str(mode))
                continue
            prev = included.get(name)
            # same normalised name from several keys: keep the richest entry
            if prev is None or (len(e), key) > (len(prev[1]), prev[0]):
                included[name] = (key, e)
        return included, excluded

    # -- genai-prices lookup ---------------------------------------------------
    def gp_find(self, cfg: ProviderCfg, name: str) -> Any:
        if not cfg.gp:
            return None
        prov = self.gp[cfg.gp]
        for m in prov.models:
            if m.id == name and (cfg.gp_model_filter is None or cfg.gp_model_filter(m.id)):
                return m
        for ref in (name, name.replace("@", "-")):
            m = prov.find_model(ref, all_providers=self.gp_all if cfg.gp_fallback else None)
            if m is not None:
                return m
        return None

    def build_provider(self, cfg: ProviderCfg) -> list[Record]:
        records: dict[str, Record] = {}
        if cfg.gp and cfg.gp_own_models:
            for m in self.gp[cfg.gp].models:
                if cfg.gp_model_filter and not cfg.gp_model_filter(m.id):
                    continue
                name = m.id
                if not m.is_match(m.id):
                    # genai-prices id that is not itself an API name (Bedrock "regional.<model>"):
                    # use the first API name it lists explicitly.
                    explicit = [n for n in ordered_explicit_names(m.match) if m.is_match(n)]
                    if not explicit:
                        self.note("genai-prices: id is not an API model name, skipped", f"{cfg.id}/{m.id}")
                        continue
                    name = explicit[0]
                if not re.search(r"[A-Za-z0-9)]$", name):
                    self.note("genai-prices: prefix pattern, not a model, skipped", f"{cfg.id}/{m.id}")
                    continue
                if name in records:
                    self.note("genai-prices: duplicate API name, skipped", f"{cfg.id}/{m.id}")
                    continue
                records[name] = Record(cfg.id, name, gp_model=m, from_gp_own=True)

        included, excluded = self.litellm_entries(cfg)

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
        keys = {k for k in (*a, *b) if k in LL_FIELDS or LL_TIER_KEY.match(k) or k == "input_cost_per_request"}
        return all(a.get(k) == b.get(k) for k in keys)

    # -- prices --------------------------------------------------------------
    def gp_prices(self, rec: Record, created: dt.date | None) -> list[dict[str, Any]] | None:
        g = rec.gp_model
        raw = g.prices if isinstance(g.prices, list) else [self.ConditionalPrice(prices=g.prices)]
        dated: list[tuple[dt.date | None, Any]] = []
        tod = []
        for cp in raw:
            c = cp.constraint
            if c is None:
                dated.append((None, cp.prices))
            elif isinstance(c, self.StartDate):
                dated.append((c.start_date, cp.prices))
            elif isinstance(c, self.TimeOfDate):
                tod.append(cp)
            else:
                raise SystemExit(f"unknown constraint {c!r} on {g.id}")
        if tod:
            minutes = 0
            for cp in tod:
                s = cp.constraint.start_time.hour * 60 + cp.constraint.start_time.minute
                e = cp.constraint.end_time.hour * 60 + cp.constraint.end_time.minute
                minutes += (e - s) % (24 * 60)
            if minutes > 12 * 60:
                if len({str(cp.prices) for cp in tod}) != 1 or len(dated) != 1:
                    raise SystemExit(f"cannot reduce time-of-day prices of {g.id}")
                dated = [(None, tod[0].prices)]
                self.note("time-of-day price: window price used (covers most of the day)", f"{rec.provider}/{g.id}")
            else:
                self.note("time-of-day price: window ignored (covers less than half the day)", f"{rec.provider}/{g.id}")
        dated.sort(key=lambda x: (x[0] is not None, x[0] or dt.date.min))
        entries: list[dict[str, Any]] = []
        first_change = next((d for d, _ in dated if d is not None), None)
        for d, mp in dated:
            entry = gp_price_entry(mp, self.Tiered)
            if entry is None:
                return None
            if d is None:
                if first_change is None or self.source_date < first_change:
                    d = self.source_date
                elif created is not None and created < first_change:
                    d = created
                else:
                    self.note("genai-prices: undated price before a price change dropped", f"{rec.provider}/{g.id}")
                    continue
            entry = {"effective_from": d.isoformat(), **entry, "source": self.gp_src}
            if entries and {k: v for k, v in entries[-1].items() if k != "effective_from"} == {
                k: v for k, v in entry.items() if k != "effective_from"
            }:
                continue  # change only touched prices the catalog does not model
            entries.append(entry)
        return entries

    def prices(self, cfg: ProviderCfg, rec: Record, meta: dict | None, created: dt.date | None) -> list[dict]:
        if cfg.free:
            src = self.ll_src if meta is not None else "local model (no charge)"
            return [{"effective_from": self.source_date.isoformat(), **ZERO_ENTRY, "source": src}]
        try:
            if cfg.prefer_litellm_prices and rec.ll is not None and ll_price_entry(rec.ll) is not None:
                return [
                    {"effective_from": self.source_date.isoformat(), **ll_price_entry(rec.ll), "source": self.ll_src}
                ]
            if rec.gp_model is not None:
                entries = self.gp_prices(rec, created)
                is_free = (
                    rec.name.endswith(":free")
                    or rec.gp_model.id.endswith(":free")
                    or re.search(r"\bfree\b", rec.gp_model.name or "", re.I)
                )
                if entries is None and is_free:
                    return [{"effective_from": self.source_date.isoformat(), **ZERO_ENTRY, "source": self.gp_src}]
                if entries is not None:
                    return entries
                self.note("genai-prices: model listed without token price -> unpriced", f"{cfg.id}/{rec.name}")
                return []
            if rec.ll is not None:
                entry = ll_price_entry(rec.ll)
                if entry is None:
                    self.note("litellm: no per-token price (or all 0.0) -> unpriced", f"{cfg.id}/{rec.name}")
                    return []
                return [{"effective_from": self.source_date.isoformat(), **entry, "source": self.ll_src}]
        except Unpriced as exc:
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

        dates = [d for d in (name_date(n) for n in [rec.name, *rec.aliases]) if d is not None]
        created = min(dates) if dates else None
        prices = self.prices(cfg, rec, meta, created)

        context = g.context_window if same_as_gp and g.context_window else None
        max_in = as_int(meta.get("max_input_tokens")) if meta else None
        if context is None:
            context = max_in
        max_out = as_int(meta.get("max_output_tokens")) if meta and mtype == "language" else None

        has_cache_price = any(p.get("cached_input") is not None for p in prices)
        if meta is not None:
            caps = {
                "tools": bool(meta.get("supports_function_calling", False)),
                "vision": bool(meta.get("supports_vision", False)),
                "reasoning": bool(meta.get("supports_reasoning", False)),
                "prompt_caching": bool(meta.get("supports_prompt_caching", False)) or has_cache_price,
                "json_output": bool(meta.get("supports_response_schema", False)),
                "audio_input": bool(meta.get("supports_audio_input", False)),
            }
        else:
            caps = {
                "tools": None,
                "vision": None,
                "reasoning": None,
                "prompt_caching": True if has_cache_price else None,
                "json_output": None,
                "audio_input": None,
            }

        # bare aliases only for first-party providers; hosts/routers get "provider/alias"
        aliases = sorted(rec.aliases) if cfg.first_party else sorted(f"{cfg.id}/{a}" for a in rec.aliases)

        if rec.ll is not None:
            self.ll_by_id[f"{cfg.id}/{rec.name}"] = rec.ll
        display = g.name if same_as_gp and g.name and self.unique_gp_name(cfg, g) else rec.name
        return {
            "id": f"{cfg.id}/{rec.name}",
            "provider": cfg.id,
            "name": rec.name,
            "display_name": display,
            "type": mtype,
            "context_window": context,
            "max_output_tokens": max_out,
            "max_input_tokens": max_in,
            "dimensions": as_int(meta.get("output_vector_size")) if meta and mtype == "embedding" else None,
            "capabilities": caps,
            "aliases": aliases,
            "created": created.isoformat() if created else None,
            "deprecation_date": as_date(meta.get("deprecation_date")) if meta else None,
            "prices": prices,
        }


# ---------------------------------------------------------------------------
# Resolution: what usage events' model strings resolve to in this catalog
# ---------------------------------------------------------------------------

DATA_RULES = ("id", "alias", "name", "match")


def resolve_module() -> Any:
    """The service's resolver, app/catalog/resolve.py (standard library only)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from app.catalog import resolve

    return resolve


def resolver_for(models: list[dict[str, Any]], providers: list[dict[str, Any]]) -> Any:
    resolve = resolve_module()
    return resolve.Resolver(*resolve.catalog_entries({"models": models, "providers": providers}))


def current_price(model: dict[str, Any], source_date: dt.date) -> dict[str, Any] | None:
    current = [p for p in model["prices"] if p["effective_from"] <= source_date.isoformat()]
    return {k: v for k, v in current[-1].items() if k not in ("effective_from", "source")} if current else None


def profile_aliases(b: Builder, models: list[dict[str, Any]], providers: list[dict[str, Any]]) -> None:
    """Aliases for the LiteLLM names that are another form of a catalog model priced alike (Bedrock
    cross-region profiles such as us.anthropic..., Vertex @default pointers), where only a fallback
    rule of the resolver reaches them: the alias makes the answer data. A name LiteLLM prices apart
    from the model the resolver reaches is only noted: the catalog has no model for it."""
    index = {m["id"]: m for m in models}
    resolver = resolver_for(models, providers)
    for cfg, name, entry in sorted(b.other_names, key=lambda x: (x[0].id, x[1])):
        found = resolver.resolve(name, cfg.id)
        if found is None:
            b.note("resolution: LiteLLM name that resolves to no model", f"{cfg.id}: {name}")
            continue
        try:
            listed = ll_price_entry(entry)
        except Unpriced:
            listed = None
        target = index[found.model_id]
        if listed != current_price(target, b.source_date):
            b.note(
                "resolution: LiteLLM name priced apart from the model it resolves to (no model for it)",
                f"{cfg.id}: {name} -> {found.model_id}",
            )
            continue
        if found.rule not in DATA_RULES:
            alias = name if cfg.first_party else f"{cfg.id}/{name}"
            target["aliases"] = sorted({*target["aliases"], alias})
            b.note("resolution: alias added for a LiteLLM name only a fallback rule reached", f"{alias}")


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

PRICE_RE = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")


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
    bare = {m["name"].lower() for m in models if m["provider"] in {c.id for c in PROVIDERS if c.first_party}}
    errors += [f"alias {a} is a first-party model's name" for a in aliases if a.lower() in bare]
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
        dates = [p["effective_from"] for p in m["prices"]]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            errors.append(f"{mid}: prices not strictly sorted by effective_from")
        for p in m["prices"]:
            if not p.get("source") or not p.get("effective_from"):
                errors.append(f"{mid}: price without source/date")
            vals = [p["input"], p["output"], p["cached_input"], p["cache_write"], p.get("cache_write_1h")]
            vals.append(p["per_request"])
            for t in p["tiers"]:
                vals += [t["input"], t["output"], t["cached_input"], t["cache_write"], t.get("cache_write_1h")]
            for v in vals:
                if v is None:
                    continue
                if not isinstance(v, str) or not PRICE_RE.match(v) or len(Decimal(v).as_tuple().digits) >= 15:
                    errors.append(f"{mid}: bad price value {v!r}")
    return errors


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--litellm-wheel", help="path to a downloaded litellm-*.whl (JSON read from the zip)")
    src.add_argument("--litellm-json", help="path to model_prices_and_context_window.json")
    ap.add_argument("--litellm-version", help="LiteLLM version (required with --litellm-json)")
    ap.add_argument("--litellm-license", default="MIT", help="LiteLLM license (with --litellm-json)")
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

    litellm, ll_version, ll_license = load_litellm(args)
    gp_providers, gp_version, gp_license = load_genai_prices()
    for name, lic in (("genai-prices", gp_license), ("litellm", ll_license)):
        if lic.upper() not in ("MIT", "APACHE-2.0", "BSD-3-CLAUSE", "BSD-2-CLAUSE"):
            print(f"ERROR: {name} license {lic!r} is not a known permissive license", file=sys.stderr)
            return 1

    b = Builder(gp_providers, gp_version, litellm, ll_version, source_date)
    models: list[dict[str, Any]] = []
    for cfg in PROVIDERS:
        records = b.build_provider(cfg)
        clauses = b.match_owners(cfg, records)
        for rec in records:
            models.append(b.model_dict(cfg, rec) | {"match": clauses.get(rec.name)})
    models.sort(key=lambda m: m["id"])
    index = {m["id"]: m for m in models}

    # Azure OpenAI serves OpenAI's models: embedding dimensions LiteLLM omits for
    # the Azure entry are taken from the OpenAI entry of the same model name.
    for m in models:
        if m["provider"] == "azure" and m["type"] == "embedding" and m["dimensions"] is None:
            upstream = index.get(f"openai/{m['name']}")
            if upstream and upstream["type"] == "embedding" and upstream["dimensions"]:
                m["dimensions"] = upstream["dimensions"]
                b.note("azure embedding: dimensions taken from the OpenAI entry of the same name", m["id"])

    # An undated first price (dated by the snapshot) has applied since the model's release: dating it
    # by the release lets usage that happened before the snapshot be priced, as it was then.
    for m in models:
        first = m["prices"][0] if m["prices"] else None
        undated = first is not None and first["effective_from"] == source_date.isoformat()
        if undated and m["created"] and m["created"] < first["effective_from"]:
            first["effective_from"] = m["created"]
            b.note("first price dated by the model's release", m["id"])

    # Informational cross-check: genai-prices vs LiteLLM list prices for the same entry.
    disagreements = []
    for m in models:
        ll_entry = b.ll_by_id.get(m["id"])
        current = [p for p in m["prices"] if p["effective_from"] <= source_date.isoformat()]
        if not ll_entry or not current or not current[-1]["source"].startswith("genai-prices"):
            continue
        try:
            ll = ll_price_entry(ll_entry)
        except Unpriced:
            continue
        if ll and (ll["input"], ll["output"]) != (current[-1]["input"], current[-1]["output"]):
            disagreements.append(
                f"{m['id']}: genai-prices {current[-1]['input']}/{current[-1]['output']} "
                f"vs litellm {ll['input']}/{ll['output']}"
            )
    suspicious = [
        f"{m['id']}: input {p['input']}"
        for m in models
        for p in m["prices"]
        if m["type"] == "embedding" and Decimal(p["input"]) > 10
    ]

    providers = sorted(({"id": c.id, "name": c.name} for c in PROVIDERS), key=lambda p: p["id"])
    profile_aliases(b, models, providers)

    catalog = {
        "generated_at": generated_at.isoformat(),
        "sources": [
            {"name": "genai-prices", "version": gp_version, "license": gp_license},
            {"name": "litellm model_prices_and_context_window.json", "version": ll_version, "license": ll_license},
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
