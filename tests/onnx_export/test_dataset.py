"""Training cuts come from the worker's own tracker, and the held-out split is by time."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from onnx_export.dataset import (
    Cut,
    Example,
    augment,
    load_events,
    outcome_keywords,
    regen_cuts,
    split_time,
    with_outcomes,
)
from streams.catalog.artifacts import Catalog
from streams.catalog.products import read_rees46
from streams.catalog.vocabulary import Keyword
from streams.contracts.storefront import Scope
from streams.runtime.settings import Settings

SHARED_DATA = Path(os.environ.get("VITRINE_SHARED_DATA", "/work/shared/data"))
REES46 = SHARED_DATA / "rees46" / "2019-Oct-head.csv"


@pytest.fixture(scope="module")
def cuts() -> list[Cut]:
    events = load_events(REES46)
    return list(regen_cuts(events, Settings(), split_time(events, 0.2)))


def test_no_test_request_is_earlier_than_any_train_request(cuts: list[Cut]) -> None:
    train = [c.request.event_ts for c in cuts if c.split == "train"]
    test = [c.request.event_ts for c in cuts if c.split == "test"]
    assert train and test
    assert max(train) < min(test)
    assert 0.1 < len(test) / len(cuts) < 0.35


def test_split_time_holds_out_the_latest_events() -> None:
    events = load_events(REES46, limit=2000)
    at = split_time(events, 0.25)
    later = sum(e.ts >= at for e in events)
    assert 0.2 * len(events) <= later <= 0.3 * len(events)
    assert all(e.ts < at for e in events if e.ts < at)


def test_augmentation_is_seeded_per_request(cuts: list[Cut]) -> None:
    import numpy as np

    products = read_rees46(REES46)
    catalog = Catalog(products, np.zeros((len(products), 4), np.float32), [], np.zeros((0, 4), np.float32))
    popular = ["electronics.smartphone", "appliances.kitchen.washer", "computers.notebook"]
    first = [augment(c.request, catalog, popular, seed=1) for c in cuts[:300]]
    again = [augment(c.request, catalog, popular, seed=1) for c in cuts[:300]]
    assert first == again
    assert any(rules is not None for _, rules in first)
    assert any(req.context.last_query for req, _ in first)


def test_example_json_round_trip() -> None:
    ex = Example("keywords", "keywords: x // hero | no items", "a | b c", 5, "s", "hero", "test", ["a", "b c"])
    assert Example.from_json(ex.to_json()) == ex


def test_outcomes_are_new_products_touched_after_the_request_and_never_from_the_test_time(cuts: list[Cut]) -> None:
    events = load_events(REES46)
    test_at = split_time(events, 0.2)
    with_next = with_outcomes(cuts, events, test_at)
    assert [c.request for c in with_next] == [c.request for c in cuts]
    assert all(not c.next_products for c in with_next if c.split == "test")
    train = [c for c in with_next if c.split == "train"]
    assert sum(bool(c.next_products) for c in train) > len(train) // 4
    by_session: dict[str, list[tuple[int, str]]] = {}
    for e in events:
        if e.product_id is not None:
            by_session.setdefault(e.session_id, []).append((e.ts, e.product_id))
    for cut in train:
        recent = {r.product_id for r in cut.request.context.recent}
        later = {p: ts for ts, p in reversed(by_session[cut.request.session_id]) if ts > cut.request.event_ts}
        for product in cut.next_products:
            assert product not in recent and later[product] < test_at


def test_outcome_keywords_are_the_candidates_nearest_to_the_next_products() -> None:
    import numpy as np

    products = read_rees46(REES46)[:3]
    ids = [p.product_id for p in products]
    eye = np.eye(4, dtype=np.float32)
    keywords = [Keyword(k, "category", None, 1) for k in ("lamp", "sofa", "phone", "tv")]
    # Product 0 is a lamp, product 1 mostly a sofa and a little a phone, product 2 a phone.
    vectors = np.stack([eye[0], 0.8 * eye[1] + 0.6 * eye[2], eye[2]])
    catalog = Catalog(products, vectors, keywords, eye)
    assert outcome_keywords(["tv", "sofa", "lamp"], [ids[1], ids[0]], catalog) == ["sofa", "lamp"]
    assert outcome_keywords(["tv", "phone"], [ids[1]], catalog) == ["phone"]  # the nearest of the allowed ones
    assert outcome_keywords(["phone", "sofa"], [ids[2], ids[1]], catalog) == ["phone", "sofa"]
    assert outcome_keywords(["tv"], ["not-in-catalog"], catalog) == []
    # Within a theme's scope: a next product the placement could never show leads to no keyword.
    assert products[0].category != products[1].category
    lamps = Scope(categories=[str(products[0].category)])
    assert outcome_keywords(["tv", "sofa", "lamp"], [ids[1], ids[0]], catalog, lamps) == ["lamp"]
    assert outcome_keywords(["tv", "sofa", "lamp"], [ids[1]], catalog, lamps) == []


def test_outcomes_lead_a_placements_keywords_only_within_its_theme(rees46_catalog: Path, embedder_dir: Path) -> None:
    """The same cuts with and without outcomes: a keyword target changes only where a next product lies within what
    the placement's theme promises (its scope)."""
    from models.context import PlacementKind, context_facts
    from models.embedder import Embedder
    from models.themes import ThemeReader, seen_brands
    from onnx_export.dataset import build_examples
    from onnx_export.pipeline import catalog_teacher_for
    from streams.generator import coherence

    catalog = Catalog.load(rees46_catalog)
    events = load_events(REES46, limit=4000)
    test_at = split_time(events, 0.5)
    cuts = [c for c in with_outcomes(list(regen_cuts(events, Settings(), test_at)), events, test_at) if c.next_products]
    cuts = cuts[:60]
    teacher = catalog_teacher_for(catalog, events, test_at)
    embed = Embedder.load(embedder_dir, "CPUExecutionProvider", intra_op_threads=1).embed
    popular = teacher.popular_categories()
    led = build_examples(cuts, catalog, teacher, embed, popular=popular)
    plain = build_examples(
        [dataclasses.replace(c, next_products=()) for c in cuts], catalog, teacher, embed, popular=popular
    )
    reader = ThemeReader(p.category for p in catalog.products if p.category)
    changed = reachable_somewhere = 0
    for n, cut in enumerate(cuts):
        request, rules = augment(cut.request, catalog, popular, seed=13)  # build_examples' default seed
        for j in range(n * 8, n * 8 + 8, 2):  # a theme example, then its keywords example, per placement
            theme, keywords, without = led[j], led[j + 1], plain[j + 1]
            assert (theme.task, keywords.task, theme.session_id) == ("theme", "keywords", request.session_id)
            facts = context_facts(request.context, PlacementKind(theme.placement), rules, catalog.product)
            scope = reader.scope(theme.target, seen_brands(facts, request.context.brands))
            reachable = [p for p in cut.next_products if coherence.admits(scope, catalog.product(p))]
            reachable_somewhere += bool(reachable)
            if keywords.target != without.target:
                changed += 1
                assert reachable, (theme.target, cut.next_products)
    assert 0 < changed <= reachable_somewhere < 4 * len(cuts)  # some themes exclude every next product


def test_teacher_events_none_labels_with_the_teacher_as_the_generator_serves_it(
    rees46_catalog: Path, embedder_dir: Path, tmp_path: Path
) -> None:
    """``--teacher-events none`` (the default) labels with the catalog teacher the generator serves, which counts no
    co-occurrence: its explore placement has no neighbouring or popular category to send the shopper to. With
    ``training`` it counts the training events, and its explore themes name categories."""
    from models.context import PlacementKind
    from models.embedder import Embedder
    from onnx_export.pipeline import PipelineOptions, Shop, _shop_examples

    embedder = Embedder.load(embedder_dir, "CPUExecutionProvider", intra_op_threads=1)
    shop = Shop(REES46, rees46_catalog)
    explore: dict[str, set[str]] = {}
    for events in ("none", "training"):
        opts = PipelineOptions((shop,), tmp_path / events, quick=True, teacher_events=events)
        examples = _shop_examples(shop, opts, Settings(), embedder).examples
        explore[events] = {
            e.target for e in examples if e.task == "theme" and e.placement == PlacementKind.EXPLORE.value
        }
    assert explore["none"] == {"Explore something new"}
    assert len(explore["training"] - {"Explore something new"}) > 5
