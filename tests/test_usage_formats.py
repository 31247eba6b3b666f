"""A provider's usage object mapped to the service's counts (app/usage/formats.py). Pure: no database.

The service's rule: input counts every prompt token (cache reads and writes are parts of it), output
every generated token (reasoning is part of it). Worked examples come from the providers' SDK types
and from recorded Gemini and Bedrock responses; a differential test holds the mappings equal to
genai-prices' on random objects, and the tests at the end list where the service is deliberately
stricter than genai-prices.
"""

from decimal import Decimal

import genai_prices
import pytest
from anthropic import types as anthropic_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import CompletionUsage, CreateEmbeddingResponse, Embedding
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.responses import ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from app.errors import InvalidRequest
from app.pricing import MAX_TOKENS
from app.usage.formats import USAGE_FORMATS, Counts, normalise

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def counts(
    input_tokens: int,
    output_tokens: int,
    cached: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
    reasoning: int = 0,
) -> Counts:
    return Counts(input_tokens, output_tokens, cached, cache_write, cache_write_1h, reasoning)


def refusal(usage: object, usage_format: str | None = None, provider: str | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        normalise(usage, usage_format, provider)
    assert (caught.value.status, caught.value.code) == (400, "validation_error")
    return caught.value


# --- OpenAI, from the SDK's types -------------------------------------------------------------------

CHAT = CompletionUsage(
    prompt_tokens=2006,
    completion_tokens=300,
    total_tokens=2306,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=1920, audio_tokens=0),
    completion_tokens_details=CompletionTokensDetails(reasoning_tokens=128, audio_tokens=0),
)


@pytest.mark.parametrize("exclude_none", [False, True])
@pytest.mark.parametrize("usage_format", [None, "openai"])
def test_openai_chat_completion(usage_format, exclude_none):
    # 2006 prompt tokens, 1920 of them read from the cache; 300 generated, 128 of them reasoning.
    # model_dump() leaves the unset details (cache_write_tokens, ...) as null: they count 0.
    usage = CHAT.model_dump(exclude_none=exclude_none)
    assert normalise(usage, usage_format, None) == ("openai", counts(2006, 300, cached=1920, reasoning=128))


def test_openai_chat_without_details():
    # The SDK dumps absent details as null.
    usage = CompletionUsage(prompt_tokens=12, completion_tokens=7, total_tokens=19).model_dump()
    assert usage["prompt_tokens_details"] is None
    assert normalise(usage, None, "openai") == ("openai", counts(12, 7))


def test_openai_chat_cache_writes():
    # A compatible API reporting writes: 5000 prompt tokens = 1000 read + 3000 written + 1000 neither.
    details = PromptTokensDetails(cached_tokens=1000, cache_write_tokens=3000)
    usage = CompletionUsage(prompt_tokens=5000, completion_tokens=20, total_tokens=5020, prompt_tokens_details=details)
    assert normalise(usage.model_dump(), None, None) == ("openai", counts(5000, 20, cached=1000, cache_write=3000))


@pytest.mark.parametrize("exclude_none", [False, True])
def test_openai_embeddings(exclude_none):
    # Embeddings report {"prompt_tokens": 8, "total_tokens": 8}: no completion_tokens means nothing generated.
    response = CreateEmbeddingResponse(
        data=[Embedding(embedding=[0.1, -0.2], index=0, object="embedding")],
        model="text-embedding-3-small",
        object="list",
        usage={"prompt_tokens": 8, "total_tokens": 8},
    )
    usage = response.usage.model_dump(exclude_none=exclude_none)
    assert usage == {"prompt_tokens": 8, "total_tokens": 8}
    assert normalise(usage, None, "openai") == ("openai", counts(8, 0))


RESPONSES = ResponseUsage(
    input_tokens=3200,
    input_tokens_details=InputTokensDetails(cached_tokens=2048, cache_write_tokens=512),
    output_tokens=900,
    output_tokens_details=OutputTokensDetails(reasoning_tokens=640),
    total_tokens=4100,
)


@pytest.mark.parametrize("exclude_none", [False, True])
@pytest.mark.parametrize("provider", [None, "openai", "anthropic"])
def test_openai_responses(provider, exclude_none):
    # 3200 input = 2048 read + 512 written + 640 neither; 900 output, 640 of them reasoning.
    # input_tokens_details is only the Responses API's, so the provider does not matter.
    usage = RESPONSES.model_dump(exclude_none=exclude_none)
    expected = counts(3200, 900, cached=2048, cache_write=512, reasoning=640)
    assert normalise(usage, None, provider) == ("openai-responses", expected)
    assert normalise(usage, "openai-responses", provider) == ("openai-responses", expected)


# --- Anthropic, from the SDK's types ----------------------------------------------------------------

CLAUDE = anthropic_types.Usage(
    input_tokens=12,
    cache_read_input_tokens=6000,
    cache_creation_input_tokens=3000,
    cache_creation=anthropic_types.CacheCreation(ephemeral_5m_input_tokens=1000, ephemeral_1h_input_tokens=2000),
    output_tokens=500,
    output_tokens_details=anthropic_types.OutputTokensDetails(thinking_tokens=200),
    service_tier="standard",
)


@pytest.mark.parametrize("exclude_none", [False, True])
@pytest.mark.parametrize("provider", [None, "anthropic", "openai"])
def test_anthropic_cache_reads_and_writes(provider, exclude_none):
    # Anthropic's input_tokens (12) leave the cache out: input = 12 + 6000 read + 3000 written = 9012,
    # of the writes 2000 for an hour (and 1000 for 5 minutes); 500 output, 200 of them thinking.
    usage = CLAUDE.model_dump(exclude_none=exclude_none)
    expected = counts(9012, 500, cached=6000, cache_write=3000, cache_write_1h=2000, reasoning=200)
    assert normalise(usage, None, provider) == ("anthropic", expected)
    assert normalise(usage, "anthropic", provider) == ("anthropic", expected)


def test_anthropic_without_cache():
    # model_dump() keeps the cache keys as null, which is enough to tell Anthropic's shape.
    usage = anthropic_types.Usage(input_tokens=25, output_tokens=80).model_dump()
    assert usage["cache_read_input_tokens"] is None
    assert normalise(usage, None, "openai") == ("anthropic", counts(25, 80))


def test_anthropic_writes_without_split():
    # Before the 1-hour TTL there was no cache_creation: every write is a 5-minute one.
    usage = {"input_tokens": 4, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 0, "output_tokens": 9}
    assert normalise(usage, None, None) == ("anthropic", counts(1504, 9, cache_write=1500))


# --- Gemini and Vertex: recorded usageMetadata ------------------------------------------------------

# gemini-2.5-flash with an explicit cache and thinking on. promptTokenCount (10452) already includes
# the 8192 cached tokens; thoughts (1067) are outside candidatesTokenCount (328), and
# totalTokenCount = 10452 + 328 + 1067 = 11847.
GEMINI_THINKING = {
    "promptTokenCount": 10452,
    "candidatesTokenCount": 328,
    "totalTokenCount": 11847,
    "cachedContentTokenCount": 8192,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10194}, {"modality": "IMAGE", "tokenCount": 258}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 8192}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 328}],
    "thoughtsTokenCount": 1067,
}
# Vertex, gemini-2.5-pro with Google Search grounding: the search results are a tool-use prompt
# (1430), counted beside the prompt (12): total 12 + 1430 + 250 + 300 = 1992.
VERTEX_GROUNDED = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 250,
    "toolUsePromptTokenCount": 1430,
    "thoughtsTokenCount": 300,
    "totalTokenCount": 1992,
    "trafficType": "ON_DEMAND",
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 250}],
    "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 1430}],
}
# A blocked prompt: no candidates, so no candidatesTokenCount.
GEMINI_BLOCKED = {
    "promptTokenCount": 9,
    "totalTokenCount": 9,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # output = 328 candidates + 1067 thoughts = 1395
        (GEMINI_THINKING, counts(10452, 1395, cached=8192, reasoning=1067)),
        # input = 12 + 1430 = 1442; output = 250 + 300 = 550
        (VERTEX_GROUNDED, counts(1442, 550, reasoning=300)),
        (GEMINI_BLOCKED, counts(9, 0)),
    ],
)
@pytest.mark.parametrize("usage_format", [None, "gemini"])
def test_gemini(usage, expected, usage_format):
    assert normalise(usage, usage_format, "google") == ("gemini", expected)


# --- Bedrock Converse: recorded usage ---------------------------------------------------------------

# A cold call writing 5000 tokens to the cache, 3000 for 5 minutes and 2000 for an hour; inputTokens
# leave the cache out: totalTokens = 24 + 5000 + 512 = 5536.
BEDROCK_WRITE = {
    "inputTokens": 24,
    "outputTokens": 512,
    "totalTokens": 5536,
    "cacheReadInputTokens": 0,
    "cacheWriteInputTokens": 5000,
    "cacheDetails": [{"inputTokens": 3000, "ttl": "5m"}, {"inputTokens": 2000, "ttl": "1h"}],
}
# The warm call reading them back: no cacheDetails.
BEDROCK_READ = {
    "inputTokens": 24,
    "outputTokens": 300,
    "totalTokens": 5324,
    "cacheReadInputTokens": 5000,
    "cacheWriteInputTokens": 0,
}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # input = 24 + 0 + 5000 = 5024
        (BEDROCK_WRITE, counts(5024, 512, cache_write=5000, cache_write_1h=2000)),
        (BEDROCK_READ, counts(5024, 300, cached=5000)),
        ({"inputTokens": 30, "outputTokens": 2, "totalTokens": 32}, counts(30, 2)),
    ],
)
@pytest.mark.parametrize("usage_format", [None, "bedrock"])
def test_bedrock(usage, expected, usage_format):
    assert normalise(usage, usage_format, "bedrock") == ("bedrock", expected)


# --- Detection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("openai", "openai-responses"),
        ("azure", "openai-responses"),
        ("anthropic", "anthropic"),
        ("bedrock", "anthropic"),
        (None, "anthropic"),
    ],
)
def test_only_input_and_output_tokens_the_provider_decides(provider, expected):
    # Both formats count such an object the same way.
    assert normalise({"input_tokens": 40, "output_tokens": 2}, None, provider) == (expected, counts(40, 2))


@pytest.mark.parametrize(
    ("usage", "provider", "expected"),
    [
        # Anthropic's thinking breakdown, whatever the provider says.
        (
            {"input_tokens": 40, "output_tokens": 30, "output_tokens_details": {"thinking_tokens": 20}},
            "openai",
            ("anthropic", counts(40, 30, reasoning=20)),
        ),
        # The Responses API's reasoning breakdown, or its total (Anthropic sends none).
        (
            {"input_tokens": 40, "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20}},
            "anthropic",
            ("openai-responses", counts(40, 30, reasoning=20)),
        ),
        (
            {"input_tokens": 40, "output_tokens": 30, "total_tokens": 70},
            "anthropic",
            ("openai-responses", counts(40, 30)),
        ),
        # One key of a format is enough.
        ({"prompt_tokens": 7}, None, ("openai", counts(7, 0))),
        ({"candidatesTokenCount": 7}, None, ("gemini", counts(0, 7))),
        ({"inputTokens": 7, "outputTokens": 1}, "openai", ("bedrock", counts(7, 1))),
        ({"input_tokens": 7, "output_tokens": 1, "cache_creation": None}, "openai", ("anthropic", counts(7, 1))),
    ],
)
def test_detection_by_shape(usage, provider, expected):
    assert normalise(usage, None, provider) == expected


def test_a_stated_format_wins_over_the_shape():
    # Read as the Responses API says, Anthropic's cache keys are unknown extras: ignored.
    usage = {"input_tokens": 40, "output_tokens": 2, "cache_read_input_tokens": 30}
    assert normalise(usage, "openai-responses", "anthropic") == ("openai-responses", counts(40, 2))
    assert normalise(usage, None, "openai") == ("anthropic", counts(70, 2, cached=30))


def test_mixed_formats_must_be_stated():
    # A proxy's chat usage carrying Anthropic's cache counts: either reading would drop tokens.
    usage = {"prompt_tokens": 100, "completion_tokens": 5, "cache_creation_input_tokens": 80}
    error = refusal(usage)
    assert error.param == "usage_format"
    assert "openai" in error.message and "anthropic" in error.message
    assert normalise(usage, "openai", None) == ("openai", counts(100, 5))


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"total": 5},
        # A whole response instead of its usage object.
        {"id": "chatcmpl-1", "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        {"candidates": [], "usageMetadata": {"promptTokenCount": 3}},
    ],
)
def test_a_shape_no_format_fits(usage):
    assert refusal(usage).param == "usage"


@pytest.mark.parametrize("usage_format", ["OpenAI", "openai_responses", "vertex", "", 3, ["openai"], {"a": 1}])
def test_unknown_usage_format(usage_format):
    error = refusal({"prompt_tokens": 1}, usage_format)
    assert error.param == "usage_format"
    assert all(name in error.message for name in USAGE_FORMATS)


# --- Malformed objects ------------------------------------------------------------------------------

OPENAI_OK = {"prompt_tokens": 10, "completion_tokens": 5}


@pytest.mark.parametrize(
    ("usage", "usage_format", "param"),
    [
        # Counts are JSON integers in 0..2**63-1.
        ({"prompt_tokens": "10", "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": 10.0, "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": True, "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": -1, "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": MAX_TOKENS + 1, "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": 10**5000, "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": float("nan"), "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": None, "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": [10], "completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"prompt_tokens": 10, "completion_tokens": "5"}, None, "usage.completion_tokens"),
        (
            {**OPENAI_OK, "prompt_tokens_details": {"cached_tokens": "4"}},
            None,
            "usage.prompt_tokens_details.cached_tokens",
        ),
        (
            {**OPENAI_OK, "prompt_tokens_details": {"cached_tokens": 4.0}},
            None,
            "usage.prompt_tokens_details.cached_tokens",
        ),
        (
            {**OPENAI_OK, "prompt_tokens_details": {"cache_write_tokens": -3}},
            None,
            "usage.prompt_tokens_details.cache_write_tokens",
        ),
        (
            {**OPENAI_OK, "completion_tokens_details": {"reasoning_tokens": False}},
            None,
            "usage.completion_tokens_details.reasoning_tokens",
        ),
        # Details are objects.
        ({**OPENAI_OK, "prompt_tokens_details": [{"cached_tokens": 4}]}, None, "usage.prompt_tokens_details"),
        ({**OPENAI_OK, "completion_tokens_details": 0}, None, "usage.completion_tokens_details"),
        ({**OPENAI_OK, "completion_tokens_details": ""}, None, "usage.completion_tokens_details"),
        # Required fields.
        ({"completion_tokens": 5}, None, "usage.prompt_tokens"),
        ({"input_tokens": 5}, "openai-responses", "usage.output_tokens"),
        ({"output_tokens": 5}, "openai-responses", "usage.input_tokens"),
        ({"input_tokens_details": None, "output_tokens": 5}, None, "usage.input_tokens"),
        ({"input_tokens": 5, "input_tokens_details": [], "output_tokens": 1}, None, "usage.input_tokens_details"),
        ({"output_tokens": 5, "cache_read_input_tokens": 3}, None, "usage.input_tokens"),
        ({"input_tokens": 5, "cache_read_input_tokens": 3}, None, "usage.output_tokens"),
        ({"inputTokens": 5}, None, "usage.outputTokens"),
        ({"outputTokens": 5}, None, "usage.inputTokens"),
        ({"promptTokenCount": "5"}, None, "usage.promptTokenCount"),
        ({"promptTokenCount": 5, "thoughtsTokenCount": 1.5}, None, "usage.thoughtsTokenCount"),
        # A usageMetadata with no count at all (all null, or only totals and breakdowns).
        ({"promptTokenCount": None, "candidatesTokenCount": None}, None, "usage"),
        ({"totalTokenCount": 12, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]}, None, "usage"),
        ({}, "gemini", "usage"),
        # Anthropic.
        ({"input_tokens": 1, "output_tokens": 1, "cache_creation": []}, None, "usage.cache_creation"),
        (
            {
                "input_tokens": 1,
                "output_tokens": 1,
                "cache_creation_input_tokens": 3,
                "cache_creation": {"ephemeral_1h_input_tokens": "3"},
            },
            None,
            "usage.cache_creation.ephemeral_1h_input_tokens",
        ),
        (
            {"input_tokens": 1, "output_tokens": 1, "output_tokens_details": [200]},
            "anthropic",
            "usage.output_tokens_details",
        ),
        (
            {"input_tokens": 1, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 2.0}},
            None,
            "usage.output_tokens_details.thinking_tokens",
        ),
        # Bedrock's cacheDetails.
        ({"inputTokens": 1, "outputTokens": 1, "cacheDetails": {"ttl": "1h"}}, None, "usage.cacheDetails"),
        ({"inputTokens": 1, "outputTokens": 1, "cacheDetails": ["1h"]}, None, "usage.cacheDetails.0"),
        (
            {
                "inputTokens": 1,
                "outputTokens": 1,
                "cacheWriteInputTokens": 9,
                "cacheDetails": [{"ttl": "5m", "inputTokens": 4}, {"ttl": "1h"}],
            },
            None,
            "usage.cacheDetails.1.inputTokens",
        ),
        (
            {
                "inputTokens": 1,
                "outputTokens": 1,
                "cacheWriteInputTokens": 9,
                "cacheDetails": [{"ttl": "1h", "inputTokens": "4"}],
            },
            None,
            "usage.cacheDetails.0.inputTokens",
        ),
        # Sums beyond the largest count (each term alone is within it).
        ({"input_tokens": MAX_TOKENS, "cache_read_input_tokens": 1, "output_tokens": 0}, None, "usage"),
        ({"inputTokens": MAX_TOKENS, "cacheWriteInputTokens": 1, "outputTokens": 0}, None, "usage"),
        ({"promptTokenCount": MAX_TOKENS, "toolUsePromptTokenCount": 1}, None, "usage"),
        ({"candidatesTokenCount": MAX_TOKENS, "thoughtsTokenCount": 1}, None, "usage"),
    ],
)
def test_malformed(usage, usage_format, param):
    assert refusal(usage, usage_format).param == param


@pytest.mark.parametrize("usage", [None, [], [{"prompt_tokens": 1}], "usage", 12, 1.5, True])
@pytest.mark.parametrize("usage_format", [None, "openai"])
def test_usage_must_be_an_object(usage, usage_format):
    error = refusal(usage, usage_format)
    assert error.param == "usage"
    assert "must be an object" in error.message


def test_messages_name_the_field_and_the_kind():
    error = refusal({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": "4"}})
    assert error.message == "`usage.prompt_tokens_details.cached_tokens` must be an integer, not a string"
    error = refusal({"prompt_tokens": 10**5000})  # too long to print: the message never shows values
    assert error.message == f"`usage.prompt_tokens` must be between 0 and {MAX_TOKENS}"
    assert refusal({"prompt_tokens": None}).message == "`usage.prompt_tokens` is required"


def test_python_values_beside_decoded_json():
    # Python callers may pass what JSON cannot hold: an int subclass counts as its value (as in
    # app.pricing.validate_usage); anything else is named by its type.
    class Tokens(int):
        pass

    assert normalise({"prompt_tokens": Tokens(5)}, None, None) == ("openai", counts(5, 0))
    error = refusal({"prompt_tokens": Decimal(5)})
    assert (error.param, error.message) == (
        "usage.prompt_tokens",
        "`usage.prompt_tokens` must be an integer, not Decimal",
    )


def test_anthropic_split_must_add_up_to_the_writes():
    # 1000 + 2000 = 3000 written by the split, but the total says 2500: which writes cost the
    # 1-hour rate cannot be told, so neither is believed.
    usage = CLAUDE.model_dump()
    usage["cache_creation_input_tokens"] = 2500
    error = refusal(usage)
    assert error.param == "usage.cache_creation"
    assert "3000" in error.message and "2500" in error.message
    # A split without its total disagrees with a total of 0.
    del usage["cache_creation_input_tokens"]
    assert refusal(usage).param == "usage.cache_creation"
    # null halves count 0, and a null split is no split.
    usage = {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 7}
    split = {"ephemeral_5m_input_tokens": None, "ephemeral_1h_input_tokens": 7}
    assert normalise({**usage, "cache_creation": split}, None, None)[1] == counts(8, 1, cache_write=7, cache_write_1h=7)
    assert normalise({**usage, "cache_creation": None}, None, None)[1] == counts(8, 1, cache_write=7)


def test_bedrock_1h_within_the_writes():
    usage = {
        "inputTokens": 1,
        "outputTokens": 1,
        "cacheWriteInputTokens": 100,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 101}],
    }
    assert refusal(usage).param == "usage.cacheDetails"
    usage["cacheDetails"] = [{"ttl": "1h", "inputTokens": 60}, {"ttl": "1h", "inputTokens": 40}]
    assert refusal(usage).param == "usage.cacheDetails.1"
    # Items of other TTLs, or of none, do not matter.
    usage["cacheDetails"] = [{"inputTokens": 40}, {"ttl": "1h", "inputTokens": 60}, {"ttl": 5}]
    assert normalise(usage, None, None)[1] == counts(101, 1, cache_write=100, cache_write_1h=60)


def test_unknown_keys_are_ignored():
    usage = {**CHAT.model_dump(), "prompt_cache_hit_tokens": "x", "new_field": [1, {"a": None}], "service_tier": "flex"}
    assert normalise(usage, None, None) == ("openai", counts(2006, 300, cached=1920, reasoning=128))


def test_deeply_nested_and_large_objects():
    deep: dict = {}
    for _ in range(100_000):
        deep = {"cached_tokens": deep}
    assert (
        refusal({"prompt_tokens": 1, "prompt_tokens_details": deep}).param
        == "usage.prompt_tokens_details.cached_tokens"
    )
    wide = {f"key{i}": i for i in range(100_000)} | {"prompt_tokens": 3}
    assert normalise(wide, None, None) == ("openai", counts(3, 0))
    details = [{"ttl": "5m", "inputTokens": 1}] * 100_000
    usage = {"inputTokens": 1, "outputTokens": 1, "cacheWriteInputTokens": 1, "cacheDetails": details}
    assert normalise(usage, None, None)[1] == counts(2, 1, cache_write=1)


# --- Differential: the same counts as genai-prices --------------------------------------------------

# genai-prices' extractor of each format, and how it wants the object wrapped (no model: with one,
# extract_usage also looks the model up).
EXTRACTORS = {
    "openai": ("openai", "chat", "usage"),
    "openai-responses": ("openai", "responses", "usage"),
    "anthropic": ("anthropic", "default", "usage"),
    "gemini": ("google", "default", "usageMetadata"),
    "bedrock": ("aws", "default", "usage"),
}
# genai-prices' usage keys -> ours.
KEYS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cached_input_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "output_reasoning_tokens": "reasoning_tokens",
}


def genai_prices_counts(usage: dict, usage_format: str, flavor: str | None = None) -> Counts:
    provider_id, api_flavor, root = EXTRACTORS[usage_format]
    extracted = genai_prices.extract_usage({root: usage}, provider_id=provider_id, api_flavor=flavor or api_flavor)
    return Counts(**{ours: extracted.usage.reported_value(theirs) for theirs, ours in KEYS.items()})


def test_genai_prices_reads_the_fields_we_read():
    """genai-prices' mappings onto our six keys, as the module writes them out. If an upgrade changes
    one (a new field counted as input, say), this fails: look at the field, and at formats.py."""
    expected = {
        "openai": {
            ("prompt_tokens", "input_tokens"),
            ("prompt_tokens_details.cached_tokens", "cache_read_tokens"),
            ("prompt_tokens_details.cache_write_tokens", "cache_write_tokens"),
            ("completion_tokens", "output_tokens"),
            ("completion_tokens_details.reasoning_tokens", "output_reasoning_tokens"),
        },
        "openai-responses": {
            ("input_tokens", "input_tokens"),
            ("input_tokens_details.cached_tokens", "cache_read_tokens"),
            ("input_tokens_details.cache_write_tokens", "cache_write_tokens"),
            ("output_tokens", "output_tokens"),
            ("output_tokens_details.reasoning_tokens", "output_reasoning_tokens"),
        },
        "anthropic": {
            ("input_tokens", "input_tokens"),
            ("cache_read_input_tokens", "input_tokens"),
            ("cache_creation_input_tokens", "input_tokens"),
            ("cache_read_input_tokens", "cache_read_tokens"),
            ("cache_creation_input_tokens", "cache_write_tokens"),
            ("cache_creation.ephemeral_1h_input_tokens", "cache_write_1h_tokens"),
            ("output_tokens", "output_tokens"),
            ("output_tokens_details.thinking_tokens", "output_reasoning_tokens"),
        },
        "gemini": {
            ("promptTokenCount", "input_tokens"),
            ("toolUsePromptTokenCount", "input_tokens"),
            ("cachedContentTokenCount", "cache_read_tokens"),
            ("candidatesTokenCount", "output_tokens"),
            ("thoughtsTokenCount", "output_tokens"),
            ("thoughtsTokenCount", "output_reasoning_tokens"),
        },
        "bedrock": {
            ("inputTokens", "input_tokens"),
            ("cacheReadInputTokens", "input_tokens"),
            ("cacheWriteInputTokens", "input_tokens"),
            ("cacheReadInputTokens", "cache_read_tokens"),
            ("cacheWriteInputTokens", "cache_write_tokens"),
            ("cacheDetails.[ttl=1h].inputTokens", "cache_write_1h_tokens"),
            ("outputTokens", "output_tokens"),
        },
    }
    providers = {p.id: p for p in genai_prices.data_snapshot.get_snapshot().providers}

    def step(part: object) -> str:
        if isinstance(part, str):
            return part
        return f"[{part.field}={part.match.equals}]"  # an ArrayMatch

    for usage_format, (provider_id, api_flavor, root) in EXTRACTORS.items():
        extractor = next(e for e in providers[provider_id].extractors if e.api_flavor == api_flavor)
        assert extractor.root == root
        mappings = {
            (".".join(map(step, [m.path] if isinstance(m.path, str) else m.path)), m.dest)
            for m in extractor.mappings
            if m.dest in KEYS
        }
        assert mappings == expected[usage_format], usage_format


def nullable(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


def details(required: dict | None = None, **optional: st.SearchStrategy) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(required or {}, optional=optional)


# Mostly realistic, sometimes huge, always small enough that a sum of three stays below 2**63.
# A quarter of the maximum: an object's terms (up to four) may add up to one count.
tokens = st.one_of(st.integers(0, 20_000), st.integers(0, MAX_TOKENS // 4), st.sampled_from([0, 1]))
maybe_tokens = nullable(tokens)

openai_usages = details(
    {"prompt_tokens": tokens, "completion_tokens": tokens},
    total_tokens=tokens,
    prompt_tokens_details=nullable(
        details(cached_tokens=maybe_tokens, cache_write_tokens=maybe_tokens, audio_tokens=maybe_tokens)
    ),
    completion_tokens_details=nullable(
        details(
            reasoning_tokens=maybe_tokens,
            audio_tokens=maybe_tokens,
            accepted_prediction_tokens=maybe_tokens,
            rejected_prediction_tokens=maybe_tokens,
        )
    ),
)

responses_usages = details(
    {"input_tokens": tokens, "output_tokens": tokens},
    total_tokens=tokens,
    input_tokens_details=nullable(details(cached_tokens=maybe_tokens, cache_write_tokens=maybe_tokens)),
    output_tokens_details=nullable(details(reasoning_tokens=maybe_tokens)),
)


@st.composite
def anthropic_usages(draw: st.DrawFn) -> dict:
    usage = draw(
        details(
            {"input_tokens": tokens, "output_tokens": tokens},
            cache_read_input_tokens=maybe_tokens,
            output_tokens_details=nullable(details({"thinking_tokens": tokens})),
            server_tool_use=nullable(details({"web_search_requests": st.integers(0, 20)})),
            service_tier=nullable(st.sampled_from(["standard", "priority", "batch"])),
        )
    )
    cache = draw(st.sampled_from(["none", "total", "split", "null split"]))
    if cache == "total":
        usage["cache_creation_input_tokens"] = draw(maybe_tokens)
    elif cache == "null split":
        usage["cache_creation_input_tokens"] = draw(tokens)
        usage["cache_creation"] = None
    elif cache == "split":
        split = draw(details(ephemeral_5m_input_tokens=maybe_tokens, ephemeral_1h_input_tokens=maybe_tokens))
        usage["cache_creation"] = split
        usage["cache_creation_input_tokens"] = sum(n or 0 for n in split.values())
    return usage


modalities = st.lists(
    details({"modality": st.sampled_from(["TEXT", "IMAGE", "AUDIO", "VIDEO", "DOCUMENT"]), "tokenCount": tokens}),
    max_size=3,
)
GEMINI_COUNTS = (
    "promptTokenCount",
    "toolUsePromptTokenCount",
    "cachedContentTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
)
gemini_usages = details(
    promptTokenCount=maybe_tokens,
    toolUsePromptTokenCount=maybe_tokens,
    cachedContentTokenCount=maybe_tokens,
    candidatesTokenCount=maybe_tokens,
    thoughtsTokenCount=maybe_tokens,
    totalTokenCount=tokens,
    promptTokensDetails=modalities,
    cacheTokensDetails=modalities,
    candidatesTokensDetails=modalities,
    toolUsePromptTokensDetails=modalities,
    trafficType=st.sampled_from(["ON_DEMAND", "PROVISIONED_THROUGHPUT"]),
).filter(lambda usage: any(usage.get(key) is not None for key in GEMINI_COUNTS))


@st.composite
def bedrock_usages(draw: st.DrawFn) -> dict:
    usage = draw(
        details(
            {"inputTokens": tokens, "outputTokens": tokens},
            totalTokens=tokens,
            cacheReadInputTokens=maybe_tokens,
            cacheWriteInputTokens=maybe_tokens,
        )
    )
    if draw(st.booleans()):  # a write with its breakdown: one item per TTL written, in any order
        items = [{"ttl": ttl, "inputTokens": draw(tokens)} for ttl in draw(st.sets(st.sampled_from(["5m", "1h"])))]
        usage["cacheDetails"] = draw(st.permutations(items))
        usage["cacheWriteInputTokens"] = sum(item["inputTokens"] for item in items)
    return usage


USAGES = {
    "openai": openai_usages,
    "openai-responses": responses_usages,
    "anthropic": anthropic_usages(),
    "gemini": gemini_usages,
    "bedrock": bedrock_usages(),
}
# A provider that resolves the shape when only input_tokens and output_tokens tell it.
HINTS = {"openai": None, "openai-responses": "openai", "anthropic": "anthropic", "gemini": None, "bedrock": None}


@pytest.mark.parametrize("usage_format", USAGE_FORMATS)
def test_same_counts_as_genai_prices(usage_format):
    @SETTINGS
    @given(USAGES[usage_format])
    def check(usage):
        expected = genai_prices_counts(usage, usage_format)
        assert normalise(usage, usage_format, None) == (usage_format, expected)
        assert normalise(usage, None, HINTS[usage_format]) == (usage_format, expected)

    check()


@pytest.mark.parametrize(
    "usage",
    [
        # Objects whose genai-prices counts are worked out above.
        CHAT.model_dump(),
        RESPONSES.model_dump(),
        CLAUDE.model_dump(),
        GEMINI_THINKING,
        VERTEX_GROUNDED,
        GEMINI_BLOCKED,
        BEDROCK_WRITE,
        BEDROCK_READ,
    ],
)
def test_worked_examples_agree_with_genai_prices(usage):
    usage_format, ours = normalise(usage, None, None)
    assert ours == genai_prices_counts(usage, usage_format)


# --- Where the service is deliberately stricter than genai-prices -----------------------------------


def test_differs_openai_usage_without_completion_tokens():
    # genai-prices' chat extractor requires completion_tokens; the embeddings API sends none, and
    # genai-prices reads its usage with another extractor (embeddings), whose counts we give.
    usage = {"prompt_tokens": 8, "total_tokens": 8}
    with pytest.raises(ValueError, match="completion_tokens"):
        genai_prices_counts(usage, "openai")
    assert normalise(usage, "openai", None)[1] == genai_prices_counts(usage, "openai", "embeddings") == counts(8, 0)


@pytest.mark.parametrize(
    ("usage", "usage_format", "theirs", "param"),
    [
        # genai-prices takes a float count...
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4.0}},
            "openai",
            counts(10, 5, cached=4.0),
            "usage.prompt_tokens_details.cached_tokens",
        ),
        # ... and skips an optional count it cannot read, as if absent: these 4 cache reads would
        # be charged at the full input rate.
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": "4"}},
            "openai",
            counts(10, 5),
            "usage.prompt_tokens_details.cached_tokens",
        ),
        (
            {"input_tokens": 10, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": "4"}},
            "openai-responses",
            counts(10, 9),
            "usage.output_tokens_details.reasoning_tokens",
        ),
        # It believes a 5-minute/1-hour split that does not add up to the writes...
        (
            {
                "input_tokens": 8,
                "output_tokens": 3,
                "cache_creation_input_tokens": 7,
                "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2},
            },
            "anthropic",
            counts(15, 3, cache_write=7, cache_write_1h=2),
            "usage.cache_creation",
        ),
        # ... even with no writes at all: then 1-hour writes exceed the writes.
        (
            {"input_tokens": 8, "output_tokens": 3, "cache_creation": {"ephemeral_1h_input_tokens": 2}},
            "anthropic",
            counts(8, 3, cache_write_1h=2),
            "usage.cache_creation",
        ),
        # It takes the first of two 1-hour items.
        (
            {
                "inputTokens": 1,
                "outputTokens": 1,
                "cacheWriteInputTokens": 5,
                "cacheDetails": [{"ttl": "1h", "inputTokens": 2}, {"ttl": "1h", "inputTokens": 3}],
            },
            "bedrock",
            counts(6, 1, cache_write=5, cache_write_1h=2),
            "usage.cacheDetails.1",
        ),
        # A Gemini object whose only counts are modality breakdowns has usage to genai-prices (0 input).
        (
            {"promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]},
            "gemini",
            counts(0, 0),
            "usage",
        ),
    ],
)
def test_differs_stricter_than_genai_prices(usage, usage_format, theirs, param):
    assert genai_prices_counts(usage, usage_format) == theirs
    assert refusal(usage, usage_format).param == param


# --- Any decoded JSON: a result or a 400, never another exception -----------------------------------

KNOWN_KEYS = sorted(
    {
        *("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details"),
        *("cached_tokens", "cache_write_tokens", "reasoning_tokens", "input_tokens", "output_tokens"),
        *("input_tokens_details", "output_tokens_details", "thinking_tokens", "cache_read_input_tokens"),
        *("cache_creation_input_tokens", "cache_creation", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"),
        *GEMINI_COUNTS,
        *("totalTokenCount", "promptTokensDetails", "modality", "tokenCount"),
        *("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens"),
        *("cacheDetails", "ttl"),
    }
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, MAX_TOKENS, MAX_TOKENS + 1, -1, 10**400, "1h", "5m", "12", ""]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=6)), children, max_size=5),
    ),
    max_leaves=25,
)


def containers(value: object, found: list) -> list:
    """Every (container, key or index) inside value."""
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((value, key))
            containers(item, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((value, index))
            containers(item, found)
    return found


@st.composite
def damaged_usages(draw: st.DrawFn) -> tuple[str, dict]:
    """(its format, a valid object of that format with one or two places replaced by any JSON, or removed)."""
    usage_format = draw(st.sampled_from(USAGE_FORMATS))
    usage = draw(USAGES[usage_format])
    for _ in range(draw(st.integers(1, 2))):
        places = containers(usage, [])
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(json_values)
    return usage_format, usage


def check_counts_or_400(usage: object, usage_format: str | None, provider: str | None) -> None:
    try:
        used, result = normalise(usage, usage_format, provider)
    except InvalidRequest as error:
        assert (error.status, error.code) == (400, "validation_error")
        assert error.param in ("usage", "usage_format") or error.param.startswith("usage.")
        assert error.message
        return
    assert used in USAGE_FORMATS and (usage_format is None or used == usage_format)
    for name in Counts.__struct_fields__:
        value = getattr(result, name)
        assert value.__class__ is int and 0 <= value <= MAX_TOKENS, name
    assert result.cache_write_1h_tokens <= result.cache_write_tokens


PROVIDERS = st.sampled_from([None, "openai", "azure", "anthropic", "google", "bedrock"])


@SETTINGS
@given(json_values, st.sampled_from([None, *USAGE_FORMATS, "OpenAI", ""]), PROVIDERS)
def test_any_json_gives_counts_or_a_400(usage, usage_format, provider):
    check_counts_or_400(usage, usage_format, provider)


@settings(SETTINGS, max_examples=1000)
@given(damaged_usages(), st.booleans(), PROVIDERS)
def test_a_damaged_object_gives_counts_or_a_400(damaged, stated, provider):
    usage_format, usage = damaged
    check_counts_or_400(usage, usage_format if stated else None, provider)


def test_the_google_genai_sdk_dump_reads_as_gemini():
    """`response.usage_metadata.model_dump()` of the google-genai SDK: the API's counts in snake case, with
    its modality breakdowns (`prompt_tokens_details`, a name OpenAI's usage has too) and nulls."""
    dumped = {
        "prompt_token_count": 10_000,
        "cached_content_token_count": 4_000,
        "candidates_token_count": 700,
        "thoughts_token_count": 300,
        "tool_use_prompt_token_count": None,
        "total_token_count": 11_000,
        "prompt_tokens_details": [{"modality": "TEXT", "token_count": 10_000}],
        "cache_tokens_details": None,
        "candidates_tokens_details": None,
    }
    api = {"promptTokenCount": 10_000, "cachedContentTokenCount": 4_000, "candidatesTokenCount": 700,
           "thoughtsTokenCount": 300, "totalTokenCount": 11_000}  # fmt: skip
    assert normalise(dumped, None, None) == normalise(api, None, None) == ("gemini", normalise(api, "gemini", None)[1])
    assert normalise(dumped, "gemini", None)[1].output_tokens == 1000
    assert refusal({"prompt_token_count": "3"}, "gemini").param == "usage.promptTokenCount"
