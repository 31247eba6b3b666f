"""Exact pricing. Estimates and real charges both go through `quote`, so they cannot diverge.

Rates are upstream USD per 1,000,000 tokens; credits = upstream USD x margin x credits_per_usd.
Money is Decimal end to end and floats are refused, because a float rate is already wrong.
"""

import decimal
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from app.errors import AppError, InvalidRequest
from app.money import EXACT, MONEY_PLACES, ROUNDING

PER_MILLION = Decimal(1_000_000)
# The most tokens one event may count in any field: a trillion, a million times the largest context
# window of any model, so no real call comes near it. Bounding each event keeps every sum of events
# far from any limit (rollups keep NUMERIC sums), and tokens x rate x margin x credits_per_usd well
# inside money.EXACT's 60 digits.
MAX_TOKENS = 10**12


class ModelUnpriced(AppError):
    status = 422
    code = "model_unpriced"


RATE_KINDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")


def _check_decimal(name: str, value: object, *, positive: bool = False) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite, {'positive' if positive else 'non-negative'} Decimal")


def _check_rates(owner: object, prefix: str = "") -> None:
    for kind in RATE_KINDS:
        if (value := getattr(owner, kind)) is not None:
            _check_decimal(prefix + kind, value)


@dataclass(frozen=True, slots=True)
class Tier:
    above_input_tokens: int
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None

    def __post_init__(self) -> None:
        threshold = self.above_input_tokens
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"above_input_tokens must be a non-negative int, not {threshold!r}")
        _check_rates(self, f"tier {threshold} ")


@dataclass(frozen=True, slots=True)
class Rates:
    input: Decimal | None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    per_request: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    # 1-hour cache writes; `cache_write` is the 5-minute rate. Unknown means such writes are unpriced
    # (they cost more than 5-minute ones, so no other rate stands in for it).
    cache_write_1h: Decimal | None = None

    def __post_init__(self) -> None:
        _check_rates(self)
        _check_decimal("per_request", self.per_request)
        if not all(isinstance(tier, Tier) for tier in self.tiers):
            raise TypeError("tiers must be Tier instances")
        thresholds = [tier.above_input_tokens for tier in self.tiers]
        if len(set(thresholds)) != len(thresholds):
            raise ValueError(f"duplicate tier thresholds: {sorted(thresholds)}")


# How a provider served a call, as OpenAI's responses report it (`batch`: its Batch API, and the
# other providers' half-price batch processing). `default` is the base price.
SERVICE_TIERS = ("default", "batch", "flex", "priority")
REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class Variant:
    """Rates that replace a price version's base rates for some calls: those on a service tier, in a
    region, or within a window of the UTC day (`window`: minutes since midnight, [start, end), past
    midnight when end < start). Its rates are a whole set, read like the base: a missing cached-input
    or cache-write rate is its own input rate, never the base's.

    Which rates price a call (`select_rates`): of the variants whose every condition holds for it,
    the one with the most conditions; none, the base rates. Two that hold equally are a combination
    the data does not price (a batch call in a region priced apart, say): unpriced. A call on a tier
    other than `default` is priced only by a variant of that tier: no data, no price, never the
    default one. A region no variant names is priced at the base rates (the data does not tell it
    apart)."""

    rates: Rates
    service_tier: str | None = None
    region: str | None = None
    window: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rates, Rates):
            raise TypeError("a variant's rates must be Rates")
        if self.service_tier is None and self.region is None and self.window is None:
            raise ValueError("a variant needs a service_tier, a region or a time window")
        if self.service_tier is not None and self.service_tier not in SERVICE_TIERS[1:]:
            raise ValueError(f"service_tier must be one of {', '.join(SERVICE_TIERS[1:])}, not {self.service_tier!r}")
        if self.region is not None and not (isinstance(self.region, str) and REGION.match(self.region)):
            raise ValueError(f"region must be lowercase letters, digits and dashes, not {self.region!r}")
        if self.window is not None:
            start, end = self.window
            if not all(isinstance(m, int) and 0 <= m < MINUTES_PER_DAY for m in self.window) or start == end:
                raise ValueError(f"window must be two different minutes of the day, not {self.window!r}")

    @property
    def conditions(self) -> int:
        return (self.service_tier is not None) + (self.region is not None) + (self.window is not None)

    def applies(self, minute: int, service_tier: str, region: str | None) -> bool:
        if self.service_tier is not None and self.service_tier != service_tier:
            return False
        if self.region is not None and self.region != region:
            return False
        if self.window is not None:
            start, end = self.window
            inside = start <= minute < end if start < end else (minute >= start or minute < end)
            if not inside:
                return False
        return True


def select_rates(
    model_id: str,
    rates: Rates | None,
    variants: tuple[Variant, ...],
    at: datetime,
    service_tier: str = "default",
    region: str | None = None,
) -> tuple[int | None, Rates | None]:
    """(the index of the variant that prices a call at `at`, or None for the base; its rates), by
    the rules of `Variant`. Raises model_unpriced for a tier or a combination the data does not price."""
    if not variants and service_tier == "default":
        return None, rates
    if rates is None:
        return None, None  # no price at all: `quote` says so
    at = at.astimezone(UTC)
    minute = at.hour * 60 + at.minute
    held = [(index, v) for index, v in enumerate(variants) if v.applies(minute, service_tier, region)]
    most = max((v.conditions for _, v in held), default=0)
    best = [(index, v) for index, v in held if v.conditions == most]
    if len(best) > 1:
        raise ModelUnpriced(
            f"Model '{model_id}' has no known price for a {service_tier} call in this region at this time",
            param="service_tier",
        )
    if best and best[0][1].service_tier == service_tier:
        return best[0][0], best[0][1].rates
    if service_tier != "default":
        raise ModelUnpriced(
            f"Model '{model_id}' has no known price for the {service_tier} service tier", param="service_tier"
        )
    return (best[0][0], best[0][1].rates) if best else (None, rates)


# Stored form: rates as decimal strings (null: unknown), tiers as in the `tiers` column, variants with
# their conditions and "HH:MM" window ends (`time_from`, `time_to`).


def _stored(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def rates_from(data: Mapping[str, Any]) -> Rates:
    """Rates from their stored form. ValueError/TypeError name what is malformed."""
    tiers = tuple(
        Tier(above_input_tokens=tier["above_input_tokens"], **{kind: _stored(tier.get(kind)) for kind in RATE_KINDS})
        for tier in data.get("tiers") or ()
    )
    return Rates(
        **{kind: _stored(data.get(kind)) for kind in RATE_KINDS},
        per_request=_stored(data.get("per_request")) or Decimal(0),
        tiers=tiers,
    )


def minute_of(text: Any, field: str) -> int:
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"`{field}` must be a UTC time of day as HH:MM, not {text!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def time_of(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def variant_from(data: Mapping[str, Any]) -> Variant:
    """A variant from its stored form."""
    start, end = data.get("time_from"), data.get("time_to")
    if (start is None) != (end is None):
        raise ValueError("a time window needs both `time_from` and `time_to`")
    window = None if start is None else (minute_of(start, "time_from"), minute_of(end, "time_to"))
    return Variant(rates_from(data), data.get("service_tier"), data.get("region"), window)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # part of cache_write_tokens


@dataclass(frozen=True, slots=True)
class Line:
    kind: str  # input | cached_input | cache_write | cache_write_1h | output | request
    tokens: int | None  # None for the request fee, whose rates are per request rather than per 1M
    rate_usd_per_1m: Decimal
    rate_credits_per_1m: Decimal
    upstream_usd: Decimal
    credits: Decimal


@dataclass(frozen=True, slots=True)
class Quote:
    upstream_usd: Decimal
    credits: Decimal
    tier: int | None
    lines: tuple[Line, ...]


def round_money(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    with localcontext(ROUNDING):
        return value.quantize(MONEY_PLACES)


def credit_rate(usd_per_1m: Decimal, margin: Decimal, credits_per_usd: Decimal) -> Decimal:
    _check_decimal("usd_per_1m", usd_per_1m)
    _check_decimal("margin", margin, positive=True)
    _check_decimal("credits_per_usd", credits_per_usd, positive=True)
    with localcontext(EXACT):
        return usd_per_1m * margin * credits_per_usd


USAGE_FIELDS = (
    "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "cache_write_1h_tokens",
)  # fmt: skip


def validate_usage(usage: Usage, *, embedding: bool) -> None:
    for field in USAGE_FIELDS:
        value = getattr(usage, field)
        if value.__class__ is not int and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidRequest(f"`{field}` must be an integer", param=field)
        if not 0 <= value <= MAX_TOKENS:
            raise InvalidRequest(f"`{field}` must be between 0 and {MAX_TOKENS}, got {value}", param=field)
    if embedding and usage.output_tokens:
        raise InvalidRequest("Embedding models produce no output: `output_tokens` must be 0", param="output_tokens")
    if usage.cached_input_tokens > usage.input_tokens:
        raise InvalidRequest("`cached_input_tokens` exceeds `input_tokens`", param="cached_input_tokens")
    if usage.cached_input_tokens + usage.cache_write_tokens > usage.input_tokens:
        raise InvalidRequest(
            "`cached_input_tokens` + `cache_write_tokens` exceeds `input_tokens`", param="cache_write_tokens"
        )
    if usage.reasoning_tokens > usage.output_tokens:
        raise InvalidRequest("`reasoning_tokens` exceeds `output_tokens`", param="reasoning_tokens")
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        raise InvalidRequest("`cache_write_1h_tokens` exceeds `cache_write_tokens`", param="cache_write_1h_tokens")


def quote(
    model_id: str,
    rates: Rates | None,
    usage: Usage,
    *,
    embedding: bool,
    margin: Decimal,
    credits_per_usd: Decimal,
) -> Quote:
    validate_usage(usage, embedding=embedding)
    if rates is None or rates.input is None or (not embedding and rates.output is None):
        raise ModelUnpriced(f"Model '{model_id}' has no known price", param="model")
    _check_decimal("margin", margin, positive=True)
    _check_decimal("credits_per_usd", credits_per_usd, positive=True)

    # A tier is a cliff: crossing its threshold reprices the whole request, not just the excess.
    crossed = [t for t in rates.tiers if usage.input_tokens > t.above_input_tokens]
    tier = max(crossed, key=lambda t: t.above_input_tokens, default=None)

    def rate(kind: str, fallback: Decimal | None = None) -> Decimal | None:
        for source in (tier, rates):
            if source is not None and (value := getattr(source, kind)) is not None:
                return value
        return fallback

    # A missing cache rate falls back to the input rate in force, so above a tier that is the tier's;
    # 1-hour writes have no stand-in (see Rates).
    input_rate = rate("input")
    write_1h_rate = rate("cache_write_1h")
    if usage.cache_write_1h_tokens and write_1h_rate is None:
        raise ModelUnpriced(f"Model '{model_id}' has no known price for 1-hour cache writes", param="model")
    components = (
        ("input", usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, input_rate),
        ("cached_input", usage.cached_input_tokens, rate("cached_input", input_rate)),
        ("cache_write", usage.cache_write_tokens - usage.cache_write_1h_tokens, rate("cache_write", input_rate)),
        ("cache_write_1h", usage.cache_write_1h_tokens, write_1h_rate),
        ("output", usage.output_tokens, rate("output")),
    )
    with localcontext(EXACT):
        scale = margin * credits_per_usd
        priced = [(kind, n, r, n * r / PER_MILLION) for kind, n, r in components if n > 0]
        if rates.per_request:
            priced.append(("request", None, rates.per_request, rates.per_request))
        lines = tuple(Line(k, n, r, r * scale, round_money(usd), round_money(usd * scale)) for k, n, r, usd in priced)
        total_usd = sum((usd for *_, usd in priced), Decimal(0))
        total_credits = total_usd * scale
    # Each total is one rounding of its exact value, not the sum of the rounded lines (which may be off
    # by a few units in the 9th place); credits come from the exact USD, never from the rounded USD.
    threshold = None if tier is None else tier.above_input_tokens
    return Quote(round_money(total_usd), round_money(total_credits), threshold, lines)


def credits_value(credits: Decimal, credits_per_usd: Decimal) -> Decimal:
    """What credits are worth in USD, rounded once like every amount (half to even)."""
    return ROUNDING.divide(credits, credits_per_usd).quantize(MONEY_PLACES, context=ROUNDING)


# The charging path. `quote` above is the reference: it also itemizes (estimates show the lines) and
# checks every argument on every call. Recording usage needs only its two totals, event after event
# with the same few price versions and margins, so a `Tariff` works them out once per (price
# version, margin) as integers, and then prices an event with a handful of integer operations and one
# rounding per total. Anything out of the ordinary (no price, an argument `quote` would refuse, a
# result too large to be sure `quote` would not trap) is handed to `quote` itself, so a charge is
# `quote`'s totals exactly, errors included (tests/test_pricing.py compares the two on random input).

# Below this, a total's exact integer numerator, scaled by the margin, has at most 50 digits: then
# no step of `quote` (60 digits, Inexact trapped) can trap, and both compute the same exact value.
_SAFE = 10**50
PER_MILLION_INT = 1_000_000
NANO = 1_000_000_000


def _scaled(value: Decimal, places: int) -> int:
    """value x 10**places as an int, exactly (value has at most `places` fractional digits)."""
    _, digits, exponent = value.as_tuple()
    coefficient = int("".join(map(str, digits))) if digits else 0
    return coefficient * 10 ** (exponent + places)


def _places(value: Decimal | None) -> int:
    return 0 if value is None else max(0, -value.as_tuple().exponent)


def _half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, ties to even (both non-negative)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


class Tariff:
    """`quote`'s totals (upstream USD and credits) for one price version at one margin."""

    __slots__ = (
        "compiled",
        "credit_den",
        "credit_mul",
        "credits_per_usd",
        "embedding",
        "fee",
        "margin",
        "model_id",
        "rates",
        "usd_den",
    )

    def __init__(
        self, model_id: str, rates: Rates | None, *, embedding: bool, margin: Decimal, credits_per_usd: Decimal
    ) -> None:
        self.model_id, self.rates, self.embedding = model_id, rates, embedding
        self.margin, self.credits_per_usd = margin, credits_per_usd
        self.compiled: tuple | None = None  # None: every charge goes through `quote`
        try:
            if rates is None or rates.input is None or (not embedding and rates.output is None):
                return  # unpriced: `quote` raises model_unpriced
            _check_decimal("margin", margin, positive=True)
            _check_decimal("credits_per_usd", credits_per_usd, positive=True)
        except (TypeError, ValueError):
            return
        try:
            scale = EXACT.multiply(margin, credits_per_usd)
        except decimal.DecimalException:
            return
        # Every rate as an integer count of 10**-places USD per 1M tokens; the scale likewise.
        bands = [(None, rates), *sorted(((t.above_input_tokens, t) for t in rates.tiers), key=lambda b: b[0])]
        places = max(_places(getattr(band, kind)) for _, band in bands for kind in RATE_KINDS)
        places = max(places, _places(rates.per_request))
        scale_places = _places(scale)
        compiled = []
        for threshold, band in bands:
            tier = None if threshold is None else band

            def rate(kind: str, fallback: Decimal | None = None, tier: Tier | None = tier) -> Decimal | None:
                for source in (tier, rates):
                    if source is not None and (value := getattr(source, kind)) is not None:
                        return value
                return fallback

            input_rate = rate("input")
            output_rate = rate("output")
            write_1h_rate = rate("cache_write_1h")
            compiled.append(
                (
                    -1 if threshold is None else threshold,
                    _scaled(input_rate, places),
                    _scaled(rate("cached_input", input_rate), places),
                    _scaled(rate("cache_write", input_rate), places),
                    0 if output_rate is None else _scaled(output_rate, places),  # embeddings: 0 tokens
                    None if write_1h_rate is None else _scaled(write_1h_rate, places),  # None: `quote` refuses
                )
            )
        # Highest threshold first: the first one crossed is the tier `quote` picks.
        self.compiled = tuple(sorted(compiled, key=lambda band: band[0], reverse=True))
        # total USD = (sum of tokens x rate + fee x 1M) / 10**(places + 6); fee is per request.
        self.fee = _scaled(rates.per_request, places) * PER_MILLION_INT
        self.usd_den = 10 ** (places + 6)
        self.credit_mul = _scaled(scale, scale_places)
        self.credit_den = 10 ** (places + 6 + scale_places)

    def charge(self, usage: Usage) -> tuple[Decimal, Decimal]:
        """(upstream USD, credits) of `usage`, each rounded once to 9 places (half even): `quote`'s totals."""
        validate_usage(usage, embedding=self.embedding)
        if self.compiled is not None:
            tokens = usage.input_tokens
            band = next(band for band in self.compiled if tokens > band[0])
            _, input_rate, cached_rate, write_rate, output_rate, write_1h_rate = band
            cached, written, written_1h = (
                usage.cached_input_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens,
            )
            numerator = (
                (tokens - cached - written) * input_rate
                + cached * cached_rate
                + (written - written_1h) * write_rate
                + usage.output_tokens * output_rate
                + self.fee
            )
            if written_1h:
                numerator = None if write_1h_rate is None else numerator + written_1h * write_1h_rate
            credits = None if numerator is None else numerator * self.credit_mul
            if credits is not None and credits < _SAFE:
                usd = _half_even(numerator * NANO, self.usd_den)
                credits = _half_even(credits * NANO, self.credit_den)
                return ROUNDING.scaleb(Decimal(usd), -9), ROUNDING.scaleb(Decimal(credits), -9)
        result = quote(
            self.model_id,
            self.rates,
            usage,
            embedding=self.embedding,
            margin=self.margin,
            credits_per_usd=self.credits_per_usd,
        )
        return result.upstream_usd, result.credits
