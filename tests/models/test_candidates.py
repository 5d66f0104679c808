"""Keyword candidates: the session's own keywords first, then nearest by cosine, never an excluded category."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.candidates import CandidateIndex


@dataclass(frozen=True)
class K:
    keyword: str
    kind: str
    category: str | None


KEYWORDS = [
    K("smartphone", "category", "electronics.smartphone"),
    K("samsung smartphone", "brand_category", "electronics.smartphone"),
    K("apple smartphone", "brand_category", "electronics.smartphone"),
    K("headphone", "category", "electronics.audio.headphone"),
    K("washer", "category", "appliances.kitchen.washer"),
    K("samsung", "brand", None),
    K("apple", "brand", None),
]


def _index() -> tuple[CandidateIndex, np.ndarray]:
    vectors = np.eye(len(KEYWORDS), dtype=np.float32)
    return CandidateIndex(KEYWORDS, vectors), vectors


def test_direct_keywords_come_first_and_only_for_the_sessions_brands() -> None:
    index, vectors = _index()
    got = index.candidates(vectors[4], categories=["electronics.smartphone"], brands=["samsung"], n=5)
    assert got[:3] == ["smartphone", "samsung smartphone", "samsung"]
    assert "apple smartphone" not in got[:3]
    assert got[3] == "washer"  # then the nearest to the query vector
    assert len(got) == 5 and len(set(got)) == 5


def test_excluded_categories_never_become_candidates() -> None:
    index, vectors = _index()
    got = index.candidates(vectors[1], categories=["electronics.smartphone"], exclude=["electronics"], n=7)
    assert not {"smartphone", "samsung smartphone", "apple smartphone", "headphone"} & set(got)
    assert "washer" in got


def test_candidates_are_deterministic_on_ties() -> None:
    index, _ = _index()
    query = np.zeros((1, len(KEYWORDS)), np.float32)
    assert index.candidates(query, n=4) == index.candidates(query, n=4) == [k.keyword for k in KEYWORDS[:4]]
