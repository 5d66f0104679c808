"""Ranker signals kept in the stream: decayed product popularity (global and per category) and co-visitation.

Partition-local by design. Sessions are co-partitioned with the clickstream, so every co-visit pair
a session produces is seen by exactly one worker, and the popularity counted inside one partition is
a uniform sample (sessions hash evenly) of global traffic. Keeping signals per partition needs no
repartition topic and no cross-worker lookup; keys carry the partition (``b"3/1004856"``), so the
changelog-backed table moves a partition's signals with it on a rebalance.

Decay without rewriting old entries: a product's popularity is stored as (score, ts) and ranked by
``log2(score) + ts / half_life``, which orders products exactly as their scores decayed to any common
later time would.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from streams.contracts.events import ClickEvent
from streams.contracts.regen import RankerCandidates

if TYPE_CHECKING:
    from streams.contracts.regen import SessionContext

# The ranker's parameters, shared by the served request lists and the evaluation's baselines (one implementation):
# a co-visit pair is two products within COVIS_WINDOW consecutive events of a session (consecutive repeats of one
# product collapsed); the co-visited list sums the neighbours of the session's last distinct products weighted
# KNN_WEIGHTS (session-kNN through item neighbourhoods), ties to the more popular. The window (3, 5 or 8) and the
# popularity half-life were chosen on the earliest 60% of the REES46 sample's events (docs/eval/fusion-weights.md);
# 3 and 5 are within 0.001 hit@12 of each other there, 8 is worse.
COVIS_WINDOW = 5
KNN_WEIGHTS = (1.0, 0.5, 0.25)
NEIGHBOURS = 100
_PRUNE_AT = 130  # prune back to NEIGHBOURS only past this, so a hot product is not re-sorted per event


@dataclass(slots=True)
class ProductSignal:
    """One product's signals within one partition."""

    category: str | None
    score: float  # popularity at ``ts``
    ts: int  # event time (ms) of the last popularity update
    neighbours: dict[str, float] = field(default_factory=dict)  # co-visited product -> count

    def rank_key(self, half_life_ms: float) -> float:
        return math.log2(self.score) + self.ts / half_life_ms if self.score > 0 else -math.inf

    def decayed(self, now_ms: int, half_life_ms: float) -> float:
        return decayed(self.score, self.ts, now_ms, half_life_ms)

    def rank(self, half_life_ms: float) -> _Rank:
        """What the rank index keeps of this signal: rank key, category, score and its ts."""
        return (self.rank_key(half_life_ms), self.category, self.score, self.ts)

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.category, self.score, self.ts, self.neighbours])

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProductSignal:
        category, score, ts, neighbours = orjson.loads(raw)
        return cls(category, score, ts, neighbours)


def decayed(score: float, ts: int, now_ms: int, half_life_ms: float) -> float:
    """A popularity ``score`` counted up to ``ts``, decayed to ``now_ms`` (never grown by an earlier ``now_ms``)."""
    return score * 0.5 ** (max(0, now_ms - ts) / half_life_ms)


def signal_key(partition: int, product_id: str) -> bytes:
    return f"{partition}/{product_id}".encode()


def split_key(key: bytes) -> tuple[int, str]:
    partition, _, product = key.decode().partition("/")
    return int(partition), product


class RankerSignals:
    """Reads and updates the signals of every partition in ``store`` (the Faust table's data, or a dict).

    Top lists are cached per partition and rebuilt when ``stale_after`` updates have landed since the
    last build, so a request costs a dictionary lookup, not a sort of the partition's catalogue.

    A rebuild copies lists that ``observe`` keeps exact (``_Tops``) instead of sorting the store: a scan of every
    partition's products per rebuild was a third or more of the worker's step, and on RocksDB a decode per
    entry. Exact by insertion because a product's rank key only changes in ``observe`` and never decreases, so
    a product outside a top list enters it only through its own update. The lists start from one scan of the
    store when first needed, and again after ``reset`` (a changelog restore writes the store directly).
    """

    def __init__(
        self,
        store: MutableMapping[bytes, ProductSignal],
        *,
        half_life_s: float,
        stale_after: int = 500,
        per_list: int = 24,
        depth: int | None = None,
        window: int = COVIS_WINDOW,
    ) -> None:
        """``depth``: how many products the cached top lists keep (default ``per_list``); the evaluation reads
        deeper lists to fill pages once a session's own products are left out."""
        self.store = store
        self.half_life_ms = half_life_s * 1000.0
        self.stale_after = stale_after
        self.per_list = per_list
        self.depth = max(per_list, depth or per_list)
        self.window = window
        self._updates: dict[int, int] = {}
        self._top: dict[int, tuple[list[str], dict[str, list[str]]]] = {}
        self._ranks: dict[int, dict[str, _Rank]] | None = None  # None: not built from the store yet
        self._live: dict[int, _Tops] = {}

    def reset(self) -> None:
        """Forget the cached and kept lists: the store was written behind ``observe``'s back (a restore)."""
        self._updates.clear()
        self._top.clear()
        self._ranks = None
        self._live.clear()

    def observe(
        self,
        partition: int,
        product_id: str,
        category: str | None,
        weight: float,
        ts: int,
        co_visited: Sequence[str] = (),
    ) -> list[bytes]:
        """Fold one event in; return the keys written (for the changelog flush)."""
        key = signal_key(partition, product_id)
        signal = self.store.get(key)
        if signal is None:
            signal = ProductSignal(category, 0.0, ts)
        if weight > 0:
            signal.score = signal.decayed(ts, self.half_life_ms) + weight
            signal.ts = max(signal.ts, ts)
        signal.category = category or signal.category
        touched = [key]
        for other in co_visited:
            if other == product_id:
                continue
            _bump(signal.neighbours, other)
            other_key = signal_key(partition, other)
            other_signal = self.store.get(other_key)
            if other_signal is not None:
                _bump(other_signal.neighbours, product_id)
                self.store[other_key] = other_signal
                touched.append(other_key)
        self.store[key] = signal
        if self._ranks is not None:
            self._rerank(partition, product_id, signal.rank(self.half_life_ms))
        self._updates[partition] = self._updates.get(partition, 0) + 1
        return touched

    def _rerank(self, partition: int, product: str, rank: _Rank) -> None:
        """Keep the rank index and the partition's exact top lists after one product's update."""
        ranks = self._index(partition)
        old = ranks.get(product)
        ranks[product] = rank
        key, category = rank[0], rank[1]
        tops = self._live.get(partition)
        if tops is None or (old is not None and old[:2] == (key, category)):
            return  # lists built from the index when first read, or unchanged
        before = (-old[0], product) if old is not None else None
        entry = (-key, product)
        if _move(tops.popular, before, entry, self.depth):
            tops.changed.add(None)
        old_category = old[1] if old is not None else None
        if old_category is not None and old_category != category:
            lost = tops.by_category.get(old_category, [])
            if before in lost:
                # The best product of that category outside its list is not known here: rebuild that list.
                tops.by_category[old_category] = self._category_list(ranks, old_category)
                tops.changed.add(old_category)
            before = None
        if category is not None and _move(tops.by_category.setdefault(category, []), before, entry, self.depth):
            tops.changed.add(category)

    def _category_list(self, ranks: dict[str, _Rank], category: str) -> list[tuple[float, str]]:
        return sorted((-r[0], p) for p, r in ranks.items() if r[1] == category)[: self.depth]

    def observe_click(self, partition: int, event: ClickEvent, window: Sequence[str], weight: float) -> list[bytes]:
        """One clickstream event; ``window``: the session's previous products, consecutive repeats collapsed, most
        recent first (``streams.worker.sessions.covisit_window``). The product pairs with the ``self.window - 1``
        latest of them unless it repeats the one just before it (a repeat adds popularity, no pairs)."""
        if event.product_id is None:
            return []
        pairs: Sequence[str] = ()
        if not window or window[0] != event.product_id:
            pairs = list(dict.fromkeys(window[: self.window - 1]))
        return self.observe(partition, event.product_id, event.category, max(0.0, weight), event.ts, pairs)

    def for_request(self, partition: int, context: SessionContext, now_ms: int) -> RankerCandidates:
        """Candidates for a regeneration request: popular; popular in the category of the session's latest
        product, then in its top categories (three in all); co-visited with its latest distinct products."""
        recent = list(dict.fromkeys(item.product_id for item in reversed(context.recent)))
        current = self.category_of(partition, recent[0]) if recent else None
        categories = list(dict.fromkeys([c for c in [current, *context.categories] if c is not None]))[:3]
        return self.candidates(partition, now_ms=now_ms, categories=categories, recent=recent)

    def candidates(
        self, partition: int, *, now_ms: int, categories: Sequence[str], recent: Sequence[str]
    ) -> RankerCandidates:
        """Popular overall, popular in ``categories`` (in that order), co-visited with the ``recent`` products."""
        n = self.per_list
        return RankerCandidates(
            popular=self.popular(partition, n, now_ms),
            by_category={c: self.category_popular(partition, c, n, now_ms) for c in categories},
            covisited=self.covisited(partition, recent, n),
        )

    def popular(self, partition: int, n: int, now_ms: int) -> list[tuple[str, float]]:
        """The ``n`` (at most ``depth``) products with the highest decayed popularity, with their scores."""
        return self._scored(partition, self._tops(partition)[0][:n], now_ms)

    def category_popular(self, partition: int, category: str, n: int, now_ms: int) -> list[tuple[str, float]]:
        return self._scored(partition, self._tops(partition)[1].get(category, [])[:n], now_ms)

    def category_of(self, partition: int, product_id: str) -> str | None:
        rank = self._index(partition).get(product_id)
        return rank[1] if rank is not None else None

    def covisited(
        self, partition: int, recent: Sequence[str], n: int | None = None, weights: Sequence[float] = KNN_WEIGHTS
    ) -> list[tuple[str, float]]:
        """Neighbours of the latest distinct products (``recent``, most recent first), summed with ``weights``
        by recency; the session's own products left out."""
        scores: dict[str, float] = {}
        seen = set(recent)
        for product, weight in zip(recent, weights, strict=False):
            signal = self.store.get(signal_key(partition, product))
            if signal is None:
                continue
            for other, count in signal.neighbours.items():
                if other not in seen:
                    scores[other] = scores.get(other, 0.0) + count * weight
        # Co-visit counts are small integers and tie often: the more popular neighbour first.
        ranks = self._index(partition)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], -_rank_key(ranks.get(kv[0])), kv[0]))
        return [(p, round(s, 4)) for p, s in ranked[: n or self.per_list]]

    def partitions(self) -> set[int]:
        return {split_key(k)[0] for k in self.store}

    def _scored(self, partition: int, products: Iterable[str], now_ms: int) -> list[tuple[str, float]]:
        """Each product's popularity decayed to ``now_ms`` (``ProductSignal.decayed``), read off the index."""
        ranks, half_life_ms = self._index(partition), self.half_life_ms
        out = []
        for product in products:
            rank = ranks.get(product)
            if rank is not None:
                out.append((product, round(decayed(rank[2], rank[3], now_ms, half_life_ms), 6)))
        return out

    def _index(self, partition: int) -> dict[str, _Rank]:
        """The partition's rank index (product -> rank key, category, score, ts), as current as the store; built
        from one scan of the store when missing. Requests read it instead of the store: on RocksDB each read of
        the store is a lookup and a decode."""
        if self._ranks is None:
            self._ranks = {}
            for key, signal in self.store.items():
                part, product = split_key(key)
                self._ranks.setdefault(part, {})[product] = signal.rank(self.half_life_ms)
        return self._ranks.setdefault(partition, {})

    def _tops(self, partition: int) -> tuple[list[str], dict[str, list[str]]]:
        cached = self._top.get(partition)
        updates = self._updates.get(partition, 0)
        # A young partition (fewer products than a list holds) is re-ranked on any update: it is small, and a
        # list cached from its first events would otherwise stay that short for ``stale_after`` events.
        if cached is not None and updates < self.stale_after and (updates == 0 or len(cached[0]) >= self.per_list):
            return cached
        tops = self._live_tops(partition)
        if cached is None:
            cached = ([], {})
            tops.changed.update([None, *tops.by_category])
        popular, by_category = cached
        for name in tops.changed:
            if name is None:
                popular = [p for _, p in tops.popular]
            else:
                by_category[name] = [p for _, p in tops.by_category[name]]
        tops.changed.clear()
        self._top[partition] = (popular, by_category)
        self._updates[partition] = 0
        return popular, by_category

    def _live_tops(self, partition: int) -> _Tops:
        """The partition's exact top lists, built from the rank index (itself one scan of the store) when missing."""
        tops = self._live.get(partition)
        if tops is None:
            ranked = sorted((-r[0], p, r[1]) for p, r in self._index(partition).items())
            tops = _Tops([(k, p) for k, p, _ in ranked[: self.depth]])
            for k, p, c in ranked:
                if c is not None:
                    top = tops.by_category.setdefault(c, [])
                    if len(top) < self.depth:
                        top.append((k, p))
            self._live[partition] = tops
        return tops


_Rank = tuple[float, str | None, float, int]  # a product's rank key, category, score and its ts


def _rank_key(rank: _Rank | None) -> float:
    return rank[0] if rank is not None else -math.inf


@dataclass(slots=True)
class _Tops:
    """One partition's top lists as ``(-rank key, product)``, best first, at most ``depth`` long."""

    popular: list[tuple[float, str]]
    by_category: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    changed: set[str | None] = field(default_factory=set)  # lists changed since the last copy (None: popular)


def _move(top: list[tuple[float, str]], before: tuple[float, str] | None, entry: tuple[float, str], depth: int) -> bool:
    """Put ``entry`` (a product's new rank) where it belongs in ``top``, replacing ``before`` (its old rank).

    ``entry`` ranks at least as high as ``before``, so a product already listed stays listed; one outside a full
    list enters only past the list's last. Return whether ``top`` changed.
    """
    if before is not None:
        i = bisect_left(top, before)
        if i < len(top) and top[i] == before:
            del top[i]
            insort(top, entry)
            return True
    if len(top) < depth or entry < top[-1]:
        insort(top, entry)
        if len(top) > depth:
            top.pop()
        return True
    return False


def _bump(neighbours: dict[str, float], other: str) -> None:
    neighbours[other] = neighbours.get(other, 0.0) + 1.0
    if len(neighbours) > _PRUNE_AT:
        keep = sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0]))[:NEIGHBOURS]
        neighbours.clear()
        neighbours.update(keep)
