"""Page metrics and their confidence intervals.

- ``hit rate@k``: share of scored positions whose page holds at least one relevant item.
- ``NDCG@k``: binary-relevance DCG of the page over the ideal DCG of ``min(|relevant|, k)`` hits.
- ``coverage``: share of the catalog (every item in the log) shown on at least one page; its
  interval is shifted by the bootstrap bias (see ``_interval``).
- ``diversity``: distinct categories on a page / k (items without a category count as one category).

Confidence intervals are percentile intervals of a cluster bootstrap: the resampled unit is the
session (clickstream) or the customer (transactions), since positions within one are not
independent. Resampling uses Poisson(1) cluster weights from a fixed seed, so reports reproduce.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@lru_cache(maxsize=1024)
def _discount(rank: int) -> float:
    return 1.0 / math.log2(rank + 2)


def ideal_dcg(n_relevant: int, k: int) -> float:
    return sum(_discount(r) for r in range(min(n_relevant, k)))


def dcg_hit(page: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> tuple[float, float]:
    """(hit, NDCG) of one page against a set of relevant items, both in [0, 1]."""
    relevant = relevant if isinstance(relevant, frozenset | set) else frozenset(relevant)
    dcg = sum(_discount(r) for r, item in enumerate(page[:k]) if item in relevant)
    if dcg == 0.0:
        return 0.0, 0.0
    return 1.0, dcg / ideal_dcg(len(relevant), k)


def _cluster_index(clusters: Sequence[str]) -> tuple[np.ndarray, int]:
    _, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    return inverse, int(inverse.max()) + 1 if len(inverse) else 0


def _weights(rng: np.random.Generator, resamples: int, n_clusters: int, row_cost: int = 0) -> Iterable[np.ndarray]:
    """Poisson(1) weights per cluster, ``resamples`` rows in chunks of bounded memory."""
    chunk = max(1, min(resamples, 4_000_000 // max(1, n_clusters, row_cost)))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        yield rng.poisson(1.0, size=(size, n_clusters)).astype(np.float64)
        done += size


def bootstrap_mean(
    values: Sequence[float], clusters: Sequence[str], *, resamples: int = 1000, seed: int = 7, level: float = 0.95
) -> Estimate:
    """Mean of per-position values with a cluster bootstrap percentile interval."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan)
    inverse, n = _cluster_index(clusters)
    sums = np.bincount(inverse, weights=x, minlength=n)
    counts = np.bincount(inverse, minlength=n).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws: list[np.ndarray] = []
    for w in _weights(rng, resamples, n):
        num, den = w @ sums, w @ counts
        draws.append(num[den > 0] / den[den > 0])
    return _interval(float(x.mean()), np.concatenate(draws), level)


def bootstrap_coverage(
    pages: Sequence[Sequence[int]],
    clusters: Sequence[str],
    catalog_size: int,
    *,
    resamples: int = 1000,
    seed: int = 7,
    level: float = 0.95,
) -> Estimate:
    """Share of the catalog shown at least once, with the same cluster bootstrap over pages."""
    if not pages or catalog_size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    inverse, n = _cluster_index(clusters)
    pairs = {(int(c), item) for c, page in zip(inverse, pages, strict=True) for item in page}
    arr = np.array(sorted(pairs, key=lambda p: (p[1], p[0])), dtype=np.int64).reshape(-1, 2)
    pair_cluster, pair_item = arr[:, 0], arr[:, 1]
    starts = np.flatnonzero(np.r_[True, pair_item[1:] != pair_item[:-1]])
    point = len(starts) / catalog_size
    rng = np.random.default_rng(seed)
    draws: list[np.ndarray] = []
    for w in _weights(rng, resamples, n, row_cost=len(pair_cluster)):
        present = w > 0
        shown = np.logical_or.reduceat(present[:, pair_cluster], starts, axis=1)
        draws.append(shown.sum(axis=1) / catalog_size)
    return _interval(point, np.concatenate(draws), level, debias=True)


def _interval(point: float, draws: np.ndarray, level: float, *, debias: bool = False) -> Estimate:
    """Percentile interval; ``debias`` shifts it by the bootstrap bias (a resample holds fewer distinct
    clusters, so a union statistic such as coverage always comes out low)."""
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    shift = float(draws.mean()) - point if debias else 0.0
    return Estimate(point, float(low) - shift, float(high) - shift)
