"""Retrieval-augmented keyword candidates: the part of the vocabulary a placement may choose from.

The student writes keywords under a constraint to these candidates, and the teacher picks its
labels from the same list, so what the model learned to pick is always pickable when serving.
Candidates are the session's own category/brand keywords first, then the vocabulary nearest (by
cosine) to any of the query vectors: the session's item embeddings and the generated theme's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from models.context import ContextFacts, in_categories

DEFAULT_CANDIDATES = 24
MAX_DIRECT = 8


class KeywordFacts(Protocol):
    """A vocabulary entry (``streams.catalog`` keywords satisfy it)."""

    @property
    def keyword(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def category(self) -> str | None: ...


class CandidateIndex:
    def __init__(self, keywords: Sequence[KeywordFacts], vectors: npt.NDArray[np.float32]) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(keywords):
            raise ValueError(f"keyword vectors {vectors.shape} do not match {len(keywords)} keywords")
        self._words = [k.keyword for k in keywords]
        self._categories = [k.category for k in keywords]
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._by_category: dict[str, list[int]] = defaultdict(list)
        self._by_brand: dict[str, list[int]] = defaultdict(list)
        for i, k in enumerate(keywords):
            if k.kind == "brand":
                self._by_brand[k.keyword].append(i)
            elif k.category is not None:
                self._by_category[k.category].append(i)

    @property
    def vocabulary(self) -> list[str]:
        return list(self._words)

    def direct(self, categories: Sequence[str], brands: Sequence[str]) -> list[int]:
        """The session's own keywords: its categories (brand-qualified ones only for its brands), its brands."""
        brand_set = {b.lower() for b in brands}
        out: list[int] = []
        for category in categories:
            for i in self._by_category.get(category, ()):
                words = self._words[i]
                head = words.split(" ", 1)[0]
                if " " not in words or head not in self._by_brand or head in brand_set:
                    out.append(i)
        for brand in brand_set:
            out.extend(self._by_brand.get(brand, ()))
        return out

    def candidates(
        self,
        query_vectors: npt.NDArray[np.float32],
        *,
        categories: Sequence[str] = (),
        brands: Sequence[str] = (),
        exclude: Sequence[str] = (),
        n: int = DEFAULT_CANDIDATES,
    ) -> list[str]:
        """Up to ``n`` vocabulary keywords: direct ones first (at most ``MAX_DIRECT``), then nearest by max cosine."""
        chosen: list[int] = []
        seen: set[int] = set()

        def take(i: int) -> None:
            if i not in seen and not in_categories(self._categories[i], exclude):
                seen.add(i)
                chosen.append(i)

        for i in self.direct(categories, brands):
            if len(chosen) >= min(MAX_DIRECT, n):
                break
            take(i)
        if query_vectors.size and len(chosen) < n:
            q = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
            scores = (self._vectors @ q.T).max(axis=1)
            # Stable order on ties (argsort of the negation, kind="stable") keeps candidates deterministic.
            for i in np.argsort(-scores, kind="stable"):
                if len(chosen) >= n:
                    break
                take(int(i))
        return [self._words[i] for i in chosen]


def placement_candidates(
    index: CandidateIndex,
    facts: ContextFacts,
    item_vectors: npt.NDArray[np.float32],
    theme_vector: npt.NDArray[np.float32],
    *,
    n: int = DEFAULT_CANDIDATES,
) -> list[str]:
    """The candidates of one placement, as training labelled them and serving must constrain to them.

    ``item_vectors``: catalog vectors of the session's recent products (most recent first);
    ``theme_vector``: the embedded theme of this placement.
    """
    categories = [*facts.rules.boost, *dict.fromkeys(i.category for i in facts.items if i.category)]
    brands = list(dict.fromkeys(i.brand for i in facts.items if i.brand))
    queries = (
        np.vstack([np.atleast_2d(theme_vector), np.atleast_2d(item_vectors)]) if item_vectors.size else theme_vector
    )
    return index.candidates(queries, categories=categories, brands=brands, exclude=facts.rules.exclude, n=n)


class VectorCatalog(Protocol):
    """What the candidates need of a catalog (``streams.catalog.artifacts.Catalog`` satisfies it)."""

    @property
    def product_vectors(self) -> npt.NDArray[np.float32]: ...

    def product_index(self, product_id: str) -> int | None: ...


def session_item_vectors(recent_product_ids: Sequence[str], catalog: VectorCatalog) -> npt.NDArray[np.float32]:
    """Catalog vectors of a session's distinct recent products, most recent first (``recent`` is oldest first)."""
    rows = [i for i in (catalog.product_index(p) for p in dict.fromkeys(reversed(recent_product_ids))) if i is not None]
    vectors = catalog.product_vectors
    return vectors[rows] if rows else np.zeros((0, vectors.shape[1]), dtype=np.float32)
