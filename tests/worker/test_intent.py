"""Intent spaces: taxonomy vectors and catalog embeddings projected to the intent dimension."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.contracts.events import ClickEvent
from streams.worker.intent import (
    INTENT_DIM,
    PRODUCT_IDS_FILE,
    PRODUCT_VECTORS_FILE,
    CatalogIntent,
    TaxonomyIntent,
    Vector,
    load_intent_space,
)


def ev(product_id: str | None = "p1", event_type: str = "view", **fields: Any) -> ClickEvent:
    data: dict[str, Any] = {"event_id": "e", "session_id": "s", "event_type": event_type, "ts": 0}
    if product_id is not None:
        data["product_id"] = product_id
    return ClickEvent(**{**data, **fields})


def vec(space: TaxonomyIntent | CatalogIntent, **kw: Any) -> Vector:
    v = space.vector(ev(**kw))
    assert v is not None
    return v


def cos(a: Vector, b: Vector) -> float:
    return float(a.dot(b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- taxonomy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"category": "electronics.audio.headphone", "brand": "sony"},
        {"category": "electronics"},
        {"brand": "acme"},
        {},  # nothing but the product id
    ],
)
def test_taxonomy_vectors_are_unit(fields: dict[str, Any]) -> None:
    v = vec(TaxonomyIntent(), **fields)
    assert v.shape == (INTENT_DIM,)
    assert v.dtype == np.float32
    assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)


def test_same_category_and_brand_give_the_same_vector() -> None:
    space = TaxonomyIntent()
    a = vec(space, product_id="1", category="kids.toys", brand="lego", event_type="view")
    b = vec(space, product_id="2", category="kids.toys", brand="lego", event_type="purchase", price=9.0)
    assert np.array_equal(a, b)
    c = vec(space, product_id="3", category="kids.toys", brand="mattel")
    assert not np.array_equal(a, c)
    assert cos(a, c) > 0.6  # the brand is a smaller component than the category


def test_vectors_are_deterministic_and_read_only() -> None:
    a = vec(TaxonomyIntent(), category="a.b.c", brand="z")
    b = vec(TaxonomyIntent(), category="a.b.c", brand="z")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1.0


def test_product_without_taxonomy_uses_its_id() -> None:
    space = TaxonomyIntent()
    a, a2, b = vec(space, product_id="111"), vec(space, product_id="111"), vec(space, product_id="222")
    assert np.array_equal(a, a2)
    assert abs(cos(a, b)) < 0.6


def test_siblings_are_closer_than_unrelated_categories() -> None:
    space = TaxonomyIntent()
    parents = ["electronics.audio", "furniture.kitchen", "apparel.shoes", "kids.toys", "auto.accessories", "sport.bike"]
    leaves = ["alpha", "beta", "gamma", "delta"]
    sibling, unrelated = [], []
    for parent in parents:
        for x, y in itertools.combinations(leaves, 2):
            sibling.append(cos(vec(space, category=f"{parent}.{x}"), vec(space, category=f"{parent}.{y}")))
    for p, q in itertools.combinations(parents, 2):
        for x in leaves:
            unrelated.append(cos(vec(space, category=f"{p}.{x}"), vec(space, category=f"{q}.{x}")))
    assert np.mean(sibling) > 0.5
    assert abs(np.mean(unrelated)) < 0.2
    assert np.mean(sibling) - np.mean(unrelated) > 0.4
    assert min(sibling) > max(unrelated) - 0.3


@pytest.mark.parametrize("space", [TaxonomyIntent()])
def test_search_has_no_taxonomy_vector(space: TaxonomyIntent) -> None:
    assert space.vector(ev(None, "search", query="shoes")) is None
    assert space.vector(ev(None, "search", query="shoes", category="apparel.shoes", brand="nike")) is None


# --- catalog ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(42)
    base = rng.standard_normal((20, 384)).astype(np.float32)
    near = base[:5] + 0.05 * rng.standard_normal((5, 384)).astype(np.float32)
    vectors = np.vstack([base, base[:1], near])  # row 20 duplicates row 0, rows 21..25 are near-duplicates
    ids = [f"sku{i}" for i in range(len(vectors))]
    return vectors, ids


def test_catalog_vectors_are_unit_and_identical_for_identical_products(catalog: tuple[np.ndarray, list[str]]) -> None:
    space = CatalogIntent(*catalog)
    for i in range(len(catalog[1])):
        v = vec(space, product_id=f"sku{i}")
        assert v.shape == (INTENT_DIM,)
        assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)
    # identical rows: identical up to BLAS summation order
    np.testing.assert_allclose(vec(space, product_id="sku0"), vec(space, product_id="sku20"), rtol=0, atol=1e-6)
    assert cos(vec(space, product_id="sku0"), vec(space, product_id="sku20")) == pytest.approx(1.0, abs=1e-6)


def test_catalog_projection_keeps_cosines(catalog: tuple[np.ndarray, list[str]]) -> None:
    vectors, _ = catalog
    space = CatalogIntent(*catalog)
    for i in range(5):
        assert cos(vec(space, product_id=f"sku{i}"), vec(space, product_id=f"sku{21 + i}")) > 0.9
    unrelated = [
        abs(cos(vec(space, product_id=f"sku{i}"), vec(space, product_id=f"sku{j}")))
        for i, j in itertools.combinations(range(20), 2)
    ]
    assert np.mean(unrelated) < 0.2
    # a generic pair of catalogue vectors keeps its cosine within JL distortion
    errors = [
        abs(
            cos(vectors[i], vectors[21 + i])
            - cos(vec(space, product_id=f"sku{i}"), vec(space, product_id=f"sku{21 + i}"))
        )
        for i in range(5)
    ]
    assert max(errors) < 0.1


def test_catalog_is_deterministic(catalog: tuple[np.ndarray, list[str]]) -> None:
    a, b = CatalogIntent(*catalog), CatalogIntent(*catalog)
    assert np.array_equal(vec(a, product_id="sku3"), vec(b, product_id="sku3"))


def test_unknown_product_falls_back_to_taxonomy(catalog: tuple[np.ndarray, list[str]]) -> None:
    space, taxonomy = CatalogIntent(*catalog), TaxonomyIntent()
    fields = {"product_id": "not-in-catalog", "category": "a.b", "brand": "c"}
    assert np.array_equal(vec(space, **fields), vec(taxonomy, **fields))
    assert space.vector(ev(None, "search", query="x")) is None


def test_catalog_rejects_mismatched_ids(catalog: tuple[np.ndarray, list[str]]) -> None:
    vectors, ids = catalog
    with pytest.raises(ValueError, match="do not match"):
        CatalogIntent(vectors, ids[:-1])
    with pytest.raises(ValueError, match="do not match"):
        CatalogIntent(vectors[0], ids[:1])


def test_load_intent_space_picks_the_catalog(tmp_path: Path, catalog: tuple[np.ndarray, list[str]]) -> None:
    vectors, _ = catalog
    np.save(tmp_path / PRODUCT_VECTORS_FILE, vectors)
    ids = list(range(1000, 1000 + len(vectors)))  # numeric ids in JSON are matched as strings
    (tmp_path / PRODUCT_IDS_FILE).write_text(json.dumps(ids))
    space = load_intent_space(tmp_path)
    assert isinstance(space, CatalogIntent)
    expected = CatalogIntent(vectors, [str(i) for i in ids])
    assert np.array_equal(vec(space, product_id="1003"), vec(expected, product_id="1003"))
    assert not np.array_equal(vec(space, product_id="1003"), vec(TaxonomyIntent(), product_id="1003"))


def test_load_intent_space_without_a_catalog(tmp_path: Path) -> None:
    assert isinstance(load_intent_space(None), TaxonomyIntent)
    assert isinstance(load_intent_space(tmp_path), TaxonomyIntent)
    assert isinstance(load_intent_space(tmp_path / "missing"), TaxonomyIntent)
