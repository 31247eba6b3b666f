"""LiteLLM's price file, read one way (app/catalog/litellm.py) by the catalog sync and by the script that
builds the bundled catalog: exact prices, the rules for zero, negative and float values, service tiers,
long-context tiers, regional keys, and the facts an entry states."""

import importlib.util
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from app.catalog import entries, litellm, sources
from tests.test_catalog_sources import LITELLM_FILE, litellm_mapping

ROOT = Path(__file__).resolve().parent.parent


def build_script():
    """scripts/build_catalog.py as a module (it runs with the standard library and genai-prices only)."""
    spec = importlib.util.spec_from_file_location("build_catalog", ROOT / "scripts" / "build_catalog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_catalog", module)
    spec.loader.exec_module(module)
    return module


def parse(text: str) -> dict:
    return json.loads(text, parse_float=Decimal)


# Per token, as LiteLLM writes it: 2.5e-06 is 2.5 USD per 1M tokens.
GPT = {
    "litellm_provider": "openai",
    "mode": "chat",
    "input_cost_per_token": Decimal("2.5e-06"),
    "output_cost_per_token": Decimal("1e-05"),
    "cache_read_input_token_cost": Decimal("1.25e-06"),
}


def test_rates_per_million_exactly():
    assert litellm.price(GPT) == {
        "input": "2.5",
        "output": "10",
        "cached_input": "1.25",
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": "0",
        "tiers": [],
    }
    tiny = GPT | {"input_cost_per_token": Decimal("1.23456789012E-10")}
    assert litellm.price(tiny)["input"] == "0.000123456789012"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"mode": "chat"}, None),  # no input price: unknown
        (
            GPT
            | {"input_cost_per_token": Decimal("0.0"), "output_cost_per_token": 0, "cache_read_input_token_cost": 0},
            None,
        ),
        # every rate 0 is LiteLLM's placeholder, not a free model; a request fee alone is a price
        (GPT | {"input_cost_per_token": 0, "output_cost_per_token": 0, "cache_read_input_token_cost": None}, None),
    ],
)
def test_unknown_prices(item, expected):
    assert litellm.price(item) is expected


def test_a_request_fee_alone_is_a_price_and_local_models_are_free():
    fee = {
        "mode": "chat",
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
        "input_cost_per_request": Decimal("0.005"),
    }
    assert (litellm.price(fee)["input"], litellm.price(fee)["per_request"]) == ("0", "0.005")
    assert litellm.price({"mode": "chat"}, free=True)["input"] == "0"
    assert (
        litellm.price(
            GPT | {"input_cost_per_token": 0, "output_cost_per_token": 0, "cache_read_input_token_cost": 0}, free=True
        )["output"]
        == "0"
    )


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("input_cost_per_token", -1, litellm.VariablePrice),
        ("output_cost_per_token_above_200k_tokens", Decimal("-0.000001"), litellm.VariablePrice),
        ("input_cost_per_request", -1, litellm.VariablePrice),
        ("input_cost_per_token", Decimal("3.0000000000000004E-06"), litellm.FloatArtefact),
        ("cache_read_input_token_cost_flex", Decimal("0.0833333333333333E-6"), litellm.FloatArtefact),
        ("input_cost_per_token", "cheap", ValueError),
        ("input_cost_per_token", True, ValueError),
    ],
)
def test_negative_float_and_malformed_values(key, value, error):
    with pytest.raises(error):
        litellm.price(GPT | {key: value})


def test_long_context_tiers_leave_a_rate_equal_to_the_base_null():
    item = GPT | {
        "input_cost_per_token_above_200k_tokens": Decimal("5e-06"),
        "output_cost_per_token_above_200k_tokens": Decimal("1e-05"),  # the base output rate
        "cache_creation_input_token_cost_above_1hr": Decimal("6e-06"),
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": Decimal("1.2e-05"),
    }
    price = litellm.price(item)
    assert price["cache_write_1h"] == "6"
    assert price["tiers"] == [
        {"above_input_tokens": 200000, "input": "5", "output": None, "cached_input": None, "cache_write": None}
        | {"cache_write_1h": "12"}
    ]


def test_flex_and_priority_are_the_base_rates_with_their_keys_replaced():
    item = GPT | {
        "input_cost_per_token_above_272k_tokens": Decimal("5e-06"),
        "input_cost_per_token_flex": Decimal("1.25e-06"),
        "output_cost_per_token_flex": Decimal("5e-06"),
        "input_cost_per_token_above_272k_tokens_flex": Decimal("2.5e-06"),
        "output_cost_per_token_priority": Decimal("2e-05"),
        "input_cost_per_token_ultrafast": Decimal("9e-06"),  # not a tier the catalog represents
    }
    flex, priority = litellm.price(item)["variants"]
    # Flex: input and output replaced, the cached rate is the standard one; its tier too.
    assert flex == {
        "service_tier": "flex",
        "input": "1.25",
        "output": "5",
        "cached_input": "1.25",
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": "0",
        "tiers": [
            {"above_input_tokens": 272000, "input": "2.5", "output": None, "cached_input": None, "cache_write": None}
            | {"cache_write_1h": None}
        ],
    }
    # Priority: only output replaced; the standard long-context tier stays, as LiteLLM falls back to it.
    assert (priority["service_tier"], priority["input"], priority["output"]) == ("priority", "2.5", "20")
    assert priority["tiers"][0]["input"] == "5"
    assert entries.problems([flex, priority]) == []


def test_batch_is_what_litellm_charges_a_batch():
    item = GPT | {
        "input_cost_per_token_above_200k_tokens": Decimal("5e-06"),
        "input_cost_per_token_batches": Decimal("1.25e-06"),
    }
    (batch,) = litellm.price(item)["variants"]
    # The output halved (no output batch key), the cache rate unknown (billed at the batch input rate),
    # and no long-context tier (none is given for batches).
    assert batch == {
        "service_tier": "batch",
        "input": "1.25",
        "output": "5",
        "cached_input": None,
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": "0",
        "tiers": [],
    }
    without_input = GPT | {"output_cost_per_token_batches": Decimal("5e-06")}
    assert "variants" not in litellm.price(without_input)


def test_facts_only_what_the_entry_states():
    item = GPT | {
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        "max_tokens": 999,  # the legacy field says nothing here
        "supports_function_calling": True,
        "supports_reasoning": False,
        "supported_modalities": ["text", "image"],
        "supported_output_modalities": ["text"],
        "deprecation_date": "2026-02-27",
    }
    facts = litellm.facts(item)
    assert facts == {
        "context_window": 128000,
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        "dimensions": None,
        "input_modalities": ["text", "image"],
        "output_modalities": ["text"],
        "deprecation_date": "2026-02-27",
        "tools": True,
        "vision": True,  # from the input modalities, as there is no flag
        "reasoning": False,
        "prompt_caching": None,  # no flag: unknown to every reader but the build script's last resort
        "json_output": None,
        "audio_input": False,
    }
    assert litellm.unflagged(item) == {"vision": False, "prompt_caching": False, "json_output": False} | {
        "audio_input": False
    }
    embedding = {"mode": "embedding", "output_vector_size": Decimal("2048.0"), "max_input_tokens": 8191}
    assert (litellm.facts(embedding)["dimensions"], litellm.facts(embedding)["output_modalities"]) == (
        2048,
        ["embedding"],
    )
    with pytest.raises(ValueError, match="token count"):
        litellm.facts({"mode": "chat", "max_output_tokens": "lots"})


def test_regional_keys():
    assert litellm.regional("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0") == (
        "us",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
    )
    assert litellm.regional("bedrock", "us-gov.meta.llama3-8b-instruct-v1:0")[0] == "us-gov"
    assert litellm.regional("bedrock", "anthropic.claude-v2") is None
    assert litellm.regional("azure", "eu/gpt-4o") == ("eu", "gpt-4o")
    assert litellm.regional("azure", "global-standard/gpt-4o") is None
    assert litellm.regional(None, "us.x") is None


# The sync and the build script read an entry alike

SAMPLE = {
    "gpt-4o": GPT
    | {
        "max_input_tokens": 128000,
        "input_cost_per_token_batches": Decimal("1.25e-06"),
        "output_cost_per_token_batches": Decimal("5e-06"),
        "input_cost_per_token_priority": Decimal("4.25e-06"),
        "output_cost_per_token_priority": Decimal("1.7e-05"),
        "supports_function_calling": True,
    },
    "o-free": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 0, "output_cost_per_token": 0},
    "o-float": GPT | {"input_cost_per_token": Decimal("3.0000000000000004E-06")},
    "o-variable": GPT | {"input_cost_per_token": -1, "output_cost_per_token": -1},
    "text-embedding-3-small": {
        "litellm_provider": "openai",
        "mode": "embedding",
        "input_cost_per_token": Decimal("2e-08"),
        "output_cost_per_token": 0,
        "output_vector_size": 1536,
    },
}


def test_the_sync_and_the_build_script_read_the_same_prices():
    data = sources.litellm_models(SAMPLE, litellm_mapping("p", "local"), "litellm test")
    synced = {entry["name"]: entry for entry in data.models}
    builder = build_script().Builder.ll_price

    class Script:
        ll_src = "litellm test"

    for name, item in SAMPLE.items():
        try:
            built = builder(Script, item)
        except litellm.VariablePrice:
            # No fixed price: the build leaves the model unpriced, the sync ends a fixed price it had.
            assert synced[name]["prices"][0]["input"] is None
            assert synced[name]["prices"][0]["source"].endswith("(variable price)")
            continue
        except litellm.FloatArtefact:
            assert synced[name]["prices"] == []  # not usable: reported, no price
            assert any(name in error and "float artefact" in error for error in data.errors)
            continue
        assert synced[name]["prices"] == ([] if built is None else [built])
    assert synced["gpt-4o"]["prices"][0]["variants"][0]["service_tier"] == "batch"


def test_the_sync_turns_regional_keys_into_region_variants(tmp_path):
    file = parse(LITELLM_FILE) | {
        "bedrock/anthropic.claude-x-v1:0": GPT | {"litellm_provider": "bedrock"},
        # Priced apart: a region variant. Priced alike: nothing to add.
        "bedrock/us.anthropic.claude-x-v1:0": GPT
        | {"litellm_provider": "bedrock", "input_cost_per_token": Decimal("2.75e-06")},
        "bedrock/eu.anthropic.claude-x-v1:0": GPT | {"litellm_provider": "bedrock"},
        "azure/gpt-4o": GPT | {"litellm_provider": "azure"},
        "azure/eu/gpt-4o": GPT | {"litellm_provider": "azure", "output_cost_per_token": Decimal("1.1e-05")},
    }
    mapping = {
        "bedrock": sources.LitellmTarget("b", ("bedrock/",), regional="bedrock"),
        "azure": sources.LitellmTarget("az", ("azure/",), regional="azure"),
    }
    data = sources.litellm_models(file, mapping, "litellm test")
    models = {entry["id"]: entry for entry in data.models}
    assert set(models) == {"b/anthropic.claude-x-v1:0", "az/gpt-4o"}  # the regional keys are no models
    (us,) = models["b/anthropic.claude-x-v1:0"]["prices"][0]["variants"]
    assert (us["region"], us["input"], us["output"]) == ("us", "2.75", "10")
    (eu,) = models["az/gpt-4o"]["prices"][0]["variants"]
    assert (eu["region"], eu["input"], eu["output"]) == ("eu", "2.5", "11")
