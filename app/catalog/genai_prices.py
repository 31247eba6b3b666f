"""genai-prices (pydantic, MIT): the installed package's bundled data as catalog price entries.

Read by the catalog sync (`billing catalog sync --source genai-prices`, see `catalog_models`) and by
scripts/build_catalog.py, which runs with nothing but genai-prices and the standard library installed:
this module imports only those (and the standard-library modules beside it). The data is the snapshot
the installed package bundles (`genai_prices.data`); the package's network auto-update is never used,
so refreshing prices means upgrading the package.

Rules (also in app/catalog/SOURCES.md):

* Prices are Decimals per 1M tokens already; they are written as the shortest exact decimal strings.
  `requests_kcount` (USD per 1000 requests) becomes `per_request`. A model price with neither an input
  nor an output token price is no price (None). A negative or float-artefact value (15 or more
  significant digits) among the rates the catalog reads makes the price unusable (litellm.Unusable).
* History: a model's price is resolved as `ModelInfo.get_prices(timestamp, price_context)` resolves it,
  at every date where a start-date constraint (of a price or of a price variant) begins, and at every
  minute of the UTC day where a time-of-day constraint begins or ends. Each date gives a price entry,
  unless it repeats the one before.
* Time of day: the price in force for the larger part of the UTC day is the base; each other stretch of
  the day becomes a variant with `time_from`/`time_to` (DeepSeek's off-peak hours, say).
* Service tiers: `price_variants` with when={"processing": "batch"} are the batch tier, and
  {"service_tier": "flex" | "priority"} those tiers. Each becomes a variant with the complete rates the
  context resolves to (the standard prices with the variant's keys replaced). {"service_tier":
  "default"} is the base; "fast", "speed", "route" and "search_type" variants are not represented.
* The undated price (no start date) is dated `source_date` when no change follows it by then; else the
  model's release date (`created`) when that precedes the first change; else it is dropped (note).
"""

import datetime as dt
import importlib.metadata
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from genai_prices.types import (
    ClauseAnd,
    ClauseContains,
    ClauseEndsWith,
    ClauseEquals,
    ClauseOr,
    ClauseRegex,
    ClauseStartsWith,
    ModelInfo,
    ModelPrice,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from app.catalog.litellm import FLOAT_DIGITS, FloatArtefact, Unusable, VariablePrice, text

FIELDS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
}
# The request context of each service tier the catalog represents, as price_variants' `when` names it.
TIER_CONTEXTS = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}
DAY = 24 * 60
EPOCH = dt.date(1970, 1, 1)  # a date before every start date of the data: the undated price's

# gp models that are not token-billed language or embedding models, by name (the build script also
# drops those LiteLLM knows as image, audio or rerank models).
NON_TEXT_NAME = re.compile(
    r"(tts|whisper|dall-e|imagen|veo|sora|transcri|moderation|realtime|(^|[-/])live([-.]|$)|image|"
    r"audio|speech|voice|(^|[-/.])ocr([-.]|$)|rerank|lyria|nano-banana|sonic|orpheus|voxtral-mini)",
    re.I,
)
EMBEDDING_NAME = re.compile(r"(embed|bge)", re.I)


@dataclass(frozen=True)
class Target:
    """Which genai-prices provider prices a catalog provider's models, and how its models are found."""

    gp: str  # the genai-prices provider id
    keep: Callable[[str], bool] | None = None  # which of its model ids are the catalog provider's own
    own: bool = True  # its own models are the catalog provider's (Vertex: genai-prices has no list of its own)
    fallback: bool = False  # look in its fallback providers too (Azure: OpenAI's models)


# Catalog provider -> genai-prices provider (scripts/build_catalog.py reads the same table).
TARGETS: dict[str, Target] = {
    "openai": Target("openai"),
    "anthropic": Target("anthropic"),
    # genai-prices' "google" covers googleapis.com, Claude on Vertex included: its Claude models are not
    # the Gemini API's.
    "google": Target("google", keep=lambda model_id: not model_id.startswith("claude")),
    "vertex": Target("google", own=False, fallback=True),
    "cohere": Target("cohere"),
    "openrouter": Target("openrouter", keep=lambda model_id: "/" in model_id),
    "cerebras": Target("cerebras"),
    "azure": Target("azure", fallback=True),
    "mistral": Target("mistral"),
    "deepseek": Target("deepseek"),
    "xai": Target("x-ai"),
    "groq": Target("groq"),
    "bedrock": Target("aws"),
    "together": Target("together"),
    "novita": Target("novita"),
}


def load() -> tuple[list[Any], str, str]:
    """(providers, version, license) of the installed package's bundled data."""
    from genai_prices.data import providers  # the bundled snapshot, never the network update

    meta = importlib.metadata.metadata("genai-prices")
    license_ = meta.get("License-Expression") or meta.get("License") or "UNKNOWN"
    return providers, importlib.metadata.version("genai-prices"), license_


# Match clauses


CLAUSE_KEYS = {
    ClauseEquals: "equals",
    ClauseStartsWith: "starts_with",
    ClauseEndsWith: "ends_with",
    ClauseContains: "contains",
    ClauseRegex: "regex",
}


def clause_json(clause: Any) -> dict[str, Any]:
    """A match clause as the JSON genai-prices' data is written in: {"starts_with": "x"}, {"or": [...]}."""
    if type(clause) in CLAUSE_KEYS:
        key = CLAUSE_KEYS[type(clause)]
        return {key: getattr(clause, key)}
    if isinstance(clause, ClauseOr):
        return {"or": [clause_json(c) for c in clause.or_]}
    if isinstance(clause, ClauseAnd):
        return {"and": [clause_json(c) for c in clause.and_]}
    raise ValueError(f"unknown genai-prices match clause {clause!r}")


def explicit_names(match: Any) -> list[str]:
    """Model names a match clause lists explicitly (equals, or-of-equals), in order."""
    if isinstance(match, ClauseEquals):
        return [match.equals]
    if isinstance(match, ClauseOr):
        return [name for clause in match.or_ for name in explicit_names(clause)]
    return []


def find(providers: dict[str, Any], target: Target, name: str) -> ModelInfo | None:
    """The genai-prices model that prices `name` at the target's provider: the model of that id, else
    the first whose match clause takes the name (or its "@" form as "-"), in genai-prices' data order,
    in the fallback providers too where the target says so."""
    provider = providers[target.gp]
    for model in provider.models:
        if model.id == name and (target.keep is None or target.keep(model.id)):
            return model
    every = list(providers.values()) if target.fallback else None
    for ref in (name, name.replace("@", "-")):
        model = provider.find_model(ref, all_providers=every)
        if model is not None:
            return model
    return None


def api_name(model: ModelInfo) -> tuple[str | None, str | None]:
    """(the API model name the catalog lists the model by, None) or (None, why it lists none).

    The model's id, or when that is not itself a name its clause matches (Bedrock's
    "regional.<model>"), the first name the clause lists explicitly that it matches."""
    name = model.id
    if not model.is_match(model.id):
        explicit = [n for n in explicit_names(model.match) if model.is_match(n)]
        if not explicit:
            return None, "genai-prices: id is not an API model name, skipped"
        name = explicit[0]
    if not re.search(r"[A-Za-z0-9)]$", name):
        return None, "genai-prices: prefix pattern, not a model, skipped"
    return name, None


# Prices


def checked(value: Decimal, key: str) -> Decimal:
    if value < 0:
        raise VariablePrice(f"`{key}` is negative ({value}): the price is variable")
    if len(value.normalize().as_tuple().digits) >= FLOAT_DIGITS:
        raise FloatArtefact(f"`{key}` is a float artefact ({value}), not a list price")
    return value


def price_entry(price: ModelPrice) -> dict[str, Any] | None:
    """A ModelPrice as a catalog price entry (rates and tiers; no date, source or variants); None when
    it has no token price. Raises Unusable."""
    values = {key: value for key, value in price.__dict__.items() if not key.startswith("_") and value is not None}
    if "input_mtok" not in values and "output_mtok" not in values:
        return None
    rates: dict[str, Decimal | TieredPrices] = {}
    for key, kind in FIELDS.items():
        value = values.get(key)
        if isinstance(value, TieredPrices):
            checked(value.base, key)
            for tier in value.tiers:
                checked(tier.price, f"{key} above {tier.start}")
        elif value is not None:
            checked(value, key)
        if value is not None:
            rates[kind] = value

    def base(kind: str) -> Decimal | None:
        value = rates.get(kind)
        return value.base if isinstance(value, TieredPrices) else value

    entry: dict[str, Any] = {kind: None if base(kind) is None else text(base(kind)) for kind in FIELDS.values()}
    entry["input"] = entry["input"] or "0"
    entry["output"] = entry["output"] or "0"
    fee = values.get("requests_kcount")
    entry["per_request"] = text(checked(fee, "requests_kcount").scaleb(-3)) if fee is not None else "0"
    thresholds = sorted({t.start for value in rates.values() if isinstance(value, TieredPrices) for t in value.tiers})
    entry["tiers"] = []
    for start in thresholds:
        tier: dict[str, Any] = {"above_input_tokens": start}
        for kind in FIELDS.values():
            value, rate = rates.get(kind), None
            if isinstance(value, TieredPrices):
                applicable = value.base
                for step in value.tiers:
                    if step.start <= start:
                        applicable = step.price
                rate = text(applicable) if applicable != value.base else None
            tier[kind] = rate
        entry["tiers"].append(tier)
    return entry


def history(
    model: ModelInfo, source: str, source_date: dt.date, created: dt.date | None, note: Callable[[str], None]
) -> list[dict[str, Any]] | None:
    """The model's dated price entries, oldest first; None when some date has no token price.

    Raises Unusable when a base price is unusable; an unusable variant is left out (noted)."""
    starts = start_dates(model)
    marks = day_marks(model)
    spans: list[tuple[dt.date | None, dict[str, Any]]] = []
    for start in [None, *starts]:
        entry = day_price(model, start or EPOCH, marks, note)
        if entry is None:
            return None
        if not spans or spans[-1][1] != entry:  # a change of prices the catalog does not model is none
            spans.append((start, entry))
    first_change = next((start for start, _ in spans if start is not None), None)
    entries = []
    for start, entry in spans:
        if start is None:
            if first_change is None or source_date < first_change:
                start = source_date
            elif created is not None and created < first_change:
                start = created
            else:
                note("genai-prices: undated price before a price change dropped")
                continue
        entries.append({"effective_from": start.isoformat(), **entry, "source": source})
    return entries


def start_dates(model: ModelInfo) -> list[dt.date]:
    """Every date a price or a price variant of the model starts."""
    conditional = model.prices if isinstance(model.prices, list) else []
    constraints = [c.constraint for c in conditional] + [v.constraint for v in model.price_variants or ()]
    return sorted({c.start_date for c in constraints if isinstance(c, StartDateConstraint)})


def day_marks(model: ModelInfo) -> list[int]:
    """Minutes of the UTC day at which a time-of-day constraint begins or ends (0 always)."""
    conditional = model.prices if isinstance(model.prices, list) else []
    constraints = [c.constraint for c in conditional] + [v.constraint for v in model.price_variants or ()]
    marks = {0}
    for constraint in constraints:
        if isinstance(constraint, TimeOfDateConstraint):
            marks |= {minute(constraint.start_time), minute(constraint.end_time)}
    return sorted(marks)


def minute(moment: dt.time) -> int:
    if moment.tzinfo is not None:
        moment = dt.datetime.combine(EPOCH, moment).astimezone(dt.UTC).time()
    if moment.second or moment.microsecond:
        raise ValueError(f"time of day {moment} is not a whole minute")
    return moment.hour * 60 + moment.minute


def hhmm(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def day_price(model: ModelInfo, day: dt.date, marks: list[int], note: Callable[[str], None]) -> dict | None:
    """The price entry in force on `day`: the base is the price of the larger part of the day, with a
    variant for each other stretch of the day and for each service tier priced apart."""
    moments = [dt.datetime.combine(day, dt.time(m // 60, m % 60), dt.UTC) for m in marks]
    lengths = [end - start for start, end in zip(marks, [*marks[1:], DAY], strict=True)]
    standard = [price_entry(model.get_prices(moment)) for moment in moments]
    if any(entry is None for entry in standard):
        return None
    minutes: dict[str, int] = {}
    for entry, length in zip(standard, lengths, strict=True):
        minutes[key(entry)] = minutes.get(key(entry), 0) + length
    base = max(standard, key=lambda entry: minutes[key(entry)])  # the first of the longest, on a tie

    found: list[dict[str, Any]] = []
    for tier, context in TIER_CONTEXTS.items():
        try:
            quoted = [price_entry(model.get_prices(moment, context)) for moment in moments]
        except Unusable as exc:
            note(f"genai-prices: unusable {tier} price left out ({exc})")
            continue
        if quoted == standard:
            continue  # no variant for this tier
        if any(q is None or q != quoted[0] for q in quoted):
            note(f"genai-prices: {tier} price that changes with the time of day left out")
            continue
        found.append({"service_tier": tier} | quoted[0])
    found += windows(marks, standard, base)
    return base | ({"variants": found} if found else {})


def windows(marks: list[int], standard: list[dict], base: dict) -> list[dict[str, Any]]:
    """A variant for each stretch of the day (merged across midnight) whose price is not the base's."""
    stretches: list[list[Any]] = []  # [start, end, entry]
    for start, end, entry in zip(marks, [*marks[1:], DAY], standard, strict=True):
        if entry == base:
            continue
        if stretches and stretches[-1][1] == start and stretches[-1][2] == entry:
            stretches[-1][1] = end
        else:
            stretches.append([start, end, entry])
    if len(stretches) > 1 and stretches[0][0] == 0 and stretches[-1][1] == DAY and stretches[0][2] == stretches[-1][2]:
        stretches[0][0] = stretches.pop()[0] - DAY  # one window across midnight
    return [{"time_from": hhmm(start % DAY), "time_to": hhmm(end)} | entry for start, end, entry in stretches]


def key(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True)


# The sync source


def catalog_models(source_date: dt.date, bundled: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], str]:
    """(models in the catalog file's shape, notes, the data's label) for the catalog sync.

    Every model of the bundled catalog (`bundled`, the build script's output) whose price comes from
    genai-prices, with genai-prices' price history for it (found as the build script finds it), and
    every model genai-prices lists as a provider's own that prices no model of the catalog yet, named,
    filtered and typed (by name) as the build script does with a model only genai-prices knows."""
    providers, version, _ = load()
    by_id = {provider.id: provider for provider in providers}
    label = f"genai-prices {version}"
    found: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    pricing: set[int] = set()  # the genai-prices models that price a bundled model

    def entry(model_id: str, name: str, model: ModelInfo, created: dt.date | None, **fields: Any) -> dict:
        def note(text: str) -> None:
            notes.append(f"{model_id}: {text}")

        try:
            prices = history(model, label, source_date, created, note) or []
        except Unusable as exc:
            note(f"price not used: {exc}")
            prices = []
        own = model.id == name or name in explicit_names(model.match)
        context = model.context_window if own else None
        return {
            "id": model_id,
            "name": name,
            "context_window": context,
            "facts": {"context_window": label} if context else {},
            "prices": prices,
        } | fields

    for bundled_model in bundled["models"]:
        target = TARGETS.get(bundled_model["provider"])
        sources = [price["source"] for price in bundled_model["prices"] if price["effective_from"] <= str(source_date)]
        if target is None or not sources or not sources[-1].startswith("genai-prices"):
            continue
        model = find(by_id, target, bundled_model["name"])
        if model is None:
            notes.append(f"{bundled_model['id']}: genai-prices no longer prices it")
            continue
        pricing.add(id(model))
        created = dt.date.fromisoformat(bundled_model["created"]) if bundled_model.get("created") else None
        found[bundled_model["id"]] = entry(
            bundled_model["id"],
            bundled_model["name"],
            model,
            created,
            provider=bundled_model["provider"],
            type=bundled_model["type"],
        )
    for provider_id, target in TARGETS.items():
        if not target.own:
            continue
        names = Counter((m.name or "").lower() for m in by_id[target.gp].models)
        for model in by_id[target.gp].models:
            name, _ = api_name(model)
            model_id = f"{provider_id}/{name}"
            if target.keep is not None and not target.keep(model.id):
                continue
            if name is None or NON_TEXT_NAME.search(name) or model_id in found or id(model) in pricing:
                continue
            unique = model.name and names[model.name.lower()] == 1
            found[model_id] = entry(
                model_id,
                name,
                model,
                None,
                provider=provider_id,
                type="embedding" if EMBEDDING_NAME.search(name) else "language",
                display_name=model.name if model.id == name and unique else None,
                match=clause_json(model.match),
            )
    return list(found.values()), notes, label
