"""A small real catalog (REES46 + Online Retail products, real embeddings, Qdrant local mode), built once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.catalog.artifacts import Catalog
from streams.catalog.build import BuildSummary, CatalogSource, build_catalog
from streams.catalog.products import ProductSource
from streams.catalog.qdrant_store import ProductStore
from streams.runtime.settings import Settings
from tests.conftest import ONLINE_RETAIL, REES46

REES46_PRODUCTS = 1500
ONLINE_RETAIL_PRODUCTS = 500


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory, embedder_dir: Path) -> tuple[Settings, BuildSummary]:
    out = tmp_path_factory.mktemp("catalog-small")
    settings = Settings(embedder_dir=embedder_dir, catalog_dir=out, qdrant_collection="test-products")
    sources = [
        CatalogSource(ProductSource.REES46, REES46, REES46_PRODUCTS),
        CatalogSource(ProductSource.ONLINE_RETAIL, ONLINE_RETAIL, ONLINE_RETAIL_PRODUCTS),
    ]
    summary = build_catalog(sources, out, settings, progress=False)
    return settings, summary


@pytest.fixture(scope="session")
def small_catalog(small_build: tuple[Settings, BuildSummary]) -> Catalog:
    settings, _ = small_build
    assert settings.catalog.catalog_dir is not None
    return Catalog.load(settings.catalog.catalog_dir)


@pytest.fixture(scope="session")
def store(small_build: tuple[Settings, BuildSummary]) -> Iterator[ProductStore]:
    """One client for the session: local mode allows one client per directory."""
    settings, _ = small_build
    with ProductStore.open(settings) as opened:
        yield opened
