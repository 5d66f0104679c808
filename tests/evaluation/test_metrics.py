"""Metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from streams.evaluation.metrics import bootstrap_coverage, bootstrap_mean, dcg_hit, ideal_dcg


def test_ndcg_of_a_known_ranking() -> None:
    # relevant items at ranks 2 and 4 (1-based) of two relevant ones: DCG = 1/log2(3) + 1/log2(5)
    hit, ndcg = dcg_hit([10, 1, 11, 2, 12], {1, 2}, k=5)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert hit == 1.0
    assert ndcg == pytest.approx(expected)


def test_ndcg_is_one_for_the_ideal_page_and_zero_for_a_miss() -> None:
    assert dcg_hit([1, 2, 3], {1}, k=3) == (1.0, 1.0)
    assert dcg_hit([4, 5, 6], {1}, k=3) == (0.0, 0.0)
    # more relevant items than slots: the ideal is k hits
    assert dcg_hit([1, 2], {1, 2, 3}, k=2) == (1.0, pytest.approx(1.0))
    assert ideal_dcg(3, 2) == pytest.approx(1 + 1 / math.log2(3))


def test_items_beyond_k_do_not_count() -> None:
    assert dcg_hit([5, 6, 1], {1}, k=2) == (0.0, 0.0)


def test_hit_rate_and_its_interval() -> None:
    values = [1.0, 0.0, 0.0, 1.0] * 50
    clusters = [str(i) for i in range(len(values))]
    est = bootstrap_mean(values, clusters, seed=1)
    assert est.value == 0.5
    assert est.low < 0.5 < est.high


def test_interval_narrows_with_more_data() -> None:
    small = [1.0, 0.0, 0.0, 0.0] * 25
    large = small * 16
    est_small = bootstrap_mean(small, [str(i) for i in range(len(small))], seed=3)
    est_large = bootstrap_mean(large, [str(i) for i in range(len(large))], seed=3)
    assert est_small.value == est_large.value == 0.25
    assert est_large.low <= 0.25 <= est_large.high
    assert (est_large.high - est_large.low) < (est_small.high - est_small.low) / 2


def test_clustered_positions_widen_the_interval() -> None:
    values = [1.0] * 10 + [0.0] * 10
    independent = bootstrap_mean(values, [str(i) for i in range(20)], seed=5)
    clustered = bootstrap_mean(values, ["a"] * 10 + ["b"] * 10, seed=5)
    assert (clustered.high - clustered.low) > (independent.high - independent.low)


def test_interval_is_reproducible() -> None:
    values = [float(i % 3 == 0) for i in range(300)]
    clusters = [str(i // 2) for i in range(300)]
    assert bootstrap_mean(values, clusters, seed=9) == bootstrap_mean(values, clusters, seed=9)


def test_coverage_counts_distinct_items_over_the_catalog() -> None:
    pages = [(1, 2, 3), (3, 4, 5)] * 40
    clusters = [str(i) for i in range(len(pages))]
    est = bootstrap_coverage(pages, clusters, catalog_size=10, seed=2)
    assert est.value == 0.5
    assert est.low <= 0.5 <= est.high
