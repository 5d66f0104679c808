"""The two retrieval backends answer alike (the pattern of qdrant-client's ``tests/congruence_tests``): one
catalog and one set of keywords, searched through Qdrant (local mode, what serving runs without a server) and
through the exact in-memory backend the offline evaluation runs; the same products, in the same order, with
the same scores, stock and exclusions applied by both."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from qdrant_client import QdrantClient

from streams.catalog.products import Product
from streams.catalog.qdrant_store import ProductStore
from streams.generator.retrieval import ExactRetriever, Hit, KeywordRetriever, Retriever

DIM = 32
N_PRODUCTS = 400
N_KEYWORDS = 60


def _unit(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def catalog() -> tuple[list[Product], npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]]]:
    rng = np.random.default_rng(11)
    products = [
        Product(f"p{i}", f"product {i}", f"cat{i % 7}", None, 1.0 + i, in_stock=i % 9 != 0) for i in range(N_PRODUCTS)
    ]
    keywords = {f"kw{j}": v for j, v in enumerate(_unit(rng, N_KEYWORDS))}
    return products, _unit(rng, N_PRODUCTS), keywords


@pytest.fixture(scope="module")
def backends(
    catalog: tuple[list[Product], npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]]],
) -> Iterator[tuple[Retriever, Retriever]]:
    products, vectors, keywords = catalog
    store = ProductStore(QdrantClient(":memory:"), "congruence", where=":memory:", local=True)
    store.recreate(DIM)
    store.upsert(products, vectors)
    out_of_stock = {p.product_id for p in products if not p.in_stock}
    qdrant = KeywordRetriever(
        client=store.client, collection="congruence", keyword_vectors=keywords, out_of_stock=set(out_of_stock)
    )
    exact = ExactRetriever([p.product_id for p in products], vectors, keywords, out_of_stock=set(out_of_stock))
    yield qdrant, exact
    store.close()


def _same(a: list[list[Hit]], b: list[list[Hit]]) -> None:
    assert [[h.product_id for h in placement] for placement in a] == [[h.product_id for h in p] for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert np.allclose([h.score for h in pa], [h.score for h in pb], atol=1e-5)
        assert [h.keyword for h in pa] == [h.keyword for h in pb]


def test_both_backends_return_the_same_products_in_the_same_order(backends: tuple[Retriever, Retriever]) -> None:
    qdrant, exact = backends
    placements = [[f"kw{j}", f"kw{j + 1}", f"kw{j + 2}"] for j in range(0, N_KEYWORDS - 2, 3)]
    a, b = qdrant.search(placements), exact.search(placements)
    assert all(len(p) >= 24 for p in a)  # each keyword's 24, unioned
    _same(a, b)
    assert not {h.product_id for p in a for h in p} & qdrant.out_of_stock  # stock filtered by both


def test_exclusions_and_unknown_keywords_agree(backends: tuple[Retriever, Retriever]) -> None:
    qdrant, exact = backends
    placements = [["kw3", "kw4"], ["kw5", "not-a-keyword"], []]
    first = exact.search(placements)
    exclude = {h.product_id for h in first[0][:5]}
    a, b = qdrant.search(placements, exclude=exclude), exact.search(placements, exclude=exclude)
    _same(a, b)
    assert not exclude & {h.product_id for h in a[0]}
    assert b[2] == []


def test_the_congruence_check_can_fail(
    backends: tuple[Retriever, Retriever],
    catalog: tuple[list[Product], npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]]],
) -> None:
    """An exact backend over slightly different vectors (one product moved) no longer agrees with Qdrant."""
    qdrant, _ = backends
    products, vectors, keywords = catalog
    moved = vectors.copy()
    target = next(i for i, p in enumerate(products) if p.in_stock)
    moved[target] = keywords["kw0"]
    other = ExactRetriever([p.product_id for p in products], moved, keywords, out_of_stock=set(qdrant.out_of_stock))
    with pytest.raises(AssertionError):
        _same(qdrant.search([["kw0"]]), other.search([["kw0"]]))


def test_a_universe_limits_the_exact_backend_to_admitted_products(
    catalog: tuple[list[Product], npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]]],
) -> None:
    products, vectors, keywords = catalog
    ids = [p.product_id for p in products]
    full = ExactRetriever(ids, vectors, keywords)
    known = ExactRetriever(ids, vectors, keywords, universe=set())
    assert known.search([["kw1"]]) == [[]]
    best = full.search([["kw1"]])[0]
    known.admit(best[3].product_id)
    assert [h.product_id for h in known.search([["kw1"]])[0]] == [best[3].product_id]  # the cache was renewed
    for hit in best[:2]:
        known.admit(hit.product_id)
    assert [h.product_id for h in known.search([["kw1"]])[0]] == [h.product_id for h in best[:4] if h != best[2]]
