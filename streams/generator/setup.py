"""Loading what the generator needs (catalog, vector store, planner) so that a missing part degrades.

No part is required: without a catalog the generator serves the control arm; without a reachable
Qdrant it plans pages and fills them traditionally, marked degraded; without a model it plans with the
catalog teacher. Each problem is logged once at start and reported in the pages it affects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from streams.catalog.artifacts import PRODUCTS_FILE, Catalog
from streams.catalog.exceptions import CatalogError
from streams.catalog.qdrant_store import ProductStore
from streams.contracts.catalog_update import CatalogUpdate
from streams.generator.assembly import StorefrontAssembler
from streams.generator.pipeline import Planner
from streams.generator.planners import build_planner
from streams.generator.ranking import load_ranker
from streams.generator.retrieval import KeywordRetriever, RetrievalError
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GeneratorParts:
    assembler: StorefrontAssembler
    planner: Planner | None = None
    retriever: KeywordRetriever | None = None
    store: ProductStore | None = None
    catalog: Catalog | None = None
    problems: list[str] = field(default_factory=list)
    _stock: dict[str, bool] = field(default_factory=dict)

    def apply_catalog_update(self, update: CatalogUpdate) -> None:
        """Stock changes reach the vector store (for every later search) and the retriever's overlay (at once)."""
        product = self.catalog.product(update.product_id) if self.catalog is not None else None
        in_stock = update.in_stock
        if in_stock is None:
            in_stock = self._stock.get(update.product_id, product.in_stock if product is not None else True)
        self._stock[update.product_id] = in_stock
        if self.retriever is not None:
            self.retriever.set_stock(update.product_id, in_stock)  # its overlay is the assembler's set too
        elif in_stock:
            self.assembler.unavailable.discard(update.product_id)
        else:
            self.assembler.unavailable.add(update.product_id)
        if self.store is not None:
            try:
                self.store.set_stock(update.product_id, in_stock, update.price)
            except Exception as exc:  # noqa: BLE001 - Qdrant down: the overlay still hides the product
                log.warning(
                    "catalog update not written to Qdrant", extra={"product_id": update.product_id, "error": str(exc)}
                )


def load_generator_parts(settings: Settings) -> GeneratorParts:
    catalog_dir = settings.catalog.catalog_dir
    if catalog_dir is None or not (catalog_dir / PRODUCTS_FILE).exists():
        problem = (
            f"no catalog at {catalog_dir} (VITRINE_CATALOG_DIR unset, or `vitrine catalog` not run): control arm only"
        )
        log.warning(problem)
        assembler = StorefrontAssembler(
            retriever=None, products=lambda _: None, diversity_floor=settings.generator.diversity_floor
        )  # no catalog: the control arm's lists only, nothing for a learned ranker to know products by
        return GeneratorParts(assembler, problems=[problem])
    catalog = Catalog.load(catalog_dir)

    problems: list[str] = []
    store: ProductStore | None = None
    retriever: KeywordRetriever | None = None
    try:
        store = ProductStore.open(settings, catalog_dir)
    except CatalogError as exc:
        problems.append(f"vector store: {exc}")
    except Exception as exc:  # noqa: BLE001 - an unreachable server: pages degrade until it answers
        problems.append(f"vector store unreachable at start: {type(exc).__name__}: {exc}")
        store = ProductStore.connect(settings, catalog_dir)
    if store is not None:
        vectors = {k.keyword: catalog.keyword_vectors[i] for i, k in enumerate(catalog.keywords)}
        retriever = KeywordRetriever(
            client=store.client,
            collection=store.collection,
            keyword_vectors=vectors,
            filter_in_qdrant=not store.local,
            out_of_stock={p.product_id for p in catalog.products if not p.in_stock},
        )
        try:
            log.info("warmed the keyword cache", extra={"keywords": retriever.warm()})
        except RetrievalError as exc:
            problems.append(f"vector store: cache not warmed: {exc}")
    for problem in problems:
        log.warning(problem)
    assembler = StorefrontAssembler(
        retriever=retriever,
        products=catalog.product,
        items_per_placement=settings.generator.items_per_placement,
        diversity_floor=settings.generator.diversity_floor,
        unavailable=None if retriever is not None else {p.product_id for p in catalog.products if not p.in_stock},
        learned=load_ranker(settings.generator.ranker_model, problems),
    )
    planner = build_planner(settings, catalog, problems)
    return GeneratorParts(assembler, planner, retriever, store, catalog, problems)
