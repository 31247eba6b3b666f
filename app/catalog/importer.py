"""Loading a catalog file into the database: idempotent, and history is never rewritten."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.catalog import repository
from app.catalog.resolve import compile_match
from app.catalog.schemas import ImportResult
from app.errors import InvalidRequest
from app.pricing import RATE_KINDS, rates_from, variant_from

DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.json")
# Model makers: their bare model names become aliases, so `gpt-4o` means `openai/gpt-4o` and not
# one of the resellers' copies of it.
ORIGIN_PROVIDERS = ("openai", "anthropic", "google", "cohere", "mistral", "deepseek", "xai")


def read_catalog(path: Path = DEFAULT_CATALOG) -> dict[str, Any]:
    # parse_float=Decimal: a price must never pass through a binary float.
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


def catalog_time(value: str) -> datetime:
    """Dates in catalog files mean midnight UTC."""
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    return datetime.fromisoformat(value)


def _rate(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _tiers(tiers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {"above_input_tokens": int(tier["above_input_tokens"])}
        | {kind: None if tier.get(kind) is None else str(_rate(tier[kind])) for kind in RATE_KINDS}
        for tier in tiers or []
    ]


VARIANT_CONDITIONS = ("service_tier", "region", "time_from", "time_to")


def _variant(variant: dict[str, Any]) -> dict[str, Any]:
    """A variant in its stored form: its conditions, rates as decimal strings, its tiers."""
    stored = {key: variant.get(key) for key in VARIANT_CONDITIONS}
    stored |= {kind: None if variant.get(kind) is None else str(_rate(variant[kind])) for kind in RATE_KINDS}
    stored |= {
        "per_request": str(_rate(variant.get("per_request")) or Decimal(0)),
        "tiers": _tiers(variant.get("tiers")),
    }
    return stored


def price_row(model_id: str, entry: dict[str, Any], effective_from: datetime, source: str) -> dict[str, Any]:
    tiers = _tiers(entry.get("tiers"))
    variants = [_variant(variant) for variant in entry.get("variants") or []]
    row = {kind: _rate(entry.get(kind)) for kind in RATE_KINDS}
    row |= {"per_request": _rate(entry.get("per_request")) or Decimal(0), "tiers": tiers, "variants": variants}
    # Refuses negative, non-finite and duplicate-tier data, and malformed variants, before anything is written.
    try:
        rates_from(row)
        for variant in variants:
            variant_from(variant)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"malformed price of '{model_id}': {exc}") from None
    return row | {"model_id": model_id, "effective_from": effective_from, "source": source}


def same_rates(a: Any, b: dict[str, Any]) -> bool:
    """Equal as prices: 2.50 equals 2.5, and tier and variant lists compare by value."""

    def tiers_key(tiers: list[dict[str, Any]]) -> tuple:
        return tuple(
            sorted(
                (t["above_input_tokens"], *(None if t.get(k) is None else Decimal(t[k]) for k in RATE_KINDS))
                for t in tiers
            )
        )

    def variant_key(v: dict[str, Any]) -> tuple:
        rates = (None if v.get(k) is None else Decimal(v[k]) for k in (*RATE_KINDS, "per_request"))
        return (*(v.get(c) or "" for c in VARIANT_CONDITIONS), *rates, tiers_key(v.get("tiers") or []))

    def key(get) -> tuple:
        variants = tuple(sorted((variant_key(v) for v in get("variants") or []), key=repr))
        return (*(get(kind) for kind in RATE_KINDS), get("per_request"), tiers_key(get("tiers")), variants)

    return key(lambda name: getattr(a, name)) == key(b.__getitem__)


def model_row(entry: dict[str, Any]) -> dict[str, Any]:
    capabilities = entry.get("capabilities") or {}
    if entry.get("match") is not None:
        # Checked before it is stored: every worker compiles the clauses of the whole catalog.
        try:
            compile_match(entry["match"])
        except ValueError as exc:
            raise InvalidRequest(f"Model '{entry['id']}' has a malformed `match` clause: {exc}") from None
    return {
        "id": entry["id"],
        "provider": entry["provider"],
        "name": entry["name"],
        "display_name": entry.get("display_name") or entry["name"],
        "type": entry["type"],
        "context_window": entry.get("context_window"),
        "max_output_tokens": entry.get("max_output_tokens"),
        "max_input_tokens": entry.get("max_input_tokens"),
        "dimensions": entry.get("dimensions"),
        "supports_tools": capabilities.get("tools"),
        "supports_vision": capabilities.get("vision"),
        "supports_reasoning": capabilities.get("reasoning"),
        "supports_prompt_caching": capabilities.get("prompt_caching"),
        "supports_json_output": capabilities.get("json_output"),
        "supports_audio_input": capabilities.get("audio_input"),
        "created": date.fromisoformat(entry["created"]) if entry.get("created") else None,
        "deprecation_date": date.fromisoformat(entry["deprecation_date"]) if entry.get("deprecation_date") else None,
        "match": entry.get("match"),
        "input_modalities": entry.get("input_modalities"),
        "output_modalities": entry.get("output_modalities"),
        # {fact: where it came from}, for the facts the entry knows (see app/catalog/SOURCES.md).
        "facts": dict(entry.get("facts") or {}),
    }


def plan_prices(model_id: str, entries: list[dict[str, Any]], history: list[Any], at: datetime) -> list[dict]:
    """New price rows for one model, given the file's prices and the stored history.

    A model seen for the first time gets the file's whole history. Afterwards only versions dated
    after the stored ones are added, and when the price the file says is in effect now differs from
    the stored one, it becomes a new version effective `at`: stored rows are never changed. A file
    whose price is older than the stored one (say a sync moved the price since the file was made)
    does not put its old price back."""
    wanted = sorted(
        (price_row(model_id, entry, catalog_time(entry["effective_from"]), entry["source"]) for entry in entries),
        key=lambda row: row["effective_from"],
    )
    if not history:
        return wanted
    latest = history[-1].effective_from
    added = [row for row in wanted if row["effective_from"] > latest]
    file_now = [row for row in wanted if row["effective_from"] <= at]
    stored_now = [row for row in history if row.effective_from <= at]
    settled = any(row["effective_from"] <= at for row in added)
    newer = not stored_now or (file_now and file_now[-1]["effective_from"] >= stored_now[-1].effective_from)
    if file_now and not settled and newer and (not stored_now or not same_rates(stored_now[-1], file_now[-1])):
        added.append(file_now[-1] | {"effective_from": at})
    return sorted(added, key=lambda row: row["effective_from"])


async def import_catalog(conn: AsyncConnection, data: dict[str, Any], *, at: datetime, label: str) -> ImportResult:
    await repository.upsert_providers(conn, [{"id": p["id"], "name": p["name"]} for p in data["providers"]])
    entries = data["models"]
    # A file leaves out what it does not know: it fills gaps but never blanks what is stored.
    changed = await repository.upsert_models(conn, [model_row(entry) for entry in entries], at, keep_known=True)

    # Added when new, never moved or removed: an operator's alias (POST /catalog/aliases) outlives imports.
    aliases = [{"alias": alias, "model_id": e["id"]} for e in entries for alias in e.get("aliases") or ()]
    aliases += [{"alias": e["name"], "model_id": e["id"]} for e in entries if e["provider"] in ORIGIN_PROVIDERS]
    aliases_added = await repository.add_aliases(conn, aliases)

    history: dict[str, list[Any]] = {}
    for row in await repository.price_history(conn, [e["id"] for e in entries]):
        history.setdefault(row.model_id, []).append(row)
    new_prices = [
        row for e in entries for row in plan_prices(e["id"], e.get("prices") or [], history.get(e["id"], []), at)
    ]
    await repository.insert_prices(conn, new_prices)
    return ImportResult(
        providers=len(data["providers"]),
        models=len(entries),
        models_changed=changed,
        aliases_added=aliases_added,
        prices_added=len(new_prices),
        source=label,
    )
