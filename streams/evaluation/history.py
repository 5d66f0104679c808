"""What the past knows at a point of the replay.

Every count a strategy reads lives here, and ``History.observe`` is the only writer. The protocol
calls it only after every event of a timestamp group has been scored, so a page never sees its own
event, nor anything that happened in the same second or later.

Decayed counts use the growing-weight trick: an event at time ``t`` adds ``2 ** ((t - t0) / half_life)``.
Ranking by the sum equals ranking by exponentially decayed counts at any later moment, without
touching old entries.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from streams.datasets.exceptions import ReplayError
from streams.worker.sessions import EVENT_WEIGHTS
from streams.worker.state import RECENT_ITEMS

NO_CATEGORY = -1
MAX_DENSE_ITEMS = 15_000


@dataclass(frozen=True, slots=True)
class Event:
    """One log event in integer ids: item, category (or ``NO_CATEGORY``), session and context."""

    index: int
    event_id: str
    ts: int  # epoch ms
    session: str
    user: str | None
    kind: str
    item: int
    category: int
    brand: str | None = None


class History:
    def __init__(
        self,
        *,
        n_items: int,
        t0: int,
        pop_half_life_s: float,
        context_half_life_s: float,
        context_by_user: bool,
        covis_window: int = 20,
        sessions_per_item: int = 200,
    ) -> None:
        self.t0 = t0
        self.pop_half_life_ms = pop_half_life_s * 1000.0
        self.context_half_life_ms = context_half_life_s * 1000.0
        self.context_by_user = context_by_user
        self.covis_window = covis_window
        self.popularity = np.zeros(n_items, dtype=np.float64)
        self.item_category: dict[int, int] = {}
        self.category_items: defaultdict[int, defaultdict[int, float]] = defaultdict(lambda: defaultdict(float))
        # Distinct items per session, first-seen order; and the latest sessions each item was seen in.
        self.session_items: dict[str, dict[int, None]] = {}
        self.item_sessions: defaultdict[int, deque[str]] = defaultdict(lambda: deque(maxlen=sessions_per_item))
        if n_items > MAX_DENSE_ITEMS:
            raise ReplayError(
                f"{n_items} distinct items: the co-visitation matrix is dense (n^2 float32), "
                f"kept to {MAX_DENSE_ITEMS} items; use --limit"
            )
        # Dense co-visitation counts: 4.6k items (Online Retail) take 85 MB and make a page a few
        # vector operations instead of a walk over thousands of dict entries.
        self.covis = np.zeros((n_items, n_items), dtype=np.float32)
        # Per context (session on clickstreams, customer on transactions): decayed item and category
        # weights; the item dict is kept in order of last touch (most recent last).
        self.context_items: dict[str, dict[int, float]] = {}
        self.context_categories: dict[str, defaultdict[int, float]] = {}
        # What the session worker's state would hold (``streams.worker.sessions``): the last events with their types,
        # event-weighted category and brand affinities; the cascade rebuilds its ``SessionContext`` from them.
        self.context_recent: dict[str, deque[tuple[int, str]]] = {}
        self.context_affinity: dict[str, defaultdict[int, float]] = {}
        self.context_brands: dict[str, defaultdict[str, float]] = {}
        self.observed = 0  # events folded in so far: a page planned at the same count saw the same past
        self._top_popular: np.ndarray = np.zeros(0, dtype=np.int64)
        self._popular_dirty = True
        self._category_top: dict[int, list[int]] = {}

    def context_key(self, event: Event) -> str | None:
        return event.user if self.context_by_user else event.session

    def observe(self, event: Event) -> None:
        """Fold one event into every count. Only the protocol calls this, after scoring its group."""
        self.observed += 1
        item, cat = event.item, event.category
        age = event.ts - self.t0
        w_pop = 2.0 ** (age / self.pop_half_life_ms)
        self.popularity[item] += w_pop
        self._popular_dirty = True
        self.item_category[item] = cat
        if cat != NO_CATEGORY:
            self.category_items[cat][item] += w_pop
            self._category_top.pop(cat, None)

        seen = self.session_items.setdefault(event.session, {})
        if item not in seen:
            if seen:
                others = list(seen)[-self.covis_window :]
                self.covis[others, item] += 1.0
                self.covis[item, others] += 1.0
            seen[item] = None
            self.item_sessions[item].append(event.session)

        key = self.context_key(event)
        if key is not None:
            w_ctx = 2.0 ** (age / self.context_half_life_ms)
            items = self.context_items.setdefault(key, {})
            items[item] = items.pop(item, 0.0) + w_ctx
            if cat != NO_CATEGORY:
                self.context_categories.setdefault(key, defaultdict(float))[cat] += w_ctx
            self.context_recent.setdefault(key, deque(maxlen=RECENT_ITEMS)).append((item, event.kind))
            w_event = EVENT_WEIGHTS.get(event.kind, 1.0) * w_ctx
            if cat != NO_CATEGORY:
                self.context_affinity.setdefault(key, defaultdict(float))[cat] += w_event
            if event.brand:
                self.context_brands.setdefault(key, defaultdict(float))[event.brand] += w_event

    def popular(self, n: int) -> list[int]:
        """The ``n`` items with the highest decayed count so far (fewer if fewer were seen)."""
        if self._popular_dirty or len(self._top_popular) < n:
            size = max(n, 256)
            seen = np.flatnonzero(self.popularity)
            scores = self.popularity[seen]
            if len(seen) > size:
                part = np.argpartition(-scores, size - 1)[:size]
                seen, scores = seen[part], scores[part]
            order = np.lexsort((seen, -scores))  # ties broken by item id, deterministic
            self._top_popular = seen[order]
            self._popular_dirty = False
        return [int(i) for i in self._top_popular[:n]]

    def category_popular(self, category: int) -> list[int]:
        top = self._category_top.get(category)
        if top is None:
            weights: dict[int, float] = self.category_items.get(category, {})
            top = sorted(weights, key=lambda i: (-weights[i], i))
            self._category_top[category] = top
        return top

    def recent_context_items(self, key: str | None, n: int) -> list[int]:
        """The context's last ``n`` distinct items, most recent first."""
        if key is None or key not in self.context_items:
            return []
        items = self.context_items[key]
        out: list[int] = []
        for item in reversed(items):
            out.append(item)
            if len(out) == n:
                break
        return out
