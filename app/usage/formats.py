"""A provider's usage object, as its API returned it, mapped to the service's token counts.

The service's rule: `input_tokens` counts every prompt token, and cache reads and cache writes are
parts of it; `output_tokens` counts every generated token, and reasoning is part of it. Providers
split the same tokens differently (Anthropic's and Bedrock's input counts leave cache reads and
writes out, Gemini's output count leaves thoughts out), so each format has its own small mapping.

The mappings are the ones genai-prices maintains (openai/chat, openai/responses, anthropic/default,
google/default, aws/default), written out here rather than run through `genai_prices.extract_usage`:
this runs for every event on the ingestion path, where extract_usage would cost more than the rest of an
event's Python (BENCHMARKS.md, "Measurements behind code choices").
Compiling genai-prices' extractor definitions instead would still need every rule below that they do
not hold. tests/test_usage_formats.py holds the two equal (the fields genai-prices reads, and the
counts of random objects) and lists where this module is deliberately stricter: counts must be JSON
integers (genai-prices takes 4.0, and skips an optional count it cannot read, such as "4", as if it
were absent), Anthropic's 5-minute/1-hour split must add up to its cache writes, a Bedrock object
may list the 1-hour TTL once, and an OpenAI usage without `completion_tokens` counts 0 output tokens
(the embeddings API's usage is `{"prompt_tokens": 8, "total_tokens": 8}`).

What it costs per object, against `genai_prices.extract_usage`: BENCHMARKS.md, "Provider usage objects".

A pure module: every refusal is an `InvalidRequest` (400) whose `param` names the field, as
`usage.<dotted path>` or `usage_format`, whatever decoded JSON it is given.
"""

from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from app.errors import InvalidRequest
from app.pricing import MAX_TOKENS

USAGE_FORMATS = ("openai", "openai-responses", "anthropic", "gemini", "bedrock")


class Counts(msgspec.Struct, frozen=True, gc=False):
    input_tokens: int  # every prompt token
    output_tokens: int  # every generated token, reasoning included
    cached_input_tokens: int  # part of input_tokens: cache reads
    cache_write_tokens: int  # part of input_tokens: cache writes, 5-minute and 1-hour together
    cache_write_1h_tokens: int  # part of cache_write_tokens: the 1-hour cache writes
    reasoning_tokens: int  # part of output_tokens


def normalise(usage: object, usage_format: str | None, provider: str | None) -> tuple[str, Counts]:
    """(the format used, the counts) of a provider's usage object. Without `usage_format`, the
    object's keys tell the format, and `provider` decides when they cannot."""
    if usage_format is not None and (not isinstance(usage_format, str) or usage_format not in _PARSERS):
        raise InvalidRequest(f"`usage_format` must be one of {', '.join(USAGE_FORMATS)}", param="usage_format")
    if not isinstance(usage, dict):
        raise InvalidRequest(
            f"`usage` must be an object (the provider's usage as its API returned it), not {kind(usage)}",
            param="usage",
        )
    if usage_format is None:
        usage_format = _detect(usage, provider)
    return usage_format, _PARSERS[usage_format](usage)


# Keys only one format has: any of them settles the format.
_MARKERS = {
    "prompt_tokens": "openai",
    "completion_tokens": "openai",
    "prompt_tokens_details": "openai",
    "completion_tokens_details": "openai",
    "input_tokens_details": "openai-responses",
    "cache_read_input_tokens": "anthropic",
    "cache_creation_input_tokens": "anthropic",
    "cache_creation": "anthropic",
    "promptTokenCount": "gemini",
    "candidatesTokenCount": "gemini",
    "thoughtsTokenCount": "gemini",
    "cachedContentTokenCount": "gemini",
    "toolUsePromptTokenCount": "gemini",
    "totalTokenCount": "gemini",
    # The google-genai SDK's `usage_metadata.model_dump()` writes the same counts in snake case.
    "prompt_token_count": "gemini",
    "candidates_token_count": "gemini",
    "thoughts_token_count": "gemini",
    "cached_content_token_count": "gemini",
    "tool_use_prompt_token_count": "gemini",
    "total_token_count": "gemini",
    "inputTokens": "bedrock",
    "outputTokens": "bedrock",
    "cacheReadInputTokens": "bedrock",
    "cacheWriteInputTokens": "bedrock",
    "cacheDetails": "bedrock",
    "totalTokens": "bedrock",
}
# Each format's keys that belong to another format: finding one makes a shape ambiguous.
_FOREIGN = {name: frozenset(key for key, kind in _MARKERS.items() if kind != name) for name in USAGE_FORMATS}
# Providers whose usage objects of only input_tokens and output_tokens are the Responses API's.
_RESPONSES_PROVIDERS = ("openai", "azure")


def _detect(usage: dict, provider: str | None) -> str:
    if not _GEMINI_SNAKE.keys().isdisjoint(usage):
        # The google-genai SDK's dump also has `prompt_tokens_details` (its modality breakdown), a
        # name OpenAI's usage has too; its snake-case counts are Gemini's alone.
        return "gemini"
    for key in usage:
        found = _MARKERS.get(key)
        if found is None:
            continue
        if not _FOREIGN[found].isdisjoint(usage):
            # Some proxies mix formats (OpenAI's prompt_tokens beside Anthropic's cache counts):
            # reading either way would drop the other's tokens, so the reporter must say which.
            other = next(_MARKERS[name] for name in usage if name in _FOREIGN[found])
            raise InvalidRequest(
                f"`usage` has keys of both the {found} and {other} formats: state `usage_format`",
                param="usage_format",
            )
        return found
    if "input_tokens" not in usage and "output_tokens" not in usage:
        raise InvalidRequest(
            f"`usage` matches none of the formats {', '.join(USAGE_FORMATS)}: send the provider's usage "
            "object itself (a response's `usage` or `usageMetadata`)",
            param="usage",
        )
    # Anthropic and the Responses API share input_tokens, output_tokens and output_tokens_details;
    # what is inside the details, or total_tokens (Anthropic sends none), tells them apart. When
    # nothing does, the two formats count the same tokens, and the provider picks one.
    details = usage.get("output_tokens_details")
    if isinstance(details, dict):
        if "thinking_tokens" in details:
            return "anthropic"
        if "reasoning_tokens" in details:
            return "openai-responses"
    if "total_tokens" in usage or provider in _RESPONSES_PROVIDERS:
        return "openai-responses"
    return "anthropic"


def _openai(usage: dict) -> Counts:
    prompt = _object(usage, "prompt_tokens_details", "usage")
    completion = _object(usage, "completion_tokens_details", "usage")
    return Counts(
        input_tokens=_required(usage, "prompt_tokens", "usage"),
        # The embeddings API reports {"prompt_tokens": 8, "total_tokens": 8}: nothing generated.
        output_tokens=_count(usage, "completion_tokens", "usage"),
        cached_input_tokens=_count(prompt, "cached_tokens", "usage.prompt_tokens_details"),
        # Where cache writes are billed apart, the model reports them here (the SDK's types carry it).
        cache_write_tokens=_count(prompt, "cache_write_tokens", "usage.prompt_tokens_details"),
        cache_write_1h_tokens=0,
        reasoning_tokens=_count(completion, "reasoning_tokens", "usage.completion_tokens_details"),
    )


def _openai_responses(usage: dict) -> Counts:
    given = _object(usage, "input_tokens_details", "usage")
    generated = _object(usage, "output_tokens_details", "usage")
    return Counts(
        input_tokens=_required(usage, "input_tokens", "usage"),
        output_tokens=_required(usage, "output_tokens", "usage"),
        cached_input_tokens=_count(given, "cached_tokens", "usage.input_tokens_details"),
        cache_write_tokens=_count(given, "cache_write_tokens", "usage.input_tokens_details"),
        cache_write_1h_tokens=0,
        reasoning_tokens=_count(generated, "reasoning_tokens", "usage.output_tokens_details"),
    )


def _anthropic(usage: dict) -> Counts:
    # Anthropic's input_tokens are only the tokens after the last cache breakpoint: reads and
    # writes are counted beside them, not in them.
    uncached = _required(usage, "input_tokens", "usage")
    read = _count(usage, "cache_read_input_tokens", "usage")
    written = _count(usage, "cache_creation_input_tokens", "usage")
    written_1h = 0
    if usage.get("cache_creation") is not None:
        split = _object(usage, "cache_creation", "usage")
        written_5m = _count(split, "ephemeral_5m_input_tokens", "usage.cache_creation")
        written_1h = _count(split, "ephemeral_1h_input_tokens", "usage.cache_creation")
        # The split says which writes cost the 1-hour rate (twice the input rate, against 1.25
        # times for 5 minutes). If it does not add up to the total, one of the two is wrong, and
        # either guess would misprice the writes.
        if written_5m + written_1h != written:
            raise InvalidRequest(
                f"`usage.cache_creation` splits {written_5m + written_1h} cache write tokens (5-minute + "
                f"1-hour) but `usage.cache_creation_input_tokens` is {written}: they must be equal",
                param="usage.cache_creation",
            )
    thinking = _object(usage, "output_tokens_details", "usage")
    return Counts(
        input_tokens=_at_most_max(uncached + read + written, "`usage.input_tokens` + cache reads + cache writes"),
        output_tokens=_required(usage, "output_tokens", "usage"),
        cached_input_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=_count(thinking, "thinking_tokens", "usage.output_tokens_details"),
    )


_GEMINI_COUNTS = (
    "promptTokenCount",
    "toolUsePromptTokenCount",
    "cachedContentTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
)


_GEMINI_SNAKE = {
    "prompt_token_count": "promptTokenCount",
    "tool_use_prompt_token_count": "toolUsePromptTokenCount",
    "cached_content_token_count": "cachedContentTokenCount",
    "candidates_token_count": "candidatesTokenCount",
    "thoughts_token_count": "thoughtsTokenCount",
}


def _gemini(usage: dict) -> Counts:
    if not _GEMINI_SNAKE.keys().isdisjoint(usage):  # as the google-genai SDK dumps it: the API's names
        usage = {_GEMINI_SNAKE.get(key, key): value for key, value in usage.items()}
    # promptTokenCount already includes the cached tokens; tool-use prompts and thoughts are
    # counted beside the prompt and the candidates. Gemini leaves a count out when it is zero
    # (no candidates after a block), so each is optional; the modality breakdowns
    # (promptTokensDetails and the like) only split these counts and are not read.
    prompt = _count(usage, "promptTokenCount", "usage")
    tool_prompt = _count(usage, "toolUsePromptTokenCount", "usage")
    cached = _count(usage, "cachedContentTokenCount", "usage")
    candidates = _count(usage, "candidatesTokenCount", "usage")
    thoughts = _count(usage, "thoughtsTokenCount", "usage")
    # Zero tokens because no count is there is a wrong object (a whole response, say), not a free call.
    if not (prompt or tool_prompt or cached or candidates or thoughts) and all(
        usage.get(key) is None for key in _GEMINI_COUNTS
    ):
        raise InvalidRequest(f"`usage` has none of Gemini's token counts ({', '.join(_GEMINI_COUNTS)})", param="usage")
    return Counts(
        input_tokens=_at_most_max(prompt + tool_prompt, "`usage.promptTokenCount` + `usage.toolUsePromptTokenCount`"),
        output_tokens=_at_most_max(candidates + thoughts, "`usage.candidatesTokenCount` + `usage.thoughtsTokenCount`"),
        cached_input_tokens=cached,
        cache_write_tokens=0,
        cache_write_1h_tokens=0,
        reasoning_tokens=thoughts,
    )


def _bedrock(usage: dict) -> Counts:
    # As Anthropic's, Converse's inputTokens leave cache reads and writes out.
    uncached = _required(usage, "inputTokens", "usage")
    read = _count(usage, "cacheReadInputTokens", "usage")
    written = _count(usage, "cacheWriteInputTokens", "usage")
    written_1h = _bedrock_1h(usage)
    if written_1h > written:
        raise InvalidRequest(
            f"`usage.cacheDetails` lists {written_1h} 1-hour cache write tokens, more than "
            f"`usage.cacheWriteInputTokens` ({written})",
            param="usage.cacheDetails",
        )
    return Counts(
        input_tokens=_at_most_max(uncached + read + written, "`usage.inputTokens` + cache reads + cache writes"),
        output_tokens=_required(usage, "outputTokens", "usage"),
        cached_input_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=0,
    )


def _bedrock_1h(usage: dict) -> int:
    """The inputTokens of the cacheDetails item whose ttl is "1h" (Bedrock spells TTLs "5m", "1h")."""
    details = usage.get("cacheDetails")
    if details is None:
        return 0
    if not isinstance(details, list):
        raise InvalidRequest(f"`usage.cacheDetails` must be an array, not {kind(details)}", param="usage.cacheDetails")
    found = None
    for index, item in enumerate(details):
        if not isinstance(item, dict):
            where = f"usage.cacheDetails.{index}"
            raise InvalidRequest(f"`{where}` must be an object, not {kind(item)}", param=where)
        if item.get("ttl") == "1h":
            # Two would leave us guessing whether they are one write reported twice, or two writes.
            if found is not None:
                raise InvalidRequest(
                    '`usage.cacheDetails` lists the "1h" TTL twice', param=f"usage.cacheDetails.{index}"
                )
            found = _required(item, "inputTokens", f"usage.cacheDetails.{index}")
    return found or 0


_PARSERS = {
    "openai": _openai,
    "openai-responses": _openai_responses,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "bedrock": _bedrock,
}

# What an absent or null details object reads as (the SDKs dump absent details as null).
_NO_DETAILS: Mapping = MappingProxyType({})


def _object(parent: dict, key: str, where: str) -> Mapping:
    value = parent.get(key)
    if isinstance(value, dict):
        return value
    if value is None:
        return _NO_DETAILS
    raise InvalidRequest(f"`{where}.{key}` must be an object, not {kind(value)}", param=f"{where}.{key}")


def _count(parent: Mapping, key: str, where: str) -> int:
    """parent[key] as a token count; absent or null is 0."""
    value = parent.get(key)
    if value.__class__ is int and 0 <= value <= MAX_TOKENS:  # nearly always
        return value
    if value is None:
        return 0
    return _unusual(value, f"{where}.{key}")


def _required(parent: Mapping, key: str, where: str) -> int:
    """parent[key] as a token count, which must be there."""
    value = parent.get(key)
    if value.__class__ is int and 0 <= value <= MAX_TOKENS:
        return value
    if value is None:
        raise InvalidRequest(f"`{where}.{key}` is required", param=f"{where}.{key}")
    return _unusual(value, f"{where}.{key}")


def _unusual(value: object, path: str) -> int:
    # A count is a JSON integer: 12.0 or "12" means the object is not what its API returned.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"`{path}` must be an integer, not {kind(value)}", param=path)
    if not 0 <= value <= MAX_TOKENS:
        raise InvalidRequest(f"`{path}` must be between 0 and {MAX_TOKENS}", param=path)
    return int(value)  # an int subclass


def _at_most_max(total: int, terms: str) -> int:
    # Each term is at most MAX_TOKENS, their sum need not be.
    if total > MAX_TOKENS:
        raise InvalidRequest(f"{terms} exceeds {MAX_TOKENS}", param="usage")
    return total


_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    float: "a number",
    int: "an integer",
}


def kind(value: object) -> str:
    """The JSON kind of a value, for messages (never the value: it may be huge)."""
    if value is None:
        return "null"
    for python, name in _JSON_KINDS.items():
        if isinstance(value, python):
            return name
    return type(value).__name__
