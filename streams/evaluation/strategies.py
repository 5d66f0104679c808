"""Traditional storefront strategies: each ranks products for one context from ``History`` alone.

They read the worker's ranker signals (``streams.worker.ranker.RankerSignals``), the very lists a
regeneration request carries, so the baselines are the served signals: popularity, popular in the
category of the context's latest product, co-visitation with that product, and session-kNN (the
co-visited list a request carries: neighbours of the last distinct products, weights
``KNN_WEIGHTS``). A strategy returns its own candidates in order; the protocol turns them into a page
of ``k`` (dropping excluded and repeated products, then filling from the latest product's category and
then popularity, so every strategy shows full pages and is compared at the same page size).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict

from streams.evaluation.history import PARTITION, History
from streams.worker.ranker import COVIS_WINDOW, KNN_WEIGHTS


class Strategy(ABC):
    name: str
    description: str

    def __init__(self, history: History) -> None:
        self.history = history

    @abstractmethod
    def rank(self, context: str | None, n: int) -> list[str]:
        """Up to ``n`` candidate products for the context, best first."""

    def page_candidates(self, context: str | None, n: int, exclude: frozenset[str]) -> list[str]:
        """The page's products before the protocol drops ``exclude`` and fills up. Strategies that lay out a
        page in placements (the cascade) override this to keep excluded products out of every placement."""
        return self.rank(context, n)

    def scores(self, cluster: str) -> bool:
        """Whether this strategy is scored for a session / customer (all, unless it scores a sample)."""
        return True

    def notes(self) -> list[str]:
        """Report lines about the run, beyond the metrics."""
        return []


def _top(scores: dict[str, float], n: int) -> list[str]:
    return sorted(scores, key=lambda i: (-scores[i], i))[:n]


class Popularity(Strategy):
    name = "popularity"
    description = "the ranker's popular list: decayed event-weighted popularity"

    def rank(self, context: str | None, n: int) -> list[str]:
        return self.history.popular(n)


class CurrentCategory(Strategy):
    name = "category"
    description = "the ranker's popular list of the category of the context's latest product"

    def rank(self, context: str | None, n: int) -> list[str]:
        return self.history.category_popular(self.history.current_category(context), n)


class CoVisitation(Strategy):
    name = "co-visitation"
    description = (
        f"the ranker's co-visit neighbours of the context's latest product (pairs within {COVIS_WINDOW} "
        "consecutive events of a session, consecutive repeats collapsed)"
    )

    def rank(self, context: str | None, n: int) -> list[str]:
        h = self.history
        return [p for p, _ in h.ranker.covisited(PARTITION, h.recent(context, 1), n, weights=(1.0,))]


class SessionKnn(Strategy):
    name = "session-kNN"
    description = (
        f"the co-visited list a regeneration request carries: neighbours of the context's last {len(KNN_WEIGHTS)} "
        f"distinct products summed with weights {', '.join(f'{w:g}' for w in KNN_WEIGHTS)}"
    )

    def rank(self, context: str | None, n: int) -> list[str]:
        h = self.history
        return [p for p, _ in h.ranker.covisited(PARTITION, h.recent(context, len(KNN_WEIGHTS)), n)]


class OwnHistory(Strategy):
    """The context's own products by decayed frequency: recently viewed in a session, re-buy for a customer."""

    def __init__(self, history: History, *, name: str, description: str) -> None:
        super().__init__(history)
        self.name = name
        self.description = description

    def rank(self, context: str | None, n: int) -> list[str]:
        return _top(self.history.own_items(context), n)


class RankFusion(Strategy):
    """Reciprocal-rank fusion of several strategies: ``sum 1 / (c + rank)``."""

    def __init__(self, history: History, parts: list[Strategy], *, name: str, c: float = 10.0) -> None:
        super().__init__(history)
        self.parts = parts
        self.name = name
        self.c = c
        self.description = f"reciprocal-rank fusion (c = {c:g}) of " + " and ".join(p.name for p in parts)

    def rank(self, context: str | None, n: int) -> list[str]:
        scores: defaultdict[str, float] = defaultdict(float)
        for part in self.parts:
            for r, item in enumerate(part.rank(context, n)):
                scores[item] += 1.0 / (self.c + r)
        return _top(scores, n)


class Placement(Strategy):
    """The first ``share`` of the page goes to ``first`` (re-buy), the rest to ``second``; either fills the
    other's slots when it runs short."""

    def __init__(self, history: History, first: Strategy, second: Strategy, *, name: str, share: float = 0.75) -> None:
        super().__init__(history)
        self.first, self.second, self.share = first, second, share
        self.name = name
        self.description = f"placement: {first.name} takes the first {share:.0%} of the page, {second.name} the rest"

    def rank(self, context: str | None, n: int) -> list[str]:
        return self.page_candidates(context, n, frozenset())

    def page_candidates(self, context: str | None, n: int, exclude: frozenset[str]) -> list[str]:
        quota = math.ceil(n * self.share)
        first = [i for i in self.first.page_candidates(context, n, exclude) if i not in exclude]
        taken = set(first[:quota])
        second = [i for i in self.second.page_candidates(context, n + quota, exclude) if i not in taken]
        return first[:quota] + second[: n - min(quota, len(first))] + first[quota:] + second


def clickstream_strategies(history: History) -> list[Strategy]:
    return [
        Popularity(history),
        CurrentCategory(history),
        CoVisitation(history),
        SessionKnn(history),
        OwnHistory(history, name="recently viewed", description="the session's own products, decayed frequency"),
    ]


def transaction_strategies(history: History) -> list[Strategy]:
    rebuy = OwnHistory(
        history, name="re-buy", description="the customer's own past products by decayed purchase frequency"
    )
    knn = SessionKnn(history)
    return [
        Popularity(history),
        CurrentCategory(history),
        CoVisitation(history),
        knn,
        rebuy,
        RankFusion(history, [rebuy, knn], name="re-buy + session-kNN (RRF)"),
        Placement(history, rebuy, knn, name="re-buy + session-kNN (placement)"),
    ]
