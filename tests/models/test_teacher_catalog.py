"""The offline teacher on real REES46 sessions: deterministic, and its keywords come from the vocabulary."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from models.candidates import CandidateIndex, placement_candidates
from models.context import PLACEMENTS, ContextFacts, MerchRules, context_facts, format_keywords, render
from models.teacher import TeacherInput
from models.teacher_catalog import CatalogTeacher, plural
from onnx_export.dataset import load_events, regen_cuts, split_time
from streams.catalog.artifacts import Catalog
from streams.catalog.products import read_rees46
from streams.catalog.vocabulary import build_vocabulary
from streams.runtime.settings import Settings

SHARED_DATA = Path(os.environ.get("VITRINE_SHARED_DATA", "/work/shared/data"))
REES46 = SHARED_DATA / "rees46" / "2019-Oct-head.csv"
N_EVENTS = 4000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """Products and vocabulary from the real log; seeded stand-in vectors (the teacher only needs candidates)."""
    products = read_rees46(REES46)
    keywords = build_vocabulary(products)
    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return Catalog(products, unit(len(products)), keywords, unit(len(keywords)))


def _teacher(catalog: Catalog) -> CatalogTeacher:
    events = load_events(REES46, limit=N_EVENTS)
    return CatalogTeacher.build(
        keywords=catalog.keywords, products=((p.category, p.price) for p in catalog.products), events=events
    )


@pytest.fixture(scope="module")
def contexts(catalog: Catalog) -> list[tuple[TeacherInput, list[str]]]:
    events = load_events(REES46, limit=N_EVENTS)
    cuts = list(regen_cuts(events, Settings(), split_time(events, 0.2)))[:60]
    index = CandidateIndex(catalog.keywords, catalog.keyword_vectors)
    out = []
    for i, cut in enumerate(cuts):
        rules = [
            None,
            MerchRules(campaign="summer sale"),
            MerchRules(exclude=tuple(cut.request.context.categories[:1])),
        ][i % 3]
        for placement in PLACEMENTS:
            facts = context_facts(cut.request.context, placement, rules, catalog.product)
            vectors = np.stack(
                [catalog.product_vectors[catalog.product_index(r.product_id)] for r in cut.request.context.recent]
            )
            out.append((TeacherInput(render(facts), facts), placement_candidates(index, facts, vectors, vectors[0])))
    return out


def test_teacher_is_deterministic(catalog: Catalog, contexts: list[tuple[TeacherInput, list[str]]]) -> None:
    inputs, candidates = [c for c, _ in contexts], [k for _, k in contexts]
    a, b = _teacher(catalog), _teacher(catalog)
    themes = a.themes(inputs)
    assert themes == b.themes(inputs)
    assert a.keywords(inputs, themes, candidates) == b.keywords(inputs, themes, candidates)
    assert len(set(themes)) > 10  # different sessions and placements get different themes


def test_teacher_keywords_are_vocabulary_candidates(
    catalog: Catalog, contexts: list[tuple[TeacherInput, list[str]]]
) -> None:
    teacher = _teacher(catalog)
    inputs, candidates = [c for c, _ in contexts], [k for _, k in contexts]
    vocabulary = {k.keyword for k in catalog.keywords}
    category_of = {k.keyword: k.category for k in catalog.keywords}
    for inp, cands, kws in zip(
        inputs, candidates, teacher.keywords(inputs, teacher.themes(inputs), candidates), strict=True
    ):
        assert set(kws) <= set(cands) <= vocabulary
        assert 3 <= len(kws) <= 5
        format_keywords(kws)  # writable in the student's output format
        for kw in kws:
            category = category_of[kw]
            assert not any(category and category.startswith(e) for e in inp.facts.rules.exclude)


def test_rules_shape_the_themes(catalog: Catalog, contexts: list[tuple[TeacherInput, list[str]]]) -> None:
    teacher = _teacher(catalog)
    facts: ContextFacts = next(c.facts for c, _ in contexts if c.facts.items and c.facts.items[0].category)
    boosted = dataclasses.replace(
        facts, placement=PLACEMENTS[0], rules=MerchRules(boost=("appliances.kitchen.washer",))
    )
    assert teacher.plan(boosted).theme == "Featured washers"
    deals = dataclasses.replace(facts, placement=PLACEMENTS[3], rules=MerchRules(campaign="Black Friday"))
    assert teacher.plan(deals).theme.startswith("Black friday: deals on ")


@pytest.mark.parametrize(
    ("noun", "expected"),
    [
        ("sofa", "sofas"),
        ("battery", "batteries"),
        ("watch", "watches"),
        ("air_heater", "air heaters"),
        ("shoes", "shoes"),
        ("clothing", "clothing"),
    ],
)
def test_plural(noun: str, expected: str) -> None:
    assert plural(noun) == expected
