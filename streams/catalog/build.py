"""The catalog job: sources -> products -> embeddings and keyword vocabulary -> artifacts -> Qdrant.

Run once per catalog change (``vitrine catalog``). It embeds with the same ONNX embedder the worker
uses, so product, keyword and run-time theme vectors live in one space. Exporting the embedder needs
the train extra, which serving never imports: callers that may export pass ``prepare_embedder``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.embedder import MODEL_FILE, Embedder, file_sha256
from streams.catalog.artifacts import Catalog, Manifest
from streams.catalog.exceptions import CatalogError
from streams.catalog.products import (
    Product,
    ProductSource,
    read_online_retail,
    read_product_file,
    read_rees46,
)
from streams.catalog.qdrant_store import ProductStore
from streams.catalog.vocabulary import build_vocabulary, keyword_counts
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

READERS = {
    ProductSource.REES46: read_rees46,
    ProductSource.ONLINE_RETAIL: read_online_retail,
    ProductSource.FILE: read_product_file,
}
EMBED_CHUNK = 1024  # texts per progress step; each chunk is length-sorted and batched by the embedder


@dataclass(frozen=True, slots=True)
class CatalogSource:
    kind: ProductSource
    path: Path
    limit: int | None = None  # at most this many products from this source (overrides the job's limit)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.path}"


@dataclass(slots=True)
class BuildSummary:
    out_dir: Path
    qdrant: str
    collection: str
    embedder_dir: Path
    provider: str
    per_source: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    n_products: int = 0
    keywords: Counter[str] = field(default_factory=Counter)
    exported_embedder: bool = False
    seconds: float = 0.0

    def lines(self) -> list[str]:
        sources = ", ".join(f"{name} {n:,}" for name, n in self.per_source.items())
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.keywords.items()))
        return [
            f"products: {self.n_products:,} ({sources}; {self.duplicates:,} duplicate ids dropped)",
            f"keywords: {sum(self.keywords.values()):,} ({kinds})",
            f"embedder: {self.embedder_dir} on {self.provider}" + (" (exported now)" if self.exported_embedder else ""),
            f"artifacts: {self.out_dir}",
            f"qdrant: collection {self.collection!r} at {self.qdrant}",
            f"seconds: {self.seconds:.1f}",
        ]


def read_products(
    sources: Sequence[CatalogSource], limit: int | None = None
) -> tuple[list[Product], Counter[str], int]:
    """Products of all sources, first source winning on a repeated id; per-source counts and duplicates."""
    products: dict[str, Product] = {}
    per_source: Counter[str] = Counter()
    duplicates = 0
    for source in sources:
        for product in READERS[source.kind](source.path, source.limit or limit):
            if product.product_id in products:
                duplicates += 1
                continue
            products[product.product_id] = product
            per_source[source.kind.value] += 1
    return list(products.values()), per_source, duplicates


def embed(embedder: Embedder, texts: Sequence[str], *, desc: str, progress: bool, batch_size: int = 64) -> np.ndarray:
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), EMBED_CHUNK):
            chunk = texts[start : start + EMBED_CHUNK]
            out[start : start + len(chunk)] = embedder.embed(chunk, batch_size)
            bar.update(len(chunk))
    return out


def build_catalog(
    sources: Sequence[CatalogSource],
    out_dir: Path,
    settings: Settings,
    *,
    limit: int | None = None,
    progress: bool = True,
    prepare_embedder: Callable[[Path], bool] | None = None,
) -> BuildSummary:
    """Build everything under ``out_dir`` (and the Qdrant collection); ``limit`` caps products per source."""
    started = time.perf_counter()
    if not sources:
        raise CatalogError("no product sources given")
    products, per_source, duplicates = read_products(sources, limit)
    if not products:
        raise CatalogError("the sources hold no products")
    exported = prepare_embedder(settings.catalog.embedder_dir) if prepare_embedder is not None else False
    embedder = Embedder.load(settings.catalog.embedder_dir, settings.generator.onnx_providers)
    product_vectors = embed(embedder, [p.embedding_text() for p in products], desc="products", progress=progress)
    keywords = build_vocabulary(products)
    keyword_vectors = embed(embedder, [k.keyword for k in keywords], desc="keywords", progress=progress)

    manifest = Manifest(
        sources=[str(s) for s in sources],
        n_products=len(products),
        n_keywords=len(keywords),
        embedder={
            "dir": str(settings.catalog.embedder_dir),
            "sha256": file_sha256(settings.catalog.embedder_dir / MODEL_FILE),
        },
        collection=settings.catalog.qdrant_collection,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    Catalog(products, product_vectors, keywords, keyword_vectors, manifest).write(out_dir)

    with ProductStore.connect(settings, out_dir) as store:
        store.recreate(embedder.dim)
        with tqdm(total=len(products), desc="qdrant", unit="point", disable=not progress) as bar:
            store.upsert(products, product_vectors, progress=bar.update)
        where = store.where

    return BuildSummary(
        out_dir=out_dir,
        qdrant=where,
        collection=settings.catalog.qdrant_collection,
        embedder_dir=settings.catalog.embedder_dir,
        provider=embedder.provider,
        per_source=per_source,
        duplicates=duplicates,
        n_products=len(products),
        keywords=keyword_counts(keywords),
        exported_embedder=exported,
        seconds=time.perf_counter() - started,
    )
