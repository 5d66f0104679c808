"""Fusing retrieval relevance with the ranker signals per placement, then a diversity step.

Each signal ranks its own candidates; scores on different scales (cosine similarity, decayed counts,
co-visit counts) are made comparable by rank, ``c / (c + rank)`` (weighted reciprocal-rank fusion,
robust where min-max scaling is not: one outlier count would flatten every other score).

The weights are per placement kind, in the spirit of SIGMA's task-calibrated fusion: a placement that
should be accurate (``because_you_viewed``) leans on co-visitation and takes no diversity penalty,
an exploratory one (``explore``) leans on retrieval and pays for repeating a category. The defaults
were chosen with the offline replay (``vitrine eval``, see docs/eval/) and are settings, not constants
in code paths.

Diversity is maximal marginal relevance: pick greedily by ``(1 - lambda) * fused - lambda * max_sim``
where ``max_sim`` to the items already picked is 1 for the same category, 0.5 for the same brand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from streams.contracts.storefront import ItemSource

RRF_C = 10.0
SAME_CATEGORY = 1.0
SAME_BRAND = 0.5

Facts = Callable[[str], tuple[str | None, str | None]]  # product -> (category, brand)


@dataclass(frozen=True, slots=True)
class FusionWeights:
    retrieval: float
    covisitation: float
    category: float
    popularity: float
    diversity: float  # MMR lambda in [0, 1): 0 = accuracy only

    def of(self, source: ItemSource) -> float:
        return {
            ItemSource.RETRIEVAL: self.retrieval,
            ItemSource.COVISITATION: self.covisitation,
            ItemSource.CATEGORY: self.category,
            ItemSource.POPULARITY: self.popularity,
        }[source]


@dataclass(frozen=True, slots=True)
class Fused:
    product_id: str
    score: float
    source: ItemSource


def fuse(
    ranked: Mapping[ItemSource, Sequence[str]],
    weights: FusionWeights,
    *,
    n: int,
    facts: Facts,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[Fused]:
    """Up to ``n`` products: weighted reciprocal-rank fusion of the signals, then MMR for diversity."""
    scores: dict[str, float] = {}
    best: dict[str, tuple[float, ItemSource]] = {}
    for source, products in ranked.items():
        w = weights.of(source)
        if w <= 0:
            continue
        for rank, product in enumerate(products):
            if product in exclude:
                continue
            contribution = w * RRF_C / (RRF_C + rank)
            scores[product] = scores.get(product, 0.0) + contribution
            if product not in best or contribution > best[product][0]:
                best[product] = (contribution, source)
    if not scores:
        return []
    top = max(scores.values())
    pool = sorted(scores, key=lambda p: (-scores[p], p))
    picked: list[Fused] = []
    picked_facts: list[tuple[str | None, str | None]] = []
    lam = weights.diversity
    while pool and len(picked) < n:
        if lam > 0 and picked_facts:
            index = max(
                range(len(pool)),
                key=lambda i: (1 - lam) * scores[pool[i]] / top - lam * _max_similarity(facts(pool[i]), picked_facts),
            )
        else:
            index = 0
        product = pool.pop(index)
        picked.append(Fused(product, round(scores[product], 6), best[product][1]))
        picked_facts.append(facts(product))
    return picked


def _max_similarity(item: tuple[str | None, str | None], picked: list[tuple[str | None, str | None]]) -> float:
    category, brand = item
    sim = 0.0
    for other_category, other_brand in picked:
        if category is not None and category == other_category:
            return SAME_CATEGORY
        if brand is not None and brand == other_brand:
            sim = SAME_BRAND
    return sim
