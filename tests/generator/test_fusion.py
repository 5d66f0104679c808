"""Fusion: weighted reciprocal-rank fusion, exclusion, the diversity step and source attribution."""

from __future__ import annotations

from streams.contracts.storefront import ItemSource
from streams.generator.fusion import FusionWeights, fuse

FACTS = {"a1": ("a", "x"), "a2": ("a", "x"), "a3": ("a", "y"), "b1": ("b", "x"), "c1": ("c", "z")}


def facts(product: str) -> tuple[str | None, str | None]:
    return FACTS.get(product, (None, None))


def weights(**kw: float) -> FusionWeights:
    base = {"retrieval": 1.0, "covisitation": 0.0, "category": 0.0, "popularity": 0.0, "diversity": 0.0}
    return FusionWeights(**{**base, **kw})


def test_agreement_between_signals_outranks_a_single_signal() -> None:
    ranked = {ItemSource.RETRIEVAL: ["a1", "b1"], ItemSource.POPULARITY: ["b1", "c1"]}
    out = fuse(ranked, weights(popularity=1.0), n=3, facts=facts)
    assert [f.product_id for f in out] == ["b1", "a1", "c1"]
    assert out[0].source is ItemSource.POPULARITY  # its top rank there contributes more


def test_zero_weight_signal_is_ignored_and_excluded_products_never_appear() -> None:
    ranked = {ItemSource.RETRIEVAL: ["a1", "a2"], ItemSource.POPULARITY: ["c1"]}
    out = fuse(ranked, weights(), n=5, facts=facts, exclude={"a1"})
    assert [f.product_id for f in out] == ["a2"]


def test_diversity_trades_a_second_item_of_one_category_for_another_category() -> None:
    ranked = {ItemSource.RETRIEVAL: ["a1", "a2", "a3", "c1"]}
    accurate = fuse(ranked, weights(), n=2, facts=facts)
    diverse = fuse(ranked, weights(diversity=0.5), n=2, facts=facts)
    assert [f.product_id for f in accurate] == ["a1", "a2"]
    assert [f.product_id for f in diverse] == ["a1", "c1"]
    assert fuse({}, weights(), n=3, facts=facts) == []
