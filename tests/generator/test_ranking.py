"""The learned fusion: the model file round-trips, a model that cannot load degrades to weighted RRF, and a
planted model really sets the order of a page (and only on the shelves it was trained for)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightgbm
import numpy as np
import pytest

from models.context import PlacementKind
from streams.catalog.products import Product
from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.contracts.storefront import Arm, ItemSource
from streams.evaluation.ranker_training import Examples, train
from streams.generator.assembly import StorefrontAssembler
from streams.generator.ranking import (
    CARD_FILE,
    FEATURES,
    MISSING_RANK,
    MODEL_FILE,
    SHELF_INDEX,
    Candidates,
    LearnedRanker,
    PageSignals,
    feature_rows,
    load_ranker,
)

COVISITED = [f"c{i}" for i in range(8)]
CATALOG = {p: Product(p, f"acme phone {p}", f"phones.{p}", f"brand{p}", 100.0 + i) for i, p in enumerate(COVISITED)}
CATALOG["seen"] = Product("seen", "acme phone seen", "phones.seen", "acme", 150.0)
COLUMN = {name: i for i, name in enumerate(FEATURES)}


def _request() -> RegenRequest:
    """A session that bought one phone (no own shelf: the page is the four generated placements); its only
    candidates are the session-kNN list c0 (best) .. c7."""
    ctx = SessionContext(
        recent=[RecentItem("seen", "purchase")],
        categories=["phones.seen"],
        brands=["acme"],
        price_bands=["128-256"],
        last_query=None,
        counts={"purchase": 1},
        drift=0.0,
    )
    ranker = RankerCandidates(covisited=[(p, 10.0 - i) for i, p in enumerate(COVISITED)])
    return RegenRequest(session_id="s", user_id=None, version=1, reason="test", event_ts=0, context=ctx, ranker=ranker)


def _planted(out: Path, *, shelf: PlacementKind = PlacementKind.HERO) -> Path:
    """A model taught that the further down the session-kNN list, the more relevant (graded labels), on ``shelf``
    only: the opposite of what reciprocal-rank fusion does."""
    rng = np.random.default_rng(0)
    examples = Examples()
    for g in range(300):
        n = 8
        rows = np.full((n, len(FEATURES)), MISSING_RANK, dtype=np.float32)
        rows[:, COLUMN["shelf"]] = SHELF_INDEX[shelf]
        rows[:, COLUMN["covis_rank"]] = rng.permutation(n)
        rows[:, COLUMN["covis_score"]] = 1.0 - rows[:, COLUMN["covis_rank"]] / n
        labels = rows[:, COLUMN["covis_rank"]].copy()  # graded: the worse the co-visit rank, the more relevant
        examples.rows.append(rows)
        examples.labels.append(labels)
        examples.keys.append((f"e{g}", str(shelf)))
        examples.shelves[str(shelf)] += 1
    train(examples, out, data={"split_ms": 0})
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _planted(tmp_path_factory.mktemp("ranker"))


def _assembler(learned: LearnedRanker | None) -> StorefrontAssembler:
    return StorefrontAssembler(retriever=None, products=CATALOG.get, items_per_placement=3, learned=learned)


def _placement(assembler: StorefrontAssembler, kind: PlacementKind) -> list[str]:
    update = assembler.assemble(_request(), arm=Arm.CONTROL)
    (placement,) = [p for p in update.placements if p.kind == kind.value]
    return [item.product_id for item in placement.items]


def test_the_model_file_round_trips_with_its_card(planted: Path) -> None:
    ranker = LearnedRanker.load(planted)
    card = json.loads((planted / CARD_FILE).read_text())
    assert ranker.version == card["version"] and card["features"] == list(FEATURES)
    assert ranker.shelves == {PlacementKind.HERO}
    assert (planted / MODEL_FILE).stat().st_size < 1_000_000
    rows = feature_rows(PageSignals.of(_request()), Candidates(PlacementKind.HERO, COVISITED), CATALOG.get)
    again = lightgbm.Booster(model_file=str(planted / MODEL_FILE)).predict(rows)
    np.testing.assert_allclose(ranker.scores(Candidates(PlacementKind.HERO, COVISITED), rows), again)
    assert ranker.scores(Candidates(PlacementKind.HERO, []), rows[:0]).shape == (0,)


def test_a_planted_model_flips_the_order_of_the_shelves_it_was_trained_for(planted: Path) -> None:
    fused = _assembler(None)
    learned = _assembler(LearnedRanker.load(planted))
    assert _placement(fused, PlacementKind.HERO) == ["c0", "c1", "c2"]  # reciprocal rank: best co-visit first
    assert _placement(learned, PlacementKind.HERO) == ["c7", "c6", "c5"]  # the model: the worst co-visit first
    update = learned.assemble(_request(), arm=Arm.CONTROL)
    assert all(i.source is ItemSource.COVISITATION for p in update.placements for i in p.items)
    # because_you_viewed was never trained on: it keeps weighted reciprocal-rank fusion (after the hero's items)
    assert _placement(learned, PlacementKind.BECAUSE_YOU_VIEWED) == ["c0", "c1", "c2"]


def test_features_describe_the_candidate_against_the_session() -> None:
    rows = feature_rows(PageSignals.of(_request()), Candidates(PlacementKind.DEALS, ["c0", "c7", "seen"]), CATALOG.get)
    c0, c7, seen = rows
    assert (c0[COLUMN["covis_rank"]], c7[COLUMN["covis_rank"]], seen[COLUMN["covis_rank"]]) == (0, 7, MISSING_RANK)
    assert c0[COLUMN["covis_score"]] == 1.0 and c7[COLUMN["covis_score"]] == pytest.approx(0.3)
    assert seen[COLUMN["recent_rank"]] == 0 and seen[COLUMN["recent_count"]] == 1
    assert seen[COLUMN["brand_affinity"]] == 0 and c0[COLUMN["brand_affinity"]] == MISSING_RANK
    assert seen[COLUMN["category_affinity"]] == 0 and seen[COLUMN["band_affinity"]] == 0
    assert c0[COLUMN["band_affinity"]] == MISSING_RANK  # 100 is in the 64-128 band, the session's is 128-256
    assert c0[COLUMN["price_ratio"]] < seen[COLUMN["price_ratio"]]
    assert all(rows[:, COLUMN["shelf"]] == SHELF_INDEX[PlacementKind.DEALS])


def test_no_model_configured_is_weighted_rrf_without_a_problem() -> None:
    problems: list[str] = []
    assert load_ranker(None, problems) is None
    assert problems == []


def test_a_missing_corrupt_or_foreign_model_degrades_to_weighted_rrf(
    planted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / MODEL_FILE).write_text("tree\nnot a model\n")
    (corrupt / CARD_FILE).write_text((planted / CARD_FILE).read_text())
    no_card = tmp_path / "no-card"
    no_card.mkdir()
    (no_card / MODEL_FILE).write_text((planted / MODEL_FILE).read_text())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    data = lightgbm.Dataset(np.random.default_rng(1).random((60, 3)), label=np.arange(60) % 2, group=[6] * 10)
    booster = lightgbm.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5}, data, 3)
    booster.save_model(str(foreign / MODEL_FILE))
    (foreign / CARD_FILE).write_text((planted / CARD_FILE).read_text())
    caplog.set_level(logging.WARNING)
    for path, reason in (
        (tmp_path / "absent", "no ranker model"),
        (corrupt, "unreadable ranker model"),
        (no_card, "unreadable ranker card"),
        (foreign, "other features"),
    ):
        problems: list[str] = []
        assert load_ranker(path, problems) is None, path
        assert len(problems) == 1 and reason in problems[0] and "weighted reciprocal-rank fusion" in problems[0]
    # the generator then assembles exactly the weighted-RRF page
    assert _placement(_assembler(None), PlacementKind.HERO) == ["c0", "c1", "c2"]
