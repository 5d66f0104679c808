"""Product -> intent-space vectors, looked up locally so no event ever waits on the network.

Two sources, one interface:

- ``TaxonomyIntent``: a deterministic vector per category path (each prefix of the path adds a
  hashed Gaussian direction, the brand a smaller one), so products in one category point the
  same way and siblings share the parent's component. Needs nothing but the event.
- ``CatalogIntent``: product embeddings written by the catalog job (``product_vectors.npy`` and
  ``product_ids.json`` in the catalog directory), reduced to the intent dimension by a fixed
  random projection (Johnson-Lindenstrauss keeps cosines). Unknown products fall back to the
  taxonomy.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from streams.catalog.artifacts import PRODUCT_IDS_FILE, PRODUCT_VECTORS_FILE
from streams.contracts.events import ClickEvent

INTENT_DIM = 64
Vector = npt.NDArray[np.float32]


_BRAND_WEIGHT = 0.5


class IntentSpace(Protocol):
    def vector(self, event: ClickEvent) -> Vector | None:
        """Unit vector for the event's product, or None when the event says nothing about one."""
        ...


@lru_cache(maxsize=65536)
def _hashed_direction(token: str) -> Vector:
    seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(INTENT_DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@lru_cache(maxsize=65536)
def _taxonomy_vector(category: str | None, brand: str | None, product_id: str | None) -> Vector | None:
    v = np.zeros(INTENT_DIM, dtype=np.float32)
    if category:
        parts = category.split(".")
        for depth in range(1, len(parts) + 1):
            v += _hashed_direction("c:" + ".".join(parts[:depth]))
    if brand:
        v += _BRAND_WEIGHT * _hashed_direction("b:" + brand)
    if not v.any():
        if product_id is None:
            return None
        v = _hashed_direction("p:" + product_id).copy()
    v /= np.linalg.norm(v)
    v.setflags(write=False)
    return v


class TaxonomyIntent:
    def vector(self, event: ClickEvent) -> Vector | None:
        if event.event_type == "search":
            return None
        return _taxonomy_vector(event.category, event.brand, event.product_id)


class CatalogIntent:
    def __init__(self, vectors: npt.NDArray[np.float32], product_ids: list[str], *, seed: int = 7) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(product_ids):
            raise ValueError(f"vectors {vectors.shape} do not match {len(product_ids)} product ids")
        projection = np.random.default_rng(seed).standard_normal((vectors.shape[1], INTENT_DIM)).astype(np.float32)
        reduced = vectors.astype(np.float32) @ projection
        reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
        reduced.setflags(write=False)
        self._rows = {pid: i for i, pid in enumerate(product_ids)}
        self._vectors = reduced
        self._fallback = TaxonomyIntent()

    @classmethod
    def load(cls, catalog_dir: Path) -> CatalogIntent:
        vectors = np.load(catalog_dir / PRODUCT_VECTORS_FILE, mmap_mode="r")
        ids = json.loads((catalog_dir / PRODUCT_IDS_FILE).read_text())
        return cls(np.asarray(vectors, dtype=np.float32), [str(i) for i in ids])

    def vector(self, event: ClickEvent) -> Vector | None:
        if event.product_id is not None and (row := self._rows.get(event.product_id)) is not None:
            return self._vectors[row]
        return self._fallback.vector(event)


def load_intent_space(catalog_dir: Path | None) -> IntentSpace:
    """Catalog vectors when the catalog job has written them, the taxonomy otherwise."""
    if catalog_dir is not None and (catalog_dir / PRODUCT_VECTORS_FILE).exists():
        return CatalogIntent.load(catalog_dir)
    return TaxonomyIntent()
