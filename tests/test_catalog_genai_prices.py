"""genai-prices models as catalog price entries (app/catalog/genai_prices.py, read by the catalog sync and
the build script): price history, service-tier variants and time-of-day windows, resolved as
`ModelInfo.get_prices(timestamp, price_context)` resolves them."""

import datetime as dt
from decimal import Decimal

import pytest
from genai_prices.types import (
    ClauseEquals,
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    PriceVariant,
    StartDateConstraint,
    Tier,
    TieredPrices,
    TimeOfDateConstraint,
)

from app.catalog import entries, genai_prices
from app.catalog.litellm import Unusable

SOURCE_DATE = dt.date(2026, 11, 21)


def model(prices, variants=None, name="m") -> ModelInfo:
    return ModelInfo(id=name, match=ClauseEquals(equals=name), prices=prices, price_variants=variants)


def mtok(**rates: str) -> ModelPrice:
    return ModelPrice(**{f"{key}_mtok": Decimal(value) for key, value in rates.items()})


def at(hour: int, minute: int = 0) -> dt.time:
    return dt.time(hour, minute, tzinfo=dt.UTC)


def history(info: ModelInfo, created: dt.date | None = None) -> tuple[list[dict] | None, list[str]]:
    notes: list[str] = []
    return genai_prices.history(info, "gp", SOURCE_DATE, created, notes.append), notes


def rates(entry: dict) -> tuple:
    return entry["input"], entry["output"], entry["cached_input"]


def test_a_plain_price_is_dated_by_the_source_date():
    (entry,), _ = history(model(mtok(input="2.5", output="10", cache_read="1.25")))
    assert entry == {
        "effective_from": "2026-11-21",
        "input": "2.5",
        "output": "10",
        "cached_input": "1.25",
        "cache_write": None,
        "cache_write_1h": None,
        "per_request": "0",
        "tiers": [],
        "source": "gp",
    }


def test_the_larger_part_of_the_day_is_the_base_and_the_rest_a_window():
    """DeepSeek: 0.27 from 00:30 to 16:30 UTC, half price the other 8 hours (across midnight)."""
    info = model(
        [
            ConditionalPrice(prices=mtok(input="0.135", output="0.55", cache_read="0.035")),
            ConditionalPrice(
                constraint=TimeOfDateConstraint(start_time=at(0, 30), end_time=at(16, 30)),
                prices=mtok(input="0.27", output="1.1", cache_read="0.07"),
            ),
        ]
    )
    (entry,), _ = history(info)
    assert rates(entry) == ("0.27", "1.1", "0.07")
    (window,) = entry["variants"]
    assert (window["time_from"], window["time_to"], *rates(window)) == ("16:30", "00:30", "0.135", "0.55", "0.035")
    assert entries.problems(entry["variants"]) == []


def test_windows_apart_stay_apart():
    peak = mtok(input="0.3", output="1.2")
    info = model(
        [
            ConditionalPrice(prices=mtok(input="0.15", output="0.6")),
            ConditionalPrice(constraint=TimeOfDateConstraint(start_time=at(1), end_time=at(4)), prices=peak),
            ConditionalPrice(constraint=TimeOfDateConstraint(start_time=at(6), end_time=at(10)), prices=peak),
        ]
    )
    (entry,), _ = history(info)
    assert entry["input"] == "0.15"
    assert [(v["time_from"], v["time_to"], v["input"]) for v in entry["variants"]] == [
        ("01:00", "04:00", "0.3"),
        ("06:00", "10:00", "0.3"),
    ]


def test_service_tiers_are_complete_rate_sets_from_their_start_dates():
    """A variant overrides only some prices: its rates are the standard ones with those replaced."""
    info = model(
        mtok(input="1.25", output="10", cache_read="0.125"),
        [
            PriceVariant(when={"service_tier": "default"}, prices=ModelPrice()),
            PriceVariant(
                when={"service_tier": "flex"},
                prices=mtok(input="0.625", output="5"),
                constraint=StartDateConstraint(start_date=dt.date(2026, 10, 12)),
            ),
            PriceVariant(when={"service_tier": "fast"}, prices=mtok(input="2.5")),  # not represented
            PriceVariant(
                when={"processing": "batch"},
                prices=mtok(input="0.625"),
                constraint=StartDateConstraint(start_date=dt.date(2026, 10, 14)),
            ),
        ],
    )
    (first, flex, both), _ = history(info, created=dt.date(2025, 8, 7))
    assert (first["effective_from"], "variants" in first) == ("2025-08-07", False)
    assert flex["effective_from"] == "2026-10-12"
    assert [(v["service_tier"], *rates(v)) for v in flex["variants"]] == [("flex", "0.625", "5", "0.125")]
    assert both["effective_from"] == "2026-10-14"
    assert [(v["service_tier"], *rates(v)) for v in both["variants"]] == [
        ("batch", "0.625", "10", "0.125"),
        ("flex", "0.625", "5", "0.125"),
    ]
    assert all(rates(e) == ("1.25", "10", "0.125") for e in (first, flex, both))


def test_tiers_of_a_variant():
    tiered = TieredPrices(base=Decimal("1.25"), tiers=[Tier(start=200000, price=Decimal("2.5"))])
    info = model(
        ModelPrice(input_mtok=tiered, output_mtok=Decimal(10)),
        [
            PriceVariant(
                when={"processing": "batch"},
                prices=ModelPrice(
                    input_mtok=TieredPrices(base=Decimal("0.625"), tiers=[Tier(start=200000, price=Decimal("1.25"))])
                ),
            )
        ],
    )
    (entry,), _ = history(info)
    assert entry["tiers"][0] | {} == {"above_input_tokens": 200000, "input": "2.5"} | dict.fromkeys(
        ("output", "cached_input", "cache_write", "cache_write_1h")
    )
    (batch,) = entry["variants"]
    assert (batch["input"], batch["output"], batch["tiers"][0]["input"]) == ("0.625", "10", "1.25")


def test_the_undated_price_before_a_change():
    change = ConditionalPrice(
        constraint=StartDateConstraint(start_date=dt.date(2026, 8, 17)), prices=mtok(input="0.22", output="0.66")
    )
    undated = ConditionalPrice(prices=mtok(input="0.14", output="0.28"))
    dated, _ = history(model([undated, change]), created=dt.date(2026, 4, 24))
    assert [(e["effective_from"], e["input"]) for e in dated] == [("2026-04-24", "0.14"), ("2026-08-17", "0.22")]
    dropped, notes = history(model([undated, change]))
    assert [(e["effective_from"], e["input"]) for e in dropped] == [("2026-08-17", "0.22")]
    assert notes == ["genai-prices: undated price before a price change dropped"]
    future = ConditionalPrice(
        constraint=StartDateConstraint(start_date=dt.date(2027, 1, 1)), prices=mtok(input="0.2", output="0.3")
    )
    ahead, _ = history(model([undated, future]))
    assert [(e["effective_from"], e["input"]) for e in ahead] == [("2026-11-21", "0.14"), ("2027-01-01", "0.2")]


def test_unusable_prices():
    with pytest.raises(Unusable, match="float artefact"):
        history(model(mtok(input="0.0833333333333333", output="1")))
    variant = PriceVariant(when={"processing": "batch"}, prices=mtok(input="-1"))
    (entry,), notes = history(model(mtok(input="1", output="2"), [variant]))
    assert "variants" not in entry and notes == [
        "genai-prices: unusable batch price left out (`input_mtok` is negative (-1): the price is variable)"
    ]
    assert history(model(ModelPrice(requests_kcount=Decimal(5))))[0] is None  # no token price


def test_the_installed_data():
    """The package's own DeepSeek price: the off-peak window the build script used to drop is a variant."""
    providers, _, license_ = genai_prices.load()
    assert license_ == "MIT"
    deepseek = next(p for p in providers if p.id == "deepseek")
    chat = next(m for m in deepseek.models if m.id == "deepseek-chat")
    (entry,), _ = history(chat)
    assert (entry["input"], entry["variants"][0]["time_from"], entry["variants"][0]["input"]) == (
        "0.27",
        "16:30",
        "0.135",
    )
    assert genai_prices.find({p.id: p for p in providers}, genai_prices.TARGETS["azure"], "gpt-4o").id == "gpt-4o"
