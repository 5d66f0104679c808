"""The catalog job end to end on real products: artifacts, vectors, vocabulary and the Qdrant collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.catalog.artifacts import Catalog
from streams.catalog.build import BuildSummary
from streams.catalog.exceptions import CatalogError
from streams.catalog.qdrant_store import ProductStore, point_id
from streams.catalog.vocabulary import KeywordKind
from streams.cli import main
from streams.runtime.settings import Settings
from tests.catalog.conftest import ONLINE_RETAIL_PRODUCTS, REES46_PRODUCTS


def test_artifacts_round_trip(small_catalog: Catalog, small_build: tuple[Settings, BuildSummary]) -> None:
    _, summary = small_build
    assert len(small_catalog.products) == REES46_PRODUCTS + ONLINE_RETAIL_PRODUCTS == summary.n_products
    assert small_catalog.product_vectors.shape == (summary.n_products, 384)
    assert small_catalog.keyword_vectors.shape == (len(small_catalog.keywords), 384)
    for vectors in (small_catalog.product_vectors, small_catalog.keyword_vectors):
        assert vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert small_catalog.manifest is not None and small_catalog.manifest.n_keywords == len(small_catalog.keywords)
    first = small_catalog.products[0]
    assert small_catalog.product(first.product_id) == first
    assert small_catalog.product("no-such-product") is None
    assert small_catalog.keyword_index(small_catalog.keywords[3].keyword) == 3


def test_product_vectors_carry_meaning(small_catalog: Catalog) -> None:
    """The keyword "samsung smartphone" is nearer Samsung phones than kitchen goods and tea lights."""
    query = small_catalog.keyword_vectors[small_catalog.keyword_index("samsung smartphone")]  # type: ignore[index]
    scores = small_catalog.product_vectors @ query
    top = [small_catalog.products[i] for i in np.argsort(-scores)[:10]]
    assert all(p.category == "electronics.smartphone" for p in top)
    assert any(p.brand == "samsung" for p in top[:3])
    kitchen = [i for i, p in enumerate(small_catalog.products) if (p.category or "").startswith("appliances.kitchen")]
    phones = [i for i, p in enumerate(small_catalog.products) if p.title == "samsung smartphone"]
    assert kitchen and phones
    assert scores[phones].min() > scores[kitchen].max()


def test_vocabulary_of_the_catalog(small_catalog: Catalog) -> None:
    words = [k.keyword for k in small_catalog.keywords]
    assert len(words) == len(set(words))
    assert {k.kind for k in small_catalog.keywords} == {kind.value for kind in KeywordKind}
    assert all(w == w.lower() and 1 <= len(w.split()) <= 4 for w in words)
    by_word = {k.keyword: k for k in small_catalog.keywords}
    assert by_word["samsung smartphone"].kind == "brand_category"
    assert by_word["samsung smartphone"].category == "electronics.smartphone"
    assert by_word["smartphone"].kind == "category"
    assert by_word["samsung"].kind == "brand"
    assert by_word["t-light holder"].kind == "phrase" and by_word["t-light holder"].count >= 3


def test_qdrant_holds_every_product(store: ProductStore, small_catalog: Catalog) -> None:
    assert store.count() == len(small_catalog.products)
    product = small_catalog.products[10]
    point = store.client.retrieve(store.collection, [point_id(product.product_id)], with_payload=True)[0]
    assert point.payload is not None and point.payload["product_id"] == product.product_id
    assert point.payload["category_path"] == product.category_path


def test_in_stock_filter_after_set_stock(store: ProductStore, small_catalog: Catalog) -> None:
    query = small_catalog.keyword_vectors[small_catalog.keyword_index("smartphone")]  # type: ignore[index]
    before = store.search(query, limit=20)
    gone = [hit.product_id for hit in before[:5]]
    for pid in gone:
        assert store.set_stock(pid, False, price=1.0)
    after = store.search(query, limit=200)
    assert after and not set(gone) & {hit.product_id for hit in after}
    assert all(hit.payload["in_stock"] for hit in after)
    unfiltered = store.search(query, limit=20, in_stock_only=False)
    back = {hit.product_id: hit.payload for hit in unfiltered}
    assert all(back[pid]["in_stock"] is False and back[pid]["price"] == 1.0 for pid in gone)
    assert store.set_stock(gone[0], True)
    assert gone[0] in {hit.product_id for hit in store.search(query, limit=20)}
    assert not store.set_stock("no-such-product", False)


def test_category_filter(store: ProductStore, small_catalog: Catalog) -> None:
    query = small_catalog.keyword_vectors[small_catalog.keyword_index("smartphone")]  # type: ignore[index]
    hits = store.search(query, limit=15, category="appliances")
    assert hits and all(hit.payload["category"].startswith("appliances.") for hit in hits)


def test_missing_collection_is_a_readable_error(small_build: tuple[Settings, BuildSummary], tmp_path: Path) -> None:
    settings, _ = small_build
    with pytest.raises(
        CatalogError, match=r"collection 'test-products' not found at .*; build it with `vitrine catalog`"
    ):
        ProductStore.open(settings, tmp_path)
    with pytest.raises(CatalogError, match="VITRINE_QDRANT_URL"):
        ProductStore.connect(Settings(catalog_dir=None))


def test_cli_builds_a_catalog_from_a_product_file(
    tmp_path: Path, embedder_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    products = tmp_path / "products.csv"
    products.write_text(
        "product_id,title,category,brand,price,in_stock\n"
        "p1,Wireless Headphones,electronics.audio.headphone,sony,99.5,true\n"
        "p2,Running Shoes,apparel.shoes,nike,59,false\n"
        "p1,Duplicate Row,electronics.audio.headphone,sony,1,true\n"
    )
    monkeypatch.setenv("VITRINE_EMBEDDER_DIR", str(embedder_dir))
    out = tmp_path / "catalog"
    assert main(["catalog", "--products", str(products), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "products: 2 (file 2; 1 duplicate ids dropped)" in printed
    assert f"qdrant: collection 'vitrine-products' at {out / 'qdrant'}" in printed
    catalog = Catalog.load(out)
    assert [p.in_stock for p in catalog.products] == [True, False]


@pytest.mark.parametrize("command", ["catalog", "export-embedder"])
def test_cli_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: vitrine {command}" in capsys.readouterr().out


def test_cli_missing_source_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["catalog", "--products", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"vitrine: error: {tmp_path / 'nope.csv'}: no such file\n"
