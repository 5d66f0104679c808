"""The fusion-weight grid: factors scale the hand-set weights, and the shipped defaults are a grid point."""

from __future__ import annotations

from streams.evaluation.tuning import BASE, CONTROL, GRID, MAX_DIVERSITY, grid_points, scaled
from streams.generator.assembly import DEFAULT_WEIGHTS


def test_unit_factors_give_back_the_hand_set_weights() -> None:
    assert scaled(dict.fromkeys(GRID, 1.0)) == BASE


def test_factors_scale_each_signal_and_keep_diversity_below_one() -> None:
    weights = scaled({"retrieval": 2.0, "covisitation": 0.5, "category": 1.0, "popularity": 0.0, "diversity": 9.0})
    for kind, w in weights.items():
        assert w.retrieval == round(2 * BASE[kind].retrieval, 4)
        assert w.covisitation == round(0.5 * BASE[kind].covisitation, 4)
        assert w.popularity == 0.0
        assert w.diversity <= MAX_DIVERSITY


def test_the_control_has_no_retrieval_and_the_defaults_are_a_grid_point() -> None:
    points = grid_points()
    assert points[0] == CONTROL and all(w.retrieval == 0 for w in scaled(CONTROL).values())
    assert len(points) == 1 + len(set(map(tuple, (p.values() for p in points[1:]))))
    assert any(scaled(p) == DEFAULT_WEIGHTS for p in points[1:]), "DEFAULT_WEIGHTS must come from the grid"
