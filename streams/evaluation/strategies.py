"""Traditional storefront strategies: each ranks items for one context from ``History`` alone.

A strategy returns its own candidates in order; the protocol turns them into a page of ``k``
(dropping excluded and repeated items, then filling up from global popularity so every strategy
shows full pages and is compared at the same page size).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict

import numpy as np

from streams.evaluation.history import History


class Strategy(ABC):
    name: str
    description: str

    def __init__(self, history: History) -> None:
        self.history = history

    @abstractmethod
    def rank(self, context: str | None, n: int) -> list[int]:
        """Up to ``n`` candidate items for the context, best first."""

    def page_candidates(self, context: str | None, n: int, exclude: frozenset[int]) -> list[int]:
        """The page's items before the protocol drops ``exclude`` and fills up. Strategies that lay out a page
        in placements (the cascade) override this to keep excluded items out of every placement."""
        return self.rank(context, n)

    def scores(self, cluster: str) -> bool:
        """Whether this strategy is scored for a session / customer (all, unless it scores a sample)."""
        return True

    def notes(self) -> list[str]:
        """Report lines about the run, beyond the metrics."""
        return []


def _top(scores: dict[int, float], n: int) -> list[int]:
    return sorted(scores, key=lambda i: (-scores[i], i))[:n]


def _top_array(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` largest positive scores, best first, ties by index."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > n:
        candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    order = np.lexsort((candidates, -scores[candidates]))
    return [int(i) for i in candidates[order]]


class Popularity(Strategy):
    name = "popularity"
    description = "globally most popular items, exponentially decayed counts"

    def rank(self, context: str | None, n: int) -> list[int]:
        return self.history.popular(n)


class CategoryAffinity(Strategy):
    name = "category affinity"
    description = (
        "most popular items of the context's top 3 categories (decayed category counts), "
        "slots split in proportion to affinity"
    )

    def __init__(self, history: History, *, top_categories: int = 3) -> None:
        super().__init__(history)
        self.top_categories = top_categories

    def rank(self, context: str | None, n: int) -> list[int]:
        cats = self.history.context_categories.get(context) if context is not None else None
        if not cats:
            return []
        top = _top(cats, self.top_categories)
        total = sum(cats[c] for c in top)
        out: list[int] = []
        for cat in top:
            quota = max(1, round(n * cats[cat] / total))
            out.extend(self.history.category_popular(cat)[:quota])
        for cat in top:  # leftovers if a category ran short
            out.extend(self.history.category_popular(cat)[: n * 2])
        return out


class CoVisitation(Strategy):
    name = "co-visitation"
    description = "items co-occurring in sessions with the context's last 3 distinct items (weights 1, 1/2, 1/3)"

    def __init__(self, history: History, *, recent: int = 3) -> None:
        super().__init__(history)
        self.recent = recent

    def rank(self, context: str | None, n: int) -> list[int]:
        recent = self.history.recent_context_items(context, self.recent)
        if not recent:
            return []
        weights = np.array([1.0 / (pos + 1) for pos in range(len(recent))], dtype=np.float32)
        scores = weights @ self.history.covis[recent]
        return _top_array(scores, n)


class SessionKnn(Strategy):
    name = "session-kNN"

    def __init__(self, history: History, *, recent: int = 5, neighbours: int = 100) -> None:
        super().__init__(history)
        self.recent = recent
        self.neighbours = neighbours
        self.description = (
            f"V-SkNN: past sessions sharing the context's last {recent} distinct items (weight decaying linearly "
            f"with recency), similarity / sqrt(session length), the top {neighbours} neighbours vote for their items"
        )

    def rank(self, context: str | None, n: int) -> list[int]:
        h = self.history
        recent = h.recent_context_items(context, self.recent)
        if not recent:
            return []
        sim: defaultdict[str, float] = defaultdict(float)
        for pos, item in enumerate(recent):
            weight = 1.0 - pos / len(recent)
            for session in h.item_sessions.get(item, ()):
                if session != context:  # the live session is not its own neighbour
                    sim[session] += weight
        for session in sim:
            sim[session] /= math.sqrt(len(h.session_items[session]))
        neighbours = sorted(sim, key=lambda s: -sim[s])[: self.neighbours]
        scores: defaultdict[int, float] = defaultdict(float)
        for session in neighbours:
            for item in h.session_items[session]:
                scores[item] += sim[session]
        return _top(scores, n)


class OwnHistory(Strategy):
    """The context's own items by decayed frequency: recently viewed in a session, re-buy for a customer."""

    def __init__(self, history: History, *, name: str, description: str) -> None:
        super().__init__(history)
        self.name = name
        self.description = description

    def rank(self, context: str | None, n: int) -> list[int]:
        items = self.history.context_items.get(context) if context is not None else None
        return _top(items, n) if items else []


class RankFusion(Strategy):
    """Reciprocal-rank fusion of several strategies: ``sum 1 / (c + rank)``."""

    def __init__(self, history: History, parts: list[Strategy], *, name: str, c: float = 10.0) -> None:
        super().__init__(history)
        self.parts = parts
        self.name = name
        self.c = c
        self.description = f"reciprocal-rank fusion (c = {c:g}) of " + " and ".join(p.name for p in parts)

    def rank(self, context: str | None, n: int) -> list[int]:
        scores: defaultdict[int, float] = defaultdict(float)
        for part in self.parts:
            for r, item in enumerate(part.rank(context, n)):
                scores[item] += 1.0 / (self.c + r)
        return _top(scores, n)


class Placement(Strategy):
    """The first ``share`` of the page goes to ``first`` (re-buy), the rest to ``second`` (co-occurrence);
    either fills the other's slots when it runs short."""

    def __init__(self, history: History, first: Strategy, second: Strategy, *, name: str, share: float = 0.75) -> None:
        super().__init__(history)
        self.first, self.second, self.share = first, second, share
        self.name = name
        self.description = f"placement: {first.name} takes the first {share:.0%} of the page, {second.name} the rest"

    def rank(self, context: str | None, n: int) -> list[int]:
        quota = math.ceil(n * self.share)
        first = self.first.rank(context, n)
        taken = set(first[:quota])
        second = [i for i in self.second.rank(context, n + quota) if i not in taken]
        return first[:quota] + second[: n - min(quota, len(first))] + first[quota:] + second


def clickstream_strategies(history: History) -> list[Strategy]:
    return [
        Popularity(history),
        CategoryAffinity(history),
        CoVisitation(history),
        SessionKnn(history),
        OwnHistory(history, name="recently viewed", description="the session's own items, decayed frequency"),
    ]


def transaction_strategies(history: History) -> list[Strategy]:
    rebuy = OwnHistory(
        history, name="re-buy", description="the customer's own past items by decayed purchase frequency"
    )
    covis = CoVisitation(history, recent=10)
    covis.description = "items co-occurring in invoices with the customer's last 10 distinct items (weights 1/rank)"
    knn = SessionKnn(history, recent=10)
    return [
        Popularity(history),
        CategoryAffinity(history),
        covis,
        knn,
        rebuy,
        RankFusion(history, [rebuy, covis], name="re-buy + co-occurrence (RRF)"),
        Placement(history, rebuy, covis, name="re-buy + co-occurrence (placement)"),
    ]
