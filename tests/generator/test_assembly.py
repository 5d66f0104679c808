"""Retrieval and assembly on the real catalog: real MiniLM vectors, Qdrant local mode, requests folded from REES46."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from models.context import PlacementKind
from streams.catalog.artifacts import Catalog
from streams.contracts.catalog_update import CatalogUpdate
from streams.contracts.regen import RankerCandidates, RegenRequest
from streams.contracts.storefront import Arm
from streams.datasets.readers import read_source
from streams.devtools.local_kafka import free_port
from streams.generator.assembly import PlacementPlan, StorefrontAssembler
from streams.generator.pipeline import StorefrontGenerator
from streams.generator.planners import build_planner
from streams.generator.retrieval import KeywordRetriever
from streams.generator.setup import GeneratorParts, load_generator_parts
from streams.runtime.settings import Settings
from streams.worker.fold import regeneration_requests
from tests.conftest import REES46, REPO


@pytest.fixture(scope="module")
def requests() -> list[RegenRequest]:
    """What the session worker would ask for, ranker candidates included, for the whole REES46 sample."""
    return regeneration_requests(read_source(REES46).records, Settings())


@pytest.fixture(scope="module")
def parts(rees46_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeneratorParts]:
    """One generator's parts for the module (loading warms the keyword cache); a private copy of the catalog."""
    copy = tmp_path_factory.mktemp("assembly") / "catalog"
    shutil.copytree(rees46_catalog, copy)
    parts = load_generator_parts(Settings(catalog_dir=copy, model_dir=None))
    yield parts
    if parts.store is not None:
        parts.store.close()


def _plan(keywords: list[str]) -> list[PlacementPlan]:
    return [PlacementPlan(kind=k, theme=f"theme {k.value}", keywords=keywords) for k in PlacementKind]


def test_pages_have_no_duplicates_and_show_what_the_session_bought_only_on_buy_again(
    parts: GeneratorParts, requests: list[RegenRequest]
) -> None:
    generator = StorefrontGenerator(assembler=parts.assembler, planner=parts.planner, control_share=0.0)
    bought = [r for r in requests if any(i.event_type in ("cart", "purchase") for i in r.context.recent)]
    sample = bought[:20] + requests[:40]
    updates = generator.generate(sample)
    for request, update in zip(sample, updates, strict=True):
        products = update.product_ids()
        assert len(products) == len(set(products))
        assert update.arm is Arm.TEACHER and not update.degraded
        carted = {i.product_id for i in request.context.recent if i.event_type in ("cart", "purchase")}
        bought = {i.product_id for i in request.context.recent if i.event_type == "purchase"}
        generated = {k.value for k in PlacementKind}
        assert not carted & {i.product_id for p in update.placements if p.kind in generated for i in p.items}
        assert not bought & {i.product_id for p in update.placements if p.kind != "buy_again" for i in p.items}
        assert all(len(p.items) == 6 for p in update.placements if p.kind in {k.value for k in PlacementKind})
        assert all(6 <= len(p.items) <= 18 for p in update.placements)  # own shelves span up to 3 placements
    retrieved = sum(i.source.value == "retrieval" for u in updates for p in u.placements for i in p.items)
    assert retrieved > len(updates)  # the plans' keywords, not only the ranker lists, fill the pages


def test_keywords_retrieve_products_of_their_meaning(parts: GeneratorParts) -> None:
    assert parts.retriever is not None and parts.catalog is not None
    (hits,) = parts.retriever.search([["samsung smartphone"]])
    top = [parts.catalog.product(h.product_id) for h in hits[:5]]
    assert all(p is not None and p.category == "electronics.smartphone" for p in top), top
    assert any(p is not None and p.brand == "samsung" for p in top)


def test_out_of_stock_is_hidden_at_once_and_a_restock_clears_the_cache(
    parts: GeneratorParts, requests: list[RegenRequest]
) -> None:
    retriever = parts.retriever
    assert retriever is not None and parts.store is not None
    (before,) = retriever.search([["samsung smartphone"]])
    gone = before[0].product_id
    parts.apply_catalog_update(CatalogUpdate(product_id=gone, in_stock=False, ts=1))
    searches = retriever.stats.searches
    (after,) = retriever.search([["samsung smartphone"]])
    assert gone not in {h.product_id for h in after}
    assert retriever.stats.searches == searches  # served from the cache, filtered by the overlay
    # The vector store itself was told: its in-stock filter excludes the product too.
    vector = retriever.keyword_vectors["samsung smartphone"]
    assert gone not in {h.product_id for h in parts.store.search(vector, limit=50, in_stock_only=True)}
    assert gone in {h.product_id for h in parts.store.search(vector, limit=50, in_stock_only=False)}

    # Whatever proposes it (here the ranker's popularity list, which knows nothing of stock), it stays off pages.
    ranker = RankerCandidates(popular=[(gone, 99.0), *requests[-1].ranker.popular])
    page = parts.assembler.assemble(replace(requests[-1], ranker=ranker), arm=Arm.CONTROL)
    assert gone not in page.product_ids() and len(page.product_ids()) > 6

    invalidations = retriever.stats.invalidations
    parts.apply_catalog_update(CatalogUpdate(product_id=gone, in_stock=True, ts=2))
    assert retriever.stats.invalidations == invalidations + 1
    (restocked,) = retriever.search([["samsung smartphone"]])
    assert retriever.stats.searches == searches + 1  # the cache was dropped: a real search again
    assert restocked[0].product_id == gone


def test_unreachable_qdrant_degrades_to_the_traditional_page(
    parts: GeneratorParts, requests: list[RegenRequest]
) -> None:
    assert parts.retriever is not None
    dead = QdrantClient(url=f"http://127.0.0.1:{free_port()}", timeout=2)
    retriever = KeywordRetriever(
        client=dead, collection="vitrine-products", keyword_vectors=parts.retriever.keyword_vectors
    )
    assembler = StorefrontAssembler(retriever=retriever, products=parts.assembler.products)
    request = next(r for r in requests if r.ranker.covisited)
    update = assembler.assemble(request, arm=Arm.TEACHER, plans=_plan(["samsung smartphone", "smartphone"]))
    assert update.degraded
    assert update.degraded_reasons[0].startswith("retrieval: Qdrant search failed")
    generated = [p for p in update.placements if p.kind in {k.value for k in PlacementKind}]
    assert generated and all(p.fallback and len(p.items) == 6 for p in generated)
    assert {i.source.value for p in generated for i in p.items} <= {"covisitation", "category", "popularity"}


def test_a_corrupt_or_missing_model_degrades_to_the_teacher_with_a_reason(
    rees46_catalog: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = tmp_path / "student"
    shutil.copytree(REPO / "models" / "student", corrupt)
    (corrupt / "encoder_model.onnx").write_bytes(b"not an onnx model")
    catalog = Catalog.load(rees46_catalog)
    for model_dir in (corrupt, tmp_path / "missing"):
        problems: list[str] = []
        with caplog.at_level(logging.WARNING, logger="streams.generator.planners"):
            planner = build_planner(Settings(catalog_dir=rees46_catalog, model_dir=model_dir), catalog, problems)
        assert planner is not None and planner.arm is Arm.TEACHER
        assert any(p.startswith("model: ") for p in problems), problems
        assert "student model not loaded" in caplog.text
    healthy = build_planner(Settings(catalog_dir=rees46_catalog, model_dir=REPO / "models" / "student"), catalog, [])
    assert healthy is not None and healthy.arm is Arm.GENERATIVE and healthy.version


def test_the_generator_serves_with_a_corrupt_ranker_model_and_uses_a_good_one(
    rees46_catalog: Path, tmp_path: Path, requests: list[RegenRequest]
) -> None:
    """VITRINE_RANKER_MODEL pointing at garbage: the generator starts, says why, and fuses by weighted reciprocal
    rank; pointing at the shipped REES46 model: pages are ordered by it."""
    corrupt = tmp_path / "ranker"
    shutil.copytree(REPO / "models" / "ranker" / "rees46", corrupt)
    (corrupt / "ranker.txt").write_text("not a model")
    copy = tmp_path / "catalog"
    shutil.copytree(rees46_catalog, copy)
    pages = {}
    for name, model in (("corrupt", corrupt), ("shipped", REPO / "models" / "ranker" / "rees46")):
        parts = load_generator_parts(Settings(catalog_dir=copy, model_dir=None, ranker_model=model))
        try:
            assert (parts.assembler.learned is None) == (name == "corrupt")
            assert any(p.startswith("ranker: unreadable ranker model") for p in parts.problems) == (name == "corrupt")
            generator = StorefrontGenerator(assembler=parts.assembler, planner=parts.planner, control_share=0.0)
            pages[name] = [u.product_ids() for u in generator.generate(requests[-20:])]
        finally:
            if parts.store is not None:
                parts.store.close()
    assert pages["corrupt"] != pages["shipped"]
