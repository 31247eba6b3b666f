"""LiteLLM's `model_prices_and_context_window.json`: what one entry says about a model's price and facts.

One reading for everything that reads the file: the catalog sync (app/catalog/sources.py) and the
script that builds the bundled catalog (scripts/build_catalog.py), which runs with nothing but the
standard library and genai-prices installed, so this module imports nothing else. The file must be
parsed with parse_float=Decimal: a price never passes through a binary float.

Prices (the rules, also in app/catalog/SOURCES.md):

* Rates are USD per token in the file and USD per 1M tokens here, scaled by 10^6 exactly, written as
  the shortest exact decimal string ("2.5", "0.075").
* No `input_cost_per_token`: the price is unknown (None), except for local models (`free`), which
  cost an explicit 0. Every rate 0 (base, tiers, service tiers) and no request fee: unknown too,
  since LiteLLM writes 0.0 as a placeholder as well as for free previews.
* A negative rate anywhere: the price is variable (`VariablePrice`): no fixed price applies.
* A value with 15 or more significant digits is the repr of a binary float (3.0000000000000004e-06),
  not a list price: the price is not usable (`FloatArtefact`).
* A value that is not a JSON number: ValueError.
* `<rate>_above_<N>k_tokens` keys are long-context tiers (a tier rate equal to the base is left null).
* Service tiers become variants with the complete rates LiteLLM's own cost calculator charges:
  - flex and priority: the base rates with every `<key>_flex` (`<key>_priority`) key replacing its
    unsuffixed key, tier keys included (`input_cost_per_token_above_272k_tokens_flex`); a key without
    a suffixed twin keeps its standard rate, long-context tiers included.
  - batch, when `input_cost_per_token_batches` is given: the `*_batches` keys alone. A cache rate
    without a batch key is null (LiteLLM bills those tokens at the batch input rate, which is what
    null means), an output rate without one is half the standard output rate, and the only
    long-context tiers are the `*_above_<N>k_tokens_batches` ones.
  Other suffixes (`_ultrafast`, `_decisions`, `_balanced`), `off_peak_pricing` (windows by weekday)
  and the regional uplift multipliers are not read.

Facts: `max_input_tokens` is the context window (the legacy `max_tokens` is ambiguous and not read);
`max_output_tokens` for language models, `output_vector_size` for embedding models; a capability is
known only where its `supports_*` flag is a boolean (an absent flag is unknown); input and output
modalities from `supported_modalities` and `supported_output_modalities`, and vision and audio input
from the input modalities where the flag is absent.
"""

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

RATE_KINDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
RATE_KEYS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
}
SERVICE_TIERS = {"batches": "batch", "flex": "flex", "priority": "priority"}
# A rate key: the rate, an optional long-context threshold, an optional service tier. The 1-hour cache
# write key comes first in the alternation: it starts like the 5-minute one.
RATE_KEY = re.compile(
    r"^(?P<rate>cache_creation_input_token_cost_above_1hr|cache_creation_input_token_cost"
    r"|cache_read_input_token_cost|input_cost_per_token|output_cost_per_token)"
    r"(?:_above_(?P<thousands>\d+)k_tokens)?(?:_(?P<tier>batches|flex|priority))?$"
)
MODES = {"chat": "language", "completion": "language", "responses": "language", "embedding": "embedding"}
FLAGS = {
    "supports_function_calling": "tools",
    "supports_vision": "vision",
    "supports_reasoning": "reasoning",
    "supports_prompt_caching": "prompt_caching",
    "supports_response_schema": "json_output",
    "supports_audio_input": "audio_input",
}
CAPABILITIES = ("tools", "vision", "reasoning", "prompt_caching", "json_output", "audio_input")
# Every dataset's modality words, in the catalog's vocabulary.
MODALITY_WORDS = {"pdf": "file", "document": "file", "embeddings": "embedding"}
MAX_COUNT = 2**31 - 1  # the INTEGER columns of the models table
FLOAT_DIGITS = 15


class Unusable(ValueError):
    """A published price that cannot be charged as it stands."""


class VariablePrice(Unusable):
    """A negative rate: the routers' way of saying the price depends on the call."""


class FloatArtefact(Unusable):
    """A value that is a binary float's repr, not the list price it was meant to be."""


def text(value: Decimal) -> str:
    """The shortest exact decimal string: "350", "0.35", never "3.5E+2" or "0.350"."""
    if value == 0:
        return "0"
    digits = format(value, "f")
    return digits.rstrip("0").rstrip(".") if "." in digits else digits


def usd(value: Any, key: str) -> Decimal:
    """A JSON number of the file as an exact, usable USD amount."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"`{key}` is not a decimal number: {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"`{key}` is not a finite number: {value!r}")
    if number < 0:
        raise VariablePrice(f"`{key}` is negative ({value}): the price is variable")
    if len(number.normalize().as_tuple().digits) >= FLOAT_DIGITS:
        raise FloatArtefact(f"`{key}` is a float artefact ({value}), not a list price")
    return number


def per_million(value: Any, key: str) -> Decimal:
    try:
        return usd(value, key).scaleb(6)
    except InvalidOperation:  # an exponent out of range
        raise ValueError(f"`{key}` is not a usable number: {value!r}") from None


def price(item: dict[str, Any], *, free: bool = False) -> dict[str, Any] | None:
    """The entry's price in the catalog file's shape, undated and without `source`; None when unknown.

    Raises VariablePrice, FloatArtefact (both Unusable) or ValueError as the module docstring says."""
    # bands[service tier or None][threshold, 0 for the base][rate kind] = USD per 1M tokens
    bands: dict[str | None, dict[int, dict[str, Decimal]]] = {}
    for key, value in item.items():
        match = RATE_KEY.match(key)
        if match is None or value is None:
            continue
        threshold = int(match["thousands"]) * 1000 if match["thousands"] else 0
        tier = SERVICE_TIERS[match["tier"]] if match["tier"] else None
        bands.setdefault(tier, {}).setdefault(threshold, {})[RATE_KEYS[match["rate"]]] = per_million(value, key)
    fee = item.get("input_cost_per_request")
    per_request = usd(fee, "input_cost_per_request") if fee is not None else Decimal(0)
    base = bands.get(None, {}).get(0, {})
    if "input" not in base:
        return zero() if free else None
    every_rate = [rate for band in bands.values() for rates in band.values() for rate in rates.values()]
    if not any(every_rate) and not per_request:
        return zero() if free else None  # LiteLLM's placeholder 0.0 (or a local model)
    entry = rate_set(bands.get(None, {}), per_request)
    variants = []
    for tier in sorted(t for t in bands if t is not None):
        own = batch_bands(bands) if tier == "batch" else tier_bands(bands, tier)
        variant = None if own is None else rate_set(own, per_request)
        if variant is not None and variant != entry:
            variants.append({"service_tier": tier} | variant)
    if variants:
        entry["variants"] = variants
    return entry


def tier_bands(bands: dict, tier: str) -> dict[int, dict[str, Decimal]]:
    """Flex or priority: the standard rates with the tier's keys over them, band by band."""
    merged = {above: bands[None].get(above, {}) | rates for above, rates in bands[tier].items()}
    return merged | {above: rates for above, rates in bands[None].items() if above not in merged}


def batch_bands(bands: dict) -> dict[int, dict[str, Decimal]] | None:
    """Batch: the `*_batches` keys alone, the output rate halved when it has none (LiteLLM's
    batch_cost_calculator); None without a batch input rate."""
    own = {above: dict(rates) for above, rates in bands["batch"].items()}
    flat = own.setdefault(0, {})
    if "input" not in flat:
        return None
    standard = bands[None][0]
    if "output" not in flat and "output" in standard:
        flat["output"] = standard["output"] / 2  # exact: a rate has far fewer digits than the context
    return own


def rate_set(bands: dict[int, dict[str, Decimal]], per_request: Decimal) -> dict[str, Any]:
    """Base rates (threshold 0) and the tiers above it; a tier rate equal to the base one is null."""
    base = bands.get(0, {})
    entry: dict[str, Any] = {kind: text(base[kind]) if kind in base else None for kind in RATE_KINDS}
    entry["output"] = entry["output"] or "0"  # as LiteLLM reads an entry without an output rate
    entry["per_request"] = text(per_request)
    entry["tiers"] = []
    for above in sorted(a for a in bands if a > 0):
        tier = {
            kind: text(rate) if (rate := bands[above].get(kind)) is not None and rate != base.get(kind) else None
            for kind in RATE_KINDS
        }
        if any(value is not None for value in tier.values()):
            entry["tiers"].append({"above_input_tokens": above} | tier)
    return entry


def zero() -> dict[str, Any]:
    return dict.fromkeys(RATE_KINDS) | {"input": "0", "output": "0", "per_request": "0", "tiers": []}


def kind(item: dict[str, Any]) -> str | None:
    """The model's type: language, embedding, or None for what the catalog does not carry (images, audio)."""
    return MODES.get(item.get("mode"))


def facts(item: dict[str, Any]) -> dict[str, Any]:
    """What the entry says about the model; None where it says nothing. Raises ValueError on malformed
    counts, dates and lists."""
    model_kind = kind(item)
    language, embedding = model_kind == "language", model_kind == "embedding"
    context = count(item.get("max_input_tokens"), "max_input_tokens")
    inputs = modalities(item.get("supported_modalities"), "supported_modalities")
    outputs = modalities(item.get("supported_output_modalities"), "supported_output_modalities")
    if outputs is None and embedding:
        outputs = ["embedding"]  # what the mode says
    known = {ours: item[theirs] for theirs, ours in FLAGS.items() if isinstance(item.get(theirs), bool)}
    if inputs is not None:
        known.setdefault("vision", "image" in inputs)
        known.setdefault("audio_input", "audio" in inputs)
    return {
        "context_window": context,
        "max_input_tokens": context,
        "max_output_tokens": count(item.get("max_output_tokens"), "max_output_tokens") if language else None,
        "dimensions": count(item.get("output_vector_size"), "output_vector_size") if embedding else None,
        "input_modalities": inputs,
        "output_modalities": outputs,
        "deprecation_date": day(item.get("deprecation_date"), "deprecation_date"),
    } | {name: known.get(name) for name in CAPABILITIES}


def unflagged(item: dict[str, Any]) -> dict[str, bool]:
    """The capabilities an entry has no `supports_*` flag for, as LiteLLM itself reads them: false
    (`litellm.supports_vision()` answers False for them). Only a last resort, where no dataset says
    anything (scripts/build_catalog.py): the sync leaves them unknown, so that they never overwrite a
    capability another dataset knows."""
    return {ours: False for theirs, ours in FLAGS.items() if not isinstance(item.get(theirs), bool)}


def count(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"`{key}` is not a token count: {value!r}")
    return value


def day(value: Any, key: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(value[:10]).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"`{key}` is not a date: {value!r}") from None


def modalities(value: Any, key: str) -> list[str] | None:
    """A list of modality words in the catalog's vocabulary, in the source's order, without repeats."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(word, str) and word.strip() for word in value):
        raise ValueError(f"`{key}` is not a list of modalities")
    words = (word.strip().lower() for word in value)
    return list(dict.fromkeys(MODALITY_WORDS.get(word, word) for word in words))


# Regional price keys: the same model priced in a region of its own, named by a prefix of the key.

# Bedrock cross-region inference profiles ("us.anthropic.claude-..."), after the "bedrock/" prefix.
BEDROCK_PROFILE = re.compile(r"^(?P<region>us-gov|us|eu|apac|au|jp|in|ca|global)\.(?P<name>.+)$")
# Azure OpenAI data zones ("azure/us/gpt-4o"), after the "azure/" prefix.
AZURE_ZONE = re.compile(r"^(?P<region>us|eu)/(?P<name>[^/]+)$")


def regional(scheme: str | None, name: str) -> tuple[str, str] | None:
    """(region, the in-region model's name) when `name` is a regional key of that scheme."""
    pattern = {"bedrock": BEDROCK_PROFILE, "azure": AZURE_ZONE}.get(scheme or "")
    match = pattern.match(name) if pattern else None
    return (match["region"], match["name"]) if match else None


def region_variants(base: dict[str, Any], region: str, regional_price: dict[str, Any]) -> list[dict[str, Any]]:
    """The variants a regional price adds to the in-region `base` price: the region's own rates, and
    its service tiers in that region; none when the region costs the same."""
    own = {key: value for key, value in regional_price.items() if key != "variants"}
    same = {key: value for key, value in base.items() if key not in ("variants", "source", "effective_from")}
    found = [] if own == same else [{"region": region} | own]
    for variant in regional_price.get("variants", ()):
        found.append({"region": region} | variant)
    return found
