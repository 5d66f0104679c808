"""The products' Qdrant collection: created and filled by the catalog job, stock kept current at run time.

Without ``VITRINE_QDRANT_URL`` Qdrant runs embedded (local mode) on disk at ``<catalog_dir>/qdrant``; one
process at a time may open that directory. Point ids are a stable hash of the product id, so re-running the
job or a stock update addresses the same point everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

from streams.catalog.artifacts import QDRANT_DIR
from streams.catalog.exceptions import CatalogError
from streams.catalog.products import Product
from streams.runtime.settings import Settings

# Server-side payload indexes for the filters retrieval uses (local mode ignores them, with a warning).
PAYLOAD_INDEXES = {
    "in_stock": models.PayloadSchemaType.BOOL,
    "category": models.PayloadSchemaType.KEYWORD,
    "category_path": models.PayloadSchemaType.KEYWORD,
    "brand": models.PayloadSchemaType.KEYWORD,
    "product_id": models.PayloadSchemaType.KEYWORD,
}


def point_id(product_id: str) -> int:
    """Stable unsigned 63-bit id for a product id (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(product_id.encode(), digest_size=8).digest(), "big") >> 1


def payload(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "title": product.title,
        "category": product.category,
        "category_path": product.category_path,
        "brand": product.brand,
        "price": product.price,
        "in_stock": product.in_stock,
    }


@dataclass(frozen=True, slots=True)
class ProductHit:
    product_id: str
    score: float
    payload: dict[str, Any]


class ProductStore:
    def __init__(self, client: QdrantClient, collection: str, *, where: str, local: bool) -> None:
        self.client = client
        self.collection = collection
        self.where = where
        self.local = local

    @classmethod
    def connect(cls, settings: Settings, catalog_dir: Path | None = None) -> ProductStore:
        """The server at ``qdrant_url``, or local mode under the catalog directory; the collection may not exist."""
        if settings.catalog.qdrant_url:
            key = settings.catalog.qdrant_api_key.get_secret_value() if settings.catalog.qdrant_api_key else None
            client = QdrantClient(url=settings.catalog.qdrant_url, api_key=key)
            return cls(client, settings.catalog.qdrant_collection, where=settings.catalog.qdrant_url, local=False)
        catalog_dir = catalog_dir or settings.catalog.catalog_dir
        if catalog_dir is None:
            raise CatalogError("no Qdrant: set VITRINE_QDRANT_URL, or VITRINE_CATALOG_DIR for local mode")
        path = catalog_dir / QDRANT_DIR
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # the local storage is locked by another client
            raise CatalogError(f"{path}: {exc}") from exc
        return cls(client, settings.catalog.qdrant_collection, where=str(path), local=True)

    @classmethod
    def open(cls, settings: Settings, catalog_dir: Path | None = None) -> ProductStore:
        """Like ``connect``, but the collection must already exist."""
        store = cls.connect(settings, catalog_dir)
        if not store.client.collection_exists(store.collection):
            store.close()
            raise CatalogError(
                f"Qdrant collection {store.collection!r} not found at {store.where}; build it with `vitrine catalog`"
            )
        return store

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ProductStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recreate(self, dim: int) -> None:
        """An empty collection (cosine, ``dim``), replacing any previous one."""
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)
        self.client.create_collection(
            self.collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
        )
        if not self.local:
            for field_name, schema in PAYLOAD_INDEXES.items():
                self.client.create_payload_index(self.collection, field_name, schema)

    def upsert(
        self,
        products: Sequence[Product],
        vectors: npt.NDArray[np.float32],
        *,
        batch_size: int = 256,
        progress: Callable[[int], object] | None = None,
    ) -> None:
        if vectors.shape[0] != len(products):
            raise CatalogError(f"{vectors.shape[0]} vectors for {len(products)} products")
        for start in range(0, len(products), batch_size):
            chunk = products[start : start + batch_size]
            points = [
                models.PointStruct(id=point_id(p.product_id), vector=v.tolist(), payload=payload(p))
                for p, v in zip(chunk, vectors[start : start + batch_size], strict=True)
            ]
            self.client.upsert(self.collection, points=points, wait=True)
            if progress is not None:
                progress(len(chunk))

    def count(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def set_stock(self, product_id: str, in_stock: bool, price: float | None = None) -> bool:
        """Update a product's stock (and price, if given); False when the collection has no such product."""
        pid = point_id(product_id)
        if not self.client.retrieve(self.collection, [pid], with_payload=False, with_vectors=False):
            return False
        update: dict[str, Any] = {"in_stock": in_stock}
        if price is not None:
            update["price"] = price
        self.client.set_payload(self.collection, payload=update, points=[pid], wait=True)
        return True

    def search(
        self,
        vector: npt.NDArray[np.float32],
        limit: int = 24,
        *,
        in_stock_only: bool = True,
        category: str | None = None,
    ) -> list[ProductHit]:
        """Nearest products, optionally only those in stock and under a category path prefix."""
        must: list[models.Condition] = []
        if in_stock_only:
            must.append(models.FieldCondition(key="in_stock", match=models.MatchValue(value=True)))
        if category:
            must.append(models.FieldCondition(key="category_path", match=models.MatchValue(value=category)))
        response = self.client.query_points(
            self.collection,
            query=vector.tolist(),
            query_filter=models.Filter(must=must) if must else None,
            limit=limit,
            with_payload=True,
        )
        return [
            ProductHit(str((p.payload or {})["product_id"]), float(p.score), p.payload or {}) for p in response.points
        ]
