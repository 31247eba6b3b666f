"""What a client reports of a call's tokens: the service's token fields, or the provider's own usage
object (`usage`, read by app/usage/formats.py), never both. Usage events, estimates and holds all
read their tokens here, so the three count a call alike."""

from typing import Any

import msgspec

from app import pricing
from app.errors import InvalidRequest
from app.usage import formats

# A provider's usage object is a few hundred bytes; it is stored with the event, so it is bounded.
MAX_USAGE_BYTES = 8192
ENCODER = msgspec.json.Encoder()


# Token fields a request may carry; any one left out (None) counts 0, except `input_tokens`.
PARTS = ("cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens")
UNSET = object()


def usage_from(
    data: Any, *, output_tokens: Any = UNSET, output_field: str = "output_tokens"
) -> tuple[pricing.Usage, str | None]:
    """The counts of a usage event, an estimate or a hold (`data`: its token fields, `usage`,
    `usage_format` and `provider`), and the usage object's format (None for token fields). The output
    is `output_tokens` unless the caller names another field (a hold's `max_output_tokens`)."""
    usage, usage_format, provider = data.usage, data.usage_format, data.provider
    input_tokens = data.input_tokens
    if output_tokens is UNSET:
        output_tokens = data.output_tokens
    cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens = (
        getattr(data, name, None) for name in PARTS
    )
    fields = {
        "input_tokens": input_tokens,
        output_field: output_tokens,
        "cached_input_tokens": cached_input_tokens,
        "cache_write_tokens": cache_write_tokens,
        "cache_write_1h_tokens": cache_write_1h_tokens,
        "reasoning_tokens": reasoning_tokens,
    }
    if usage is None:
        if usage_format is not None:
            raise InvalidRequest("`usage_format` describes `usage`, which is missing", param="usage_format")
        if input_tokens is None:
            raise InvalidRequest("`input_tokens` (or the provider's `usage` object) is required", param="input_tokens")
        return (
            pricing.Usage(
                input_tokens,
                output_tokens or 0,
                cached_input_tokens or 0,
                cache_write_tokens or 0,
                reasoning_tokens or 0,
                cache_write_1h_tokens or 0,
            ),
            None,
        )
    given = [name for name, value in fields.items() if value is not None]
    if given:
        raise InvalidRequest(
            f"Give token fields or the provider's `usage` object, not both (`{given[0]}` was given)", param=given[0]
        )
    if len(ENCODER.encode(usage)) > MAX_USAGE_BYTES:
        raise InvalidRequest(f"`usage` is larger than {MAX_USAGE_BYTES} bytes", param="usage")
    found, counts = formats.normalise(usage, usage_format, provider)
    return (
        pricing.Usage(
            counts.input_tokens,
            counts.output_tokens,
            counts.cached_input_tokens,
            counts.cache_write_tokens,
            counts.reasoning_tokens,
            counts.cache_write_1h_tokens,
        ),
        found,
    )
