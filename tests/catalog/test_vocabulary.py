"""The keyword vocabulary derived from products: kinds, support counts, shared categories, cap, order."""

from __future__ import annotations

from streams.catalog.products import Product
from streams.catalog.vocabulary import build_vocabulary, description_phrases


def _products() -> list[Product]:
    rees = [
        Product("1", "samsung smartphone", "electronics.smartphone", "samsung", 300.0, source="rees46"),
        Product("2", "samsung smartphone", "electronics.smartphone", "samsung", 310.0, source="rees46"),
        Product("3", "apple smartphone", "electronics.smartphone", "apple", 900.0, source="rees46"),
        Product("4", "samsung tv", "electronics.video.tv", "samsung", 500.0, source="rees46"),
        Product("5", "aqua water heater", "appliances.environment.water_heater", "aqua", 30.0, source="rees46"),
        Product("6", "aqua water heater", "appliances.environment.water_heater", "aqua", 35.0, source="rees46"),
    ]
    retail = [
        Product(f"r{i}", title, title.split()[-1].lower(), None, 1.0, source="online-retail")
        for i, title in enumerate(
            [
                "White Hanging Heart T-light Holder",
                "Red Hanging Heart T-light Holder",
                "Set Of 6 T-light Holder",
                "Glass Star Frosted T-light Holder",
                "Pink Cherry Lights",
            ]
        )
    ]
    return rees + retail


def test_kinds_counts_and_categories() -> None:
    vocab = {k.keyword: k for k in build_vocabulary(_products(), min_count=2, phrase_min_count=3)}
    assert (vocab["smartphone"].kind, vocab["smartphone"].count) == ("category", 3)
    assert vocab["electronics smartphone"].category == "electronics.smartphone"
    assert vocab["water heater"].category == "appliances.environment.water_heater"
    assert "appliances environment water heater" in vocab  # four words: still a keyword
    assert (vocab["samsung smartphone"].kind, vocab["samsung smartphone"].count) == ("brand_category", 2)
    assert "apple smartphone" not in vocab  # one product only
    assert (vocab["samsung"].kind, vocab["samsung"].count, vocab["samsung"].category) == ("brand", 3, "electronics")
    assert vocab["holder"].kind == "category"  # head noun of the description, counted before phrases
    assert (vocab["t-light holder"].kind, vocab["t-light holder"].count) == ("phrase", 4)
    assert "set" not in vocab and "of" not in vocab


def test_no_duplicates_deterministic_and_capped() -> None:
    products = _products()
    full = build_vocabulary(products)
    assert full == build_vocabulary(list(reversed(products)))
    assert len({k.keyword for k in full}) == len(full)
    capped = build_vocabulary(products, max_size=4)
    assert len(capped) == 4
    assert min(k.count for k in capped) >= max(k.count for k in full if k not in capped)


def test_phrases_skip_numbers_and_stop_word_edges() -> None:
    phrases = set(description_phrases("Set Of 3 Cake Tins Pantry Design"))
    assert {"cake tins", "pantry design", "cake tins pantry", "tins"} <= phrases
    assert not {"set of", "of 3", "3 cake", "set"} & phrases
