"""Price entries of catalog files: their shape and checks, and one dataset's price filling another's gaps.

A price entry has rates (USD per 1M tokens, exact decimal strings; null is unknown), a request fee,
long-context `tiers`, and `variants`: rate sets that replace the base rates when their conditions hold.
A variant is an object with one or more conditions and a complete rate set:

    {"service_tier": "batch" | "flex" | "priority",   optional
     "region": "us",                                  optional, [a-z0-9-]{1,32}
     "time_from": "16:30", "time_to": "00:30",        optional, both or neither: UTC [from, to), may wrap midnight
     "input": "1.25", "output": "5", "cached_input": null, "cache_write": null, "cache_write_1h": null,
     "per_request": "0", "tiers": [...]}              the base entry's shape

Rates are exact decimal strings of USD per 1M tokens; null is unknown, with the base's fallbacks (cached
input and cache writes fall back to the variant's input rate; 1-hour cache writes have none). Which
variant applies to a call is the pricing's business (app/pricing.py); this module names the shape and
checks it for the build script, and fills gaps (below) for it and for the catalog sync: standard library
only, like app/catalog/litellm.py.
"""

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

CONDITIONS = ("service_tier", "region", "time_from", "time_to")
SERVICE_TIERS = ("batch", "flex", "priority")
RATE_KINDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
KEYS = frozenset((*CONDITIONS, *RATE_KINDS, "per_request", "tiers"))
TIER_KEYS = frozenset(("above_input_tokens", *RATE_KINDS))
REGION = re.compile(r"^[a-z0-9-]{1,32}$")
TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# The model facts a catalog entry may state, besides capabilities and dates (each with its source in `facts`).
MODEL_FACTS = (
    "context_window",
    "max_input_tokens",
    "max_output_tokens",
    "dimensions",
    "input_modalities",
    "output_modalities",
)
# A rate as the catalog writes it: a plain decimal, no exponent, no trailing zeros.
RATE = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")


def conditions(variant: dict[str, Any]) -> dict[str, Any]:
    return {key: variant[key] for key in CONDITIONS if variant.get(key) is not None}


def problems(variants: Any) -> list[str]:
    """What is wrong with a price's variants; [] when nothing is."""
    if not isinstance(variants, list):
        return ["variants is not a list"]
    found: list[str] = []
    seen: list[dict[str, Any]] = []
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        if not isinstance(variant, dict):
            found.append(f"{where} is not an object")
            continue
        found += [f"{where}: unknown key {key!r}" for key in sorted(set(variant) - KEYS)]
        when = conditions(variant)
        if not when:
            found.append(f"{where} has no condition")
        if "service_tier" in when and when["service_tier"] not in SERVICE_TIERS:
            found.append(f"{where}: service_tier {when['service_tier']!r} is not one of {', '.join(SERVICE_TIERS)}")
        if "region" in when and not (isinstance(when["region"], str) and REGION.match(when["region"])):
            found.append(f"{where}: region {when['region']!r} is not [a-z0-9-]{{1,32}}")
        if ("time_from" in when) != ("time_to" in when):
            found.append(f"{where}: time_from and time_to come together")
        for key in ("time_from", "time_to"):
            if key in when and not (isinstance(when[key], str) and TIME.match(when[key])):
                found.append(f"{where}: {key} {when[key]!r} is not a UTC time HH:MM")
        if "time_from" in when and when.get("time_from") == when.get("time_to"):
            found.append(f"{where}: an empty time window")
        if when in seen:
            found.append(f"{where}: another variant has the same conditions {when}")
        seen.append(when)
        found += [f"{where}: {problem}" for problem in rate_problems(variant)]
    return found


def rate_problems(rates: dict[str, Any]) -> list[str]:
    """Rates and tiers of a base entry or a variant that are not well-formed."""
    found = [f"missing {key}" for key in (*RATE_KINDS, "per_request", "tiers") if key not in rates]
    values = [(kind, rates.get(kind)) for kind in (*RATE_KINDS, "per_request")]
    if rates.get("per_request") is None:
        found.append("per_request is null")
    tiers = rates.get("tiers")
    if not isinstance(tiers, list):
        return [*found, "tiers is not a list"]
    thresholds = []
    for tier in tiers:
        if not isinstance(tier, dict) or set(tier) != TIER_KEYS:
            found.append(f"tier {tier!r} does not have exactly the keys {sorted(TIER_KEYS)}")
            continue
        above = tier["above_input_tokens"]
        if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
            found.append(f"tier threshold {above!r} is not a positive integer")
        thresholds.append(above)
        values += [(f"tier {above} {kind}", tier[kind]) for kind in RATE_KINDS]
    if len(set(thresholds)) != len(thresholds):
        found.append(f"tier thresholds repeat: {thresholds}")
    for what, value in values:
        if value is not None and not well_formed(value):
            found.append(f"{what} {value!r} is not an exact rate")
    return found


def well_formed(value: Any) -> bool:
    """A rate string of the catalog: plain decimal digits, fewer than 15 significant ones (more are the
    repr of a binary float)."""
    return isinstance(value, str) and bool(RATE.match(value)) and len(Decimal(value).as_tuple().digits) < 15


# Filling gaps: two prices of one model from two datasets (or a source's price and the stored one)

CACHE_KINDS = ("cached_input", "cache_write", "cache_write_1h")


def same(a: Any, b: Any) -> bool:
    """Equal as rates: "2.50" is "2.5"; null is only null."""
    if a is None or b is None:
        return a is b
    return Decimal(str(a)) == Decimal(str(b))


def same_tiers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(tiers: list[dict[str, Any]]) -> list[tuple]:
        return sorted(
            (int(t["above_input_tokens"]), *(None if t.get(k) is None else Decimal(str(t[k])) for k in RATE_KINDS))
            for t in tiers
        )

    return key(a) == key(b)


def agree(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Two prices of one model with the same base rates: input, output and request fee equal, no cache
    rate known to both that differs, and no long-context tiers known to both that differ."""
    if not all(same(ours.get(kind), theirs.get(kind)) for kind in ("input", "output", "per_request")):
        return False
    if ours.get("input") is None:
        return False  # an unknown or variable price agrees with nothing
    if ours.get("tiers") and theirs.get("tiers") and not same_tiers(ours["tiers"], theirs["tiers"]):
        return False
    return all(ours.get(k) is None or theirs.get(k) is None or same(ours[k], theirs[k]) for k in CACHE_KINDS)


def fill_gaps(ours: dict[str, Any], theirs: dict[str, Any], conditions_taken: Iterable[str] = CONDITIONS) -> list[str]:
    """Give `ours` what it lacks and `theirs` knows, when the two agree (`agree`): long-context tiers, then
    cache rates (only where the tiers are the same: a tier's missing cache rate falls back to the base
    one), then variants under conditions `ours` has none for, of the kinds `conditions_taken` names.
    Returns what was taken ("tiers", "cached_input", "batch", "region us", ...); `ours` changes in place."""
    if not agree(ours, theirs):
        return []
    taken: list[str] = []
    if not ours.get("tiers") and theirs.get("tiers"):
        ours["tiers"] = theirs["tiers"]
        taken.append("tiers")
    if same_tiers(ours.get("tiers") or [], theirs.get("tiers") or []):
        for kind in CACHE_KINDS:
            if ours.get(kind) is None and theirs.get(kind) is not None:
                ours[kind] = theirs[kind]
                taken.append(kind)
    have = [conditions(v) for v in ours.get("variants") or ()]
    for variant in theirs.get("variants") or ():
        when = conditions(variant)
        if when in have or not set(when) <= set(conditions_taken):
            continue
        ours["variants"] = [*(ours.get("variants") or ()), variant]
        have.append(when)
        taken.append(" ".join(str(when[key]) if key != "region" else f"region {when[key]}" for key in when))
    return taken
