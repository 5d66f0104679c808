"""What the past knows at a point of the replay: the worker's own session states and ranker signals.

``History.observe`` is the only writer. It runs each event through the worker's per-event step
(``streams.worker.sessions.WorkerStep``: session state, ranker signals) on one partition, as one worker
would, so every baseline and every cascade page reads the signals the worker serves, not a copy. The
protocol calls it only after every event of a timestamp group has been scored, so a page never sees its
own event, nor anything that happened in the same second or later.

Besides, the evaluation keeps what no worker needs: the products seen so far (the universe every strategy
ranks from), the products each session has seen (to tell a novel product), and per context (the session,
or the customer on transactions) decayed own-item weights (recently viewed, re-buy). On transactions the
worker's state is keyed by the customer, so its context spans the customer's invoices.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.contracts.events import ClickEvent
from streams.worker.intent import TaxonomyIntent
from streams.worker.ranker import COVIS_WINDOW, RankerSignals
from streams.worker.sessions import SessionTracker, WorkerStep
from streams.worker.state import SessionState
from streams.worker.trigger import TriggerPolicy

PARTITION = 0  # one worker's view: every signal of the log in one partition
DEPTH = 200  # products per cached ranker list the evaluation may read (requests carry ``per_list`` of them)


class History:
    def __init__(
        self,
        *,
        t0: int,
        pop_half_life_s: float,
        context_half_life_s: float,
        context_by_user: bool,
        per_list: int = 24,
        window: int = COVIS_WINDOW,
    ) -> None:
        self.t0 = t0
        self.context_half_life_ms = context_half_life_s * 1000.0
        self.context_by_user = context_by_user
        self.ranker = RankerSignals({}, half_life_s=pop_half_life_s, per_list=per_list, depth=DEPTH, window=window)
        tracker = SessionTracker(intent_space=TaxonomyIntent(), policy=TriggerPolicy(), half_life_s=context_half_life_s)
        self.step = WorkerStep(tracker, self.ranker)
        self.states: dict[str, SessionState] = {}  # worker state per context
        self.known: dict[str, None] = {}  # products with an event so far, first-seen order: the universe
        self.session_items: dict[str, set[str]] = {}
        # context -> product -> (decayed count at ts, ts), last touch last
        self.own: dict[str, dict[str, tuple[float, int]]] = {}
        self.admitted: list[Callable[[str], None]] = []  # told of every newly known product (retrievers)
        self.observed = 0  # events folded in so far: a page planned at the same count saw the same past
        self.now_ms = t0

    def context_key(self, event: ClickEvent) -> str | None:
        return event.user_id if self.context_by_user else event.session_id

    def observe(self, event: ClickEvent) -> None:
        """Fold one event in. Only the protocol calls this, after scoring its group."""
        self.observed += 1
        self.now_ms = max(self.now_ms, event.ts)
        context = self.context_key(event)
        key = context if context is not None else event.session_id
        done = self.step.apply(self.states.get(key), event, partition=PARTITION, offset=self.observed)
        self.states[key] = done.state
        product = event.product_id
        if product is None:
            return
        if product not in self.known:
            self.known[product] = None
            for admit in self.admitted:
                admit(product)
        self.session_items.setdefault(event.session_id, set()).add(product)
        if context is not None:
            items = self.own.setdefault(context, {})
            weight, ts = items.pop(product, (0.0, event.ts))
            items[product] = (self._decayed(weight, ts, event.ts) + 1.0, event.ts)

    def own_items(self, context: str | None) -> dict[str, float]:
        """The context's own products with their counts decayed to now (recently viewed, re-buy)."""
        items = self.own.get(context) if context is not None else None
        return {p: self._decayed(w, ts, self.now_ms) for p, (w, ts) in items.items()} if items else {}

    def _decayed(self, weight: float, ts: int, now_ms: int) -> float:
        return weight * 0.5 ** (max(0, now_ms - ts) / self.context_half_life_ms)

    def recent(self, context: str | None, n: int) -> list[str]:
        """The context's last ``n`` distinct products in the worker's state, most recent first."""
        state = self.states.get(context) if context is not None else None
        if state is None:
            return []
        return list(dict.fromkeys(p for p, _ in reversed(state.recent)))[:n]

    def current_category(self, context: str | None) -> str | None:
        """The category of the context's latest product (what every list is filled from first)."""
        recent = self.recent(context, 1)
        return self.ranker.category_of(PARTITION, recent[0]) if recent else None

    def popular(self, n: int) -> list[str]:
        return [p for p, _ in self.ranker.popular(PARTITION, n, self.now_ms)]

    def category_popular(self, category: str | None, n: int) -> list[str]:
        if category is None:
            return []
        return [p for p, _ in self.ranker.category_popular(PARTITION, category, n, self.now_ms)]
