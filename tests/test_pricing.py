"""Pricing is pure arithmetic: every expected figure below is worked by hand in a comment."""

from decimal import Decimal as D
from decimal import localcontext

import pytest

from app.errors import InvalidRequest
from app.pricing import MAX_TOKENS, Line, ModelUnpriced, Rates, Tier, Usage, credit_rate, quote, round_money

MARGIN = D("1.4")
CPU = D(100)  # so credits = USD x 140

GPT_4O = Rates(input=D("2.5"), cached_input=D("1.25"), output=D(10))
SONNET = Rates(input=D(3), cached_input=D("0.30"), cache_write=D("3.75"), output=D(15))
LONG = Rates(input=D("1.25"), output=D(10), tiers=(Tier(200_000, input=D("2.5"), output=D(15)),))


def price(rates, usage, *, embedding=False, margin=MARGIN, cpu=CPU, model="openai/x"):
    return quote(model, rates, usage, embedding=embedding, margin=margin, credits_per_usd=cpu)


def test_gpt4o_cached_prompt():
    # uncached 2006-1920=86 x 2.5 = 215; cached 1920 x 1.25 = 2400; output 300 x 10 = 3000
    # (215 + 2400 + 3000) / 1e6 = 0.005615 USD; x 140 = 0.7861 credits
    q = price(GPT_4O, Usage(input_tokens=2006, cached_input_tokens=1920, output_tokens=300))
    assert q.upstream_usd == D("0.005615")
    assert str(q.credits) == "0.786100000"
    assert q.tier is None
    assert q.lines == (
        Line("input", 86, D("2.5"), D(350), D("0.000215"), D("0.0301")),
        Line("cached_input", 1920, D("1.25"), D(175), D("0.0024"), D("0.336")),
        Line("output", 300, D(10), D(1400), D("0.003"), D("0.42")),
    )


def test_anthropic_cache_write_and_read():
    # 10000 input = 1000 uncached + 6000 cache read + 3000 cache write; 500 output (200 of them reasoning,
    # billed as output): 1000x3 + 6000x0.30 + 3000x3.75 + 500x15 = 3000 + 1800 + 11250 + 7500 = 23550
    # -> 0.02355 USD; x 140 = 3.297 credits
    usage = Usage(
        input_tokens=10_000,
        cached_input_tokens=6_000,
        cache_write_tokens=3_000,
        output_tokens=500,
        reasoning_tokens=200,
    )
    q = price(SONNET, usage)
    assert (q.upstream_usd, q.credits) == (D("0.02355"), D("3.297"))
    assert [(line.kind, line.tokens, line.rate_credits_per_1m) for line in q.lines] == [
        ("input", 1000, D(420)),
        ("cached_input", 6000, D(42)),
        ("cache_write", 3000, D(525)),
        ("output", 500, D(2100)),
    ]


def test_one_hour_cache_writes_at_their_own_rate():
    # Claude Sonnet 4: input 3, cache read 0.30, 5-minute write 3.75, 1-hour write 6, output 15 USD per 1M.
    # 10000 input = 5000 uncached + 2000 read + 3000 written (1000 of them for an hour); 500 output:
    # 5000x3 + 2000x0.30 + 2000x3.75 + 1000x6 + 500x15 = 15000 + 600 + 7500 + 6000 + 7500 = 36600
    # -> 0.0366 USD; x 140 = 5.124 credits
    rates = Rates(input=D(3), cached_input=D("0.30"), cache_write=D("3.75"), output=D(15), cache_write_1h=D(6))
    usage = Usage(10_000, 500, cached_input_tokens=2_000, cache_write_tokens=3_000, cache_write_1h_tokens=1_000)
    q = price(rates, usage)
    assert (q.upstream_usd, q.credits) == (D("0.0366"), D("5.124"))
    assert [(line.kind, line.tokens) for line in q.lines] == [
        ("input", 5000),
        ("cached_input", 2000),
        ("cache_write", 2000),
        ("cache_write_1h", 1000),
        ("output", 500),
    ]


def test_one_hour_cache_writes_without_their_rate_are_unpriced():
    # A 1-hour write costs more than a 5-minute one; no other rate stands in for it.
    usage = Usage(10_000, 500, cache_write_tokens=3_000, cache_write_1h_tokens=1_000)
    with pytest.raises(ModelUnpriced, match="1-hour cache writes"):
        price(SONNET, usage)
    # The same writes, all for 5 minutes: 7000x3 + 3000x3.75 + 500x15 = 21000 + 11250 + 7500 -> 0.03975 USD
    assert price(SONNET, Usage(10_000, 500, cache_write_tokens=3_000)).upstream_usd == D("0.03975")
    with pytest.raises(InvalidRequest, match="cache_write_1h_tokens"):
        price(SONNET, Usage(10_000, 500, cache_write_tokens=1_000, cache_write_1h_tokens=1_001))


def test_missing_cache_rates_bill_at_input_rate():
    # 1000 x 3 for each of uncached, cached and cache write + 0 output = 9000 -> 0.009 USD
    q = price(Rates(input=D(3), output=D(15)), Usage(3000, cached_input_tokens=1000, cache_write_tokens=1000))
    assert q.upstream_usd == D("0.009")
    assert {line.kind: line.rate_usd_per_1m for line in q.lines} == {
        "input": D(3),
        "cached_input": D(3),
        "cache_write": D(3),
    }


def test_explicit_zero_cache_rate_is_free_not_missing():
    # 1000 uncached x 3 = 3000; 1000 cached x 0 = 0 -> 0.003 USD
    q = price(Rates(input=D(3), output=D(15), cached_input=D(0)), Usage(2000, cached_input_tokens=1000))
    assert q.upstream_usd == D("0.003")


def test_above_tier_whole_request_at_tier_rates():
    # 250000 > 200000 so everything is tiered: 250000 x 2.5 + 1000 x 15 = 640000 -> 0.64 USD; x 140 = 89.6
    q = price(LONG, Usage(input_tokens=250_000, output_tokens=1_000))
    assert (q.upstream_usd, q.credits, q.tier) == (D("0.64"), D("89.6"), 200_000)


def test_exactly_at_tier_threshold_is_base_rate():
    # not strictly above: 200000 x 1.25 + 1000 x 10 = 260000 -> 0.26 USD; x 140 = 36.4
    q = price(LONG, Usage(input_tokens=200_000, output_tokens=1_000))
    assert (q.upstream_usd, q.credits, q.tier) == (D("0.26"), D("36.4"), None)
    # one token more crosses the cliff: 200001 x 2.5 + 1000 x 15 = 515002.5 -> 0.5150025 USD
    assert price(LONG, Usage(input_tokens=200_001, output_tokens=1_000)).upstream_usd == D("0.5150025")


def test_highest_crossed_tier_wins_and_none_falls_back_to_base():
    rates = Rates(
        input=D("1.25"),
        cached_input=D("0.125"),
        output=D(10),
        tiers=(Tier(200_000, input=D("2.5")), Tier(128_000, input=D(2), output=D(12))),
    )
    # 150000 crosses only 128k: 150000 x 2 + 1000 x 12 = 312000 -> 0.312 USD
    assert price(rates, Usage(150_000, output_tokens=1_000)).tier == 128_000
    # 300000 crosses both, 200k applies; its output and cached rates are None so fall back to base:
    # 200000 uncached x 2.5 + 100000 cached x 0.125 + 1000 x 10 = 500000 + 12500 + 10000 -> 0.5225 USD
    q = price(rates, Usage(300_000, cached_input_tokens=100_000, output_tokens=1_000))
    assert (q.tier, q.upstream_usd) == (200_000, D("0.5225"))


def test_tier_without_cache_rates_bills_cache_at_tier_input_rate():
    rates = Rates(input=D(1), output=D(2), tiers=(Tier(100, input=D(4), output=D(8)),))
    # 200 input > 100: 50 uncached + 100 cached + 50 cache write, all at the tier input 4 = 800; 10 x 8 = 80
    # -> 880 / 1e6 = 0.00088 USD
    q = price(rates, Usage(200, output_tokens=10, cached_input_tokens=100, cache_write_tokens=50))
    assert q.upstream_usd == D("0.00088")
    assert {line.rate_usd_per_1m for line in q.lines if line.kind != "output"} == {D(4)}


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        (Usage(10, cached_input_tokens=11), "cached_input_tokens"),
        (Usage(10, cache_write_tokens=11), "cache_write_tokens"),
        (Usage(10, cached_input_tokens=6, cache_write_tokens=5), "cache_write_tokens"),
        (Usage(10, output_tokens=5, reasoning_tokens=6), "reasoning_tokens"),
        (Usage(-1), "input_tokens"),
        (Usage(10, output_tokens=-1), "output_tokens"),
        (Usage(10, cached_input_tokens=-1), "cached_input_tokens"),
        (Usage(True), "input_tokens"),
        (Usage(10, output_tokens=False), "output_tokens"),
        (Usage(10.0), "input_tokens"),  # type: ignore[arg-type]
        (Usage("10"), "input_tokens"),  # type: ignore[arg-type]
        (Usage(MAX_TOKENS + 1), "input_tokens"),
    ],
)
def test_invalid_usage_names_the_field(usage, field):
    with pytest.raises(InvalidRequest) as err:
        price(GPT_4O, usage)
    assert (err.value.status, err.value.code, err.value.param) == (400, "validation_error", field)
    assert field in err.value.message


def test_usage_is_validated_before_price():
    with pytest.raises(InvalidRequest):
        price(None, Usage(-1))


@pytest.mark.parametrize(
    ("rates", "embedding"),
    [
        (None, False),
        (None, True),
        (Rates(input=None, output=D(10)), False),
        (Rates(input=None), True),
        (Rates(input=D("2.5")), False),  # a language model needs an output price, even for 0 output tokens
    ],
)
def test_unpriced_model_is_rejected(rates, embedding):
    with pytest.raises(ModelUnpriced) as err:
        price(rates, Usage(10), embedding=embedding, model="openai/x")
    assert (err.value.status, err.value.code, err.value.param) == (422, "model_unpriced", "model")
    assert err.value.message == "Model 'openai/x' has no known price"


def test_free_model_costs_exactly_zero():
    q = price(Rates(input=D(0), output=D(0)), Usage(5000, output_tokens=800, reasoning_tokens=100))
    assert q.upstream_usd == 0 and q.credits == 0
    assert [line.credits for line in q.lines] == [0, 0]


def test_embedding_bills_input_only():
    # 1000 x 0.02 = 20 -> 0.00002 USD; x 140 = 0.0028 credits; no output rate needed
    q = price(Rates(input=D("0.02")), Usage(1000), embedding=True)
    assert (q.upstream_usd, q.credits) == (D("0.00002"), D("0.0028"))
    assert [line.kind for line in q.lines] == ["input"]


def test_embedding_with_output_tokens_is_rejected():
    with pytest.raises(InvalidRequest) as err:
        price(Rates(input=D("0.02")), Usage(1000, output_tokens=1), embedding=True)
    assert err.value.param == "output_tokens"


def test_per_request_fee_added_once():
    rates = Rates(input=D(1), output=D(2), per_request=D("0.005"))
    # 1000 x 1 + 500 x 2 = 2000 -> 0.002 USD, + 0.005 fee once = 0.007 USD; x 140 = 0.98 credits
    q = price(rates, Usage(1000, output_tokens=500))
    assert (q.upstream_usd, q.credits) == (D("0.007"), D("0.98"))
    assert q.lines[-1] == Line("request", None, D("0.005"), D("0.7"), D("0.005"), D("0.7"))
    assert [line.kind for line in q.lines].count("request") == 1
    # with no tokens at all, the fee is the whole price
    assert price(rates, Usage(0)).upstream_usd == D("0.005")


def test_rounding_is_half_even_at_ninth_place():
    # 1 token x 0.0005 / 1e6 = 0.0000000005 USD: exactly half, 9th digit 0 is even -> stays 0 (half-up: 1e-9)
    assert price(Rates(input=D("0.0005"), output=D(0)), Usage(1)).upstream_usd == D("0E-9")
    # 1 token x 0.000075 / 1e6 x 140 = 0.0000000105 credits: half, 9th digit 0 is even -> 0.000000010
    assert price(Rates(input=D("0.000075"), output=D(0)), Usage(1)).credits == D("0.000000010")
    # 1 token x 0.000225 / 1e6 x 140 = 0.0000000315 credits: half, 9th digit 1 is odd -> 0.000000032
    assert price(Rates(input=D("0.000225"), output=D(0)), Usage(1)).credits == D("0.000000032")


def test_credits_come_from_unrounded_usd():
    # 1 token x 0.0375 / 1e6 = 0.0000000375 USD exact -> rounds to 0.000000038 USD.
    # Exact credits: 0.0000000375 x 140 = 0.00000525. Rounding USD first would give
    # 0.000000038 x 140 = 0.00000532, which is wrong.
    q = price(Rates(input=D("0.0375"), output=D(0)), Usage(1))
    assert q.upstream_usd == D("0.000000038")
    assert q.credits == D("0.00000525")


def test_total_is_one_rounding_not_sum_of_rounded_lines():
    # each line is 1 x 0.0005 / 1e6 = 0.0000000005 USD -> rounds to 0; the exact total 0.000000001 does not
    q = price(Rates(input=D("0.0005"), output=D("0.0005")), Usage(1, output_tokens=1), margin=D(1), cpu=D(1))
    assert [line.upstream_usd for line in q.lines] == [0, 0]
    assert q.upstream_usd == D("0.000000001")


def test_huge_counts_stay_exact():
    # 10**12 x 2.5 / 1e6 = 2500000 USD; + 10**12 x 10 / 1e6 = 10000000 -> 12500000 USD; x 140 = 1750000000
    q = price(GPT_4O, Usage(10**12, output_tokens=10**12))
    assert (q.upstream_usd, q.credits) == (D(12_500_000), D(1_750_000_000))
    # (10**12 - 7) x 2.5 / 1e6 = 2499999.9999825 USD; x 140 = 349999999.99755 credits; and
    # (10**12 - 7) x 2.5 + (10**12 - 1) x 10 tokens' worth: 16 and more significant digits, past a float
    q = price(GPT_4O, Usage(10**12 - 7))
    assert (q.upstream_usd, q.credits) == (D("2499999.9999825"), D("349999999.99755"))
    q = price(GPT_4O, Usage(10**12 - 7, output_tokens=10**12 - 1))
    assert (q.upstream_usd, q.credits) == (D("12499999.9999725"), D("1749999999.99615"))


def test_callers_decimal_context_does_not_matter():
    with localcontext(prec=3):
        q = price(GPT_4O, Usage(input_tokens=2006, cached_input_tokens=1920, output_tokens=300))
    assert (q.upstream_usd, q.credits) == (D("0.005615"), D("0.7861"))


def test_estimate_and_charge_are_the_same_figure():
    usage = Usage(input_tokens=2006, cached_input_tokens=1920, output_tokens=300)
    assert price(GPT_4O, usage) == price(GPT_4O, Usage(2006, 300, 1920))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rates(input=2.5, output=D(10)),
        lambda: Rates(input=D("2.5"), output=10.0),
        lambda: Rates(input=D("2.5"), output=D(10), per_request=0.01),
        lambda: Tier(200_000, input=2.5),
        lambda: price(GPT_4O, Usage(10), margin=1.4),
        lambda: price(GPT_4O, Usage(10), cpu=100.0),
        lambda: credit_rate(2.5, MARGIN, CPU),
        lambda: round_money(0.1),
    ],
)
def test_floats_are_refused(build):
    with pytest.raises(TypeError):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rates(input=D(-1), output=D(10)),
        lambda: Rates(input=D("NaN"), output=D(10)),
        lambda: Rates(input=D("Infinity"), output=D(10)),
        lambda: Tier(-1),
        lambda: Rates(input=D(1), output=D(1), tiers=(Tier(10), Tier(10))),
        lambda: price(GPT_4O, Usage(10), margin=D(0)),
        lambda: price(GPT_4O, Usage(10), cpu=D(-100)),
    ],
)
def test_nonsense_prices_are_refused(build):
    with pytest.raises(ValueError):
        build()


def test_credit_rate_is_exact():
    # 2.5 x 1.4 x 100 = 350; 0.075 x 1.35 x 100 = 10.125
    assert credit_rate(D("2.5"), MARGIN, CPU) == D(350)
    assert credit_rate(D("0.075"), D("1.35"), CPU) == D("10.125")
