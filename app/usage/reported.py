"""What a client reports of a call's tokens: the service's token fields, or the provider's own usage
object (`usage`, read by app/usage/formats.py), never both. Usage events, estimates and holds all
read their tokens here, so the three count a call alike; events and holds their tags too."""

from typing import Any

import msgspec

from app import pricing
from app.bodies import MAX_JSON_DEPTH, nests_deeper
from app.errors import InvalidRequest
from app.usage import formats

# A provider's usage object is a few hundred bytes; it is stored with the event, so it is bounded.
MAX_USAGE_BYTES = 8192
ENCODER = msgspec.json.Encoder()


# Token fields a request may carry; any one left out (None) counts 0, except `input_tokens`.
PARTS = ("cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens")
UNSET = object()
NONE = (None,) * (2 + len(PARTS))


# Every token count a request may carry. Money depends on them, so each is a JSON integer: the
# body decoder would take "12", "1e3" or 1.0 for 12, 1000 and 1, which no client meant to send.
COUNT_FIELDS = ("input_tokens", "output_tokens", "max_output_tokens", "reasoning_tokens", *PARTS[:3])


def check_counts(raw: Any) -> None:
    """Refuse a token count that is not a JSON integer in a request's decoded JSON (a dict; anything
    else is left to the request's own validation). A lookup and a comparison per field."""
    if raw.__class__ is not dict:
        return
    for name in COUNT_FIELDS:
        value = raw.get(name)
        if value is not None and value.__class__ is not int:
            raise InvalidRequest(f"`{name}` must be an integer, not {formats.kind(value)}", param=name)


def usage_from(
    data: Any, *, output_tokens: Any = UNSET, output_field: str = "output_tokens"
) -> tuple[pricing.Usage, str | None]:
    """The counts of a usage event, an estimate or a hold (`data`: its token fields, `usage`,
    `usage_format` and `provider`), and the usage object's format (None for token fields). The output
    is `output_tokens` unless the caller names another field (a hold's `max_output_tokens`)."""
    if output_tokens is UNSET:
        output_tokens = data.output_tokens
    usage = data.usage
    if usage is None:  # token fields: the common case, kept short (it runs for every event)
        if data.usage_format is not None:
            raise InvalidRequest("`usage_format` describes `usage`, which is missing", param="usage_format")
        if data.input_tokens is None:
            raise InvalidRequest("`input_tokens` (or the provider's `usage` object) is required", param="input_tokens")
        return (
            pricing.Usage(
                data.input_tokens,
                output_tokens or 0,
                data.cached_input_tokens or 0,
                data.cache_write_tokens or 0,
                getattr(data, "reasoning_tokens", None) or 0,  # a hold has none
                data.cache_write_1h_tokens or 0,
            ),
            None,
        )
    values = (data.input_tokens, output_tokens, *(getattr(data, name, None) for name in PARTS))
    if values != NONE:
        names = ("input_tokens", output_field, *PARTS)
        given = next(name for name, value in zip(names, values, strict=True) if value is not None)
        raise InvalidRequest(
            f"Give token fields or the provider's `usage` object, not both (`{given}` was given)", param=given
        )
    if nests_deeper(usage):
        raise InvalidRequest(f"`usage` nests deeper than {MAX_JSON_DEPTH} levels", param="usage")
    if len(ENCODER.encode(usage)) > MAX_USAGE_BYTES:
        raise InvalidRequest(f"`usage` is larger than {MAX_USAGE_BYTES} bytes", param="usage")
    found, counts = formats.normalise(usage, data.usage_format, data.provider)
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


def check_tags(tags: list[str] | None) -> list[str] | None:
    """Tags without repeats, in the order given: an event counts once under each of its tags."""
    if not tags:
        return None
    for tag in tags:
        # The unit separator joins an event's tags on their way to the database (usage/repository.py).
        if any(ord(char) < 32 for char in tag):
            raise InvalidRequest("`tags` must not contain control characters", param="tags")
    return list(dict.fromkeys(tags))
