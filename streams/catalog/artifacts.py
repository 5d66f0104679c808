"""The catalog directory written by ``vitrine catalog`` and read by the worker, generator, teacher and eval.

Files (see notes/contracts.md): products.jsonl, product_ids.json + product_vectors.npy (row i is
product_ids[i]), keywords.json + keyword_vectors.npy (row i is keywords[i]), manifest.json, and
qdrant/ when Qdrant runs in local mode. Vectors are float32 and L2-normalised.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streams.catalog.exceptions import CatalogError
from streams.catalog.products import Product
from streams.catalog.vocabulary import Keyword

PRODUCTS_FILE = "products.jsonl"
PRODUCT_VECTORS_FILE = "product_vectors.npy"
PRODUCT_IDS_FILE = "product_ids.json"
KEYWORDS_FILE = "keywords.json"
KEYWORD_VECTORS_FILE = "keyword_vectors.npy"
MANIFEST_FILE = "manifest.json"
QDRANT_DIR = "qdrant"

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Manifest:
    sources: list[str]
    n_products: int
    n_keywords: int
    embedder: dict[str, str]
    collection: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Catalog:
    products: list[Product]
    product_vectors: Vectors
    keywords: list[Keyword]
    keyword_vectors: Vectors
    manifest: Manifest | None = None
    _by_id: dict[str, int] = field(init=False, repr=False)
    _by_keyword: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.product_vectors.shape[0] != len(self.products):
            raise CatalogError(f"{self.product_vectors.shape[0]} product vectors for {len(self.products)} products")
        if self.keyword_vectors.shape[0] != len(self.keywords):
            raise CatalogError(f"{self.keyword_vectors.shape[0]} keyword vectors for {len(self.keywords)} keywords")
        self._by_id = {p.product_id: i for i, p in enumerate(self.products)}
        self._by_keyword = {k.keyword: i for i, k in enumerate(self.keywords)}

    @property
    def product_ids(self) -> list[str]:
        return [p.product_id for p in self.products]

    def product(self, product_id: str) -> Product | None:
        i = self._by_id.get(product_id)
        return None if i is None else self.products[i]

    def product_index(self, product_id: str) -> int | None:
        return self._by_id.get(product_id)

    def keyword_index(self, keyword: str) -> int | None:
        return self._by_keyword.get(keyword)

    @classmethod
    def load(cls, catalog_dir: Path) -> Catalog:
        files = [PRODUCTS_FILE, PRODUCT_IDS_FILE, PRODUCT_VECTORS_FILE, KEYWORDS_FILE, KEYWORD_VECTORS_FILE]
        missing = [name for name in files if not (catalog_dir / name).is_file()]
        if missing:
            raise CatalogError(f"{catalog_dir}: no catalog here (missing {', '.join(missing)}); run `vitrine catalog`")
        with (catalog_dir / PRODUCTS_FILE).open("rb") as fh:
            products = [Product.from_json(orjson.loads(line)) for line in fh if line.strip()]
        ids = json.loads((catalog_dir / PRODUCT_IDS_FILE).read_text())
        if ids != [p.product_id for p in products]:
            raise CatalogError(f"{catalog_dir}: {PRODUCT_IDS_FILE} disagrees with {PRODUCTS_FILE}")
        keywords = [Keyword.from_json(k) for k in json.loads((catalog_dir / KEYWORDS_FILE).read_text())]
        manifest_path = catalog_dir / MANIFEST_FILE
        manifest = Manifest(**json.loads(manifest_path.read_text())) if manifest_path.is_file() else None
        return cls(
            products,
            np.load(catalog_dir / PRODUCT_VECTORS_FILE).astype(np.float32, copy=False),
            keywords,
            np.load(catalog_dir / KEYWORD_VECTORS_FILE).astype(np.float32, copy=False),
            manifest,
        )

    def write(self, catalog_dir: Path) -> None:
        catalog_dir.mkdir(parents=True, exist_ok=True)
        with (catalog_dir / PRODUCTS_FILE).open("wb") as fh:
            for p in self.products:
                fh.write(orjson.dumps(p.to_json()) + b"\n")
        (catalog_dir / PRODUCT_IDS_FILE).write_text(json.dumps(self.product_ids))
        np.save(catalog_dir / PRODUCT_VECTORS_FILE, self.product_vectors.astype(np.float32, copy=False))
        keywords = [k.to_json() for k in self.keywords]
        (catalog_dir / KEYWORDS_FILE).write_text(json.dumps(keywords, indent=0, ensure_ascii=False) + "\n")
        np.save(catalog_dir / KEYWORD_VECTORS_FILE, self.keyword_vectors.astype(np.float32, copy=False))
        if self.manifest is not None:
            (catalog_dir / MANIFEST_FILE).write_text(json.dumps(self.manifest.to_json(), indent=2) + "\n")
