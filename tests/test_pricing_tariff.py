"""The charging path (`Tariff`, `Catalog.charge`) gives exactly what the reference `quote` gives.

`quote` is the reference, proved by hand in tests/test_pricing.py. A Tariff prices the same charge in
integer arithmetic; these tests compare the two on many random rates, margins and usages: equal
totals with the same digits (the same `str`), and the same error when `quote` refuses.
"""

import decimal
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.catalog.model import build_catalog
from app.errors import AppError
from app.pricing import MAX_TOKENS, Rates, Tariff, Tier, Usage, credits_value, quote

SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decimals(max_digits: int = 12, max_places: int = 12, *, positive: bool = False) -> st.SearchStrategy[D]:
    """Exact decimals with up to `max_digits` digits, some of them fractional, some with trailing zeros
    or positive exponents ("1.50", "2.5E+3")."""

    def build(digits: int, places: int, shift: int) -> D:
        value = D(digits).scaleb(-places, decimal.Context(prec=100))
        return value.scaleb(shift, decimal.Context(prec=100)) if shift else value

    low = 1 if positive else 0
    return st.builds(
        build,
        st.integers(low, 10**max_digits - 1),
        st.integers(0, max_places),
        st.sampled_from([0, 0, 0, 0, 1, 3]),
    )


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


tiers = st.lists(
    st.builds(
        Tier,
        st.integers(0, 2_000_000),
        maybe(decimals()),
        maybe(decimals()),
        maybe(decimals()),
        maybe(decimals()),
        maybe(decimals()),
    ),
    max_size=3,
    unique_by=lambda tier: tier.above_input_tokens,
).map(tuple)

rates = st.builds(
    Rates,
    maybe(decimals()),
    maybe(decimals()),
    maybe(decimals()),
    maybe(decimals()),
    st.one_of(st.just(D(0)), decimals(6, 9)),
    tiers,
    maybe(decimals()),
)

margins = st.one_of(st.sampled_from([D("1.4"), D("1"), D("1.40"), D("2.5")]), decimals(6, 6, positive=True))
credits_per_usd = st.one_of(st.sampled_from([D(100), D(1), D(3), D("7.5"), D("1E+2")]), decimals(4, 4, positive=True))


def token_counts(high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 5_000), st.integers(0, high), st.sampled_from([0, 1, 200_000, 200_001]))


@st.composite
def usages(draw: st.DrawFn, *, valid: bool = True) -> Usage:
    high = draw(st.sampled_from([2_000_000, 10**12, MAX_TOKENS]))
    input_tokens = draw(token_counts(high))
    output_tokens = draw(token_counts(high))
    if valid:
        cached = draw(st.integers(0, input_tokens))
        written = draw(st.integers(0, input_tokens - cached))
        reasoning = draw(st.integers(0, output_tokens))
        written_1h = draw(st.one_of(st.just(0), st.integers(0, written)))
    else:
        cached, written, reasoning, written_1h = (draw(st.integers(-2, high)) for _ in range(4))
        input_tokens = draw(st.one_of(st.just(input_tokens), st.integers(-2, MAX_TOKENS + 2)))
    return Usage(input_tokens, output_tokens, cached, written, reasoning, written_1h)


def outcome(function, *args, **kwargs):
    """What a call gives: its totals with their exact digits, or the error it raises."""
    try:
        result = function(*args, **kwargs)
    except (AppError, decimal.DecimalException, TypeError, ValueError) as error:
        return ("error", type(error), str(error), getattr(error, "param", None))
    return ("ok", *(str(value) for value in result))


def both(model_rates: Rates | None, usage: Usage, embedding: bool, margin: D, cpu: D) -> tuple:
    def reference() -> tuple[D, D]:
        q = quote("openai/x", model_rates, usage, embedding=embedding, margin=margin, credits_per_usd=cpu)
        return q.upstream_usd, q.credits

    tariff = Tariff("openai/x", model_rates, embedding=embedding, margin=margin, credits_per_usd=cpu)
    return outcome(reference), outcome(tariff.charge, usage)


@SETTINGS
@given(rates, usages(), st.booleans(), margins, credits_per_usd)
@example(Rates(input=D("0.0005"), output=D(0)), Usage(1), False, D("1.4"), D(100))  # half, to even: 0
@example(Rates(input=D("0.000225"), output=D(0)), Usage(1), False, D("1.4"), D(100))  # half, to even: up
@example(Rates(input=D(0), output=D(0)), Usage(5000, 800), False, D("1.4"), D(100))  # free: 0E-9
@example(Rates(input=D("1E+30"), output=D(1)), Usage(MAX_TOKENS), False, D("999.999999"), D(100))  # too big
def test_charge_equals_quote(model_rates, usage, embedding, margin, cpu):
    reference, charged = both(model_rates, usage, embedding, margin, cpu)
    assert charged == reference


@SETTINGS
@given(rates, usages(valid=False), st.booleans(), margins, credits_per_usd)
def test_charge_refuses_what_quote_refuses(model_rates, usage, embedding, margin, cpu):
    reference, charged = both(model_rates, usage, embedding, margin, cpu)
    assert charged == reference


def test_ordinary_charges_take_the_integer_path(monkeypatch):
    """The comparisons above exercise the integer arithmetic, not just the hand-over to `quote`."""
    from app import pricing

    tariff = Tariff(
        "openai/x", Rates(D("2.5"), D(10), D("1.25")), embedding=False, margin=D("1.4"), credits_per_usd=D(100)
    )
    monkeypatch.setattr(pricing, "quote", None)
    assert tariff.charge(Usage(2006, 300, cached_input_tokens=1920)) == (D("0.005615"), D("0.7861"))
    assert str(tariff.charge(Usage(0))[1]) == "0E-9"


@pytest.mark.parametrize(
    ("model_rates", "embedding"),
    [(None, False), (Rates(input=None, output=D(1)), False), (Rates(input=D(1)), False), (Rates(input=D(1)), True)],
)
@pytest.mark.parametrize(("margin", "cpu"), [(D("1.4"), D(100)), (D(0), D(100)), (D("1.4"), D(-1)), (1.4, D(100))])
def test_unpriced_and_invalid_arguments_fail_alike(model_rates, embedding, margin, cpu):
    reference, charged = both(model_rates, Usage(10), embedding, margin, cpu)
    assert charged == reference


@SETTINGS
@given(decimals(12, 9), credits_per_usd)
def test_credits_value_is_one_rounding_half_even(credits, cpu):
    with decimal.localcontext(decimal.Context(prec=200, rounding=decimal.ROUND_HALF_EVEN)):
        expected = (credits / cpu).quantize(D("0.000000001"))
    assert str(credits_value(credits, cpu)) == str(expected)


def row(**fields):
    return SimpleNamespace(**fields)


def test_catalog_charge_uses_the_version_and_margin_in_effect():
    """Catalog.charge prices with the price version and margin of the event's time, like Catalog.quote."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    base = {
        "cached_input": None,
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": D(0),
        "tiers": [],
        "variants": [],
        "source": "test",
    }
    data = {
        "version": [row(version=1)],
        "providers": [row(id="openai", name="OpenAI", enabled=True)],
        "models": [row(id="openai/x", name="x", type="language", provider="openai", match=None)],
        "aliases": [],
        "prices": [
            row(id=1, model_id="openai/x", effective_from=t0, input=D("2.5"), output=D(10), **base),
            row(
                id=2,
                model_id="openai/x",
                effective_from=t0 + timedelta(days=10),
                input=D(3),
                output=D(12),
                **base | {"tiers": [{"above_input_tokens": 1000, "input": "6"}]},
            ),
        ],
        "margins": [
            row(scope="provider", target="openai", effective_from=t0 + timedelta(days=5), margin=D("1.5")),
            row(scope="model", target="openai/x", effective_from=t0 + timedelta(days=20), margin=D("2")),
        ],
    }
    catalog = build_catalog(data, D("1.4"), D(100))
    model = catalog.models["openai/x"]
    for day in (0, 4, 5, 9, 10, 19, 20, 30):
        at = t0 + timedelta(days=day)
        for usage in (Usage(500, 100), Usage(2000, 10, cached_input_tokens=700)):
            quoted, price, margin = catalog.quote(model, usage, at)
            assert catalog.charge(model, usage, at) == (quoted.upstream_usd, quoted.credits, price, margin)
    assert [
        price.id for _, price, _ in (catalog.quote(model, Usage(1, 1), t0 + timedelta(days=d)) for d in (9, 10))
    ] == [
        1,
        2,
    ]
    # Tariffs are made once per (model, price version, margin) and reused.
    assert len(catalog.tariffs) == 4
