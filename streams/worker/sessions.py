"""Folding one clickstream event into a session's state, and deciding whether to regenerate.

Pure and synchronous: the Faust agent, the offline reference used by the tests and the trigger
tuning all call this one function, so they cannot disagree about what a state should be.
Time is event time, so a replay gives the same states however fast it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from models.context import price_band
from streams.contracts.events import EVENT_TYPES, ClickEvent
from streams.contracts.regen import RecentItem, RegenRequest, SessionContext
from streams.worker.intent import IntentSpace, load_intent_space
from streams.worker.ranker import RankerSignals
from streams.worker.state import (
    MAX_CART_CATEGORIES,
    RECENT_ITEMS,
    TOP_BRANDS,
    TOP_CATEGORIES,
    TOP_PRICE_BANDS,
    TOP_PURCHASED,
    SessionState,
    to_half,
)
from streams.worker.trigger import TriggerPolicy

if TYPE_CHECKING:
    from streams.runtime.settings import Settings

EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "cart": 3.0,
    "remove_from_cart": -2.0,
    "purchase": 4.0,
    "search": 0.0,
}
_TYPE_INDEX = {t: i for i, t in enumerate(EVENT_TYPES)}
_MIN_WEIGHT = 0.01


def _decay_add(weights: dict[str, float], factor: float, key: str | None, w: float, keep: int) -> dict[str, float]:
    """Decay every weight, add ``w`` to ``key``, keep the ``keep`` heaviest; rounded so JSON stays short."""
    out = {k: round(v * factor, 4) for k, v in weights.items()} if factor != 1.0 else dict(weights)
    if key is not None and w:
        out[key] = round(out.get(key, 0.0) + w, 4)
    if len(out) > keep:
        out = dict(ranked(out)[:keep])
    return {k: v for k, v in out.items() if v >= _MIN_WEIGHT}


def ranked(weights: dict[str, float]) -> list[tuple[str, float]]:
    """Heaviest first, ties by name, so every reader orders a session's affinities the same way."""
    return sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))


def _cosine_drift(a: np.ndarray, b: np.ndarray) -> float:
    nn = float(a.dot(a)) * float(b.dot(b))
    if nn == 0.0:
        return 0.0
    return 1.0 - float(a.dot(b)) / math.sqrt(nn)


def covisit_window(state: SessionState | None) -> list[str]:
    """The session's previous products for co-visit pairs: most recent first, consecutive repeats collapsed (the
    ranker pairs a new product with the latest ``window - 1`` of them)."""
    out: list[str] = []
    for product, _ in reversed(state.recent if state is not None else ()):
        if not out or out[-1] != product:
            out.append(product)
    return out


def session_context(state: SessionState, drift: float = 0.0) -> SessionContext:
    """What a regeneration request tells the generator about the session (it never reads the table)."""
    return SessionContext(
        recent=[RecentItem(p, EVENT_TYPES[t]) for p, t in state.recent],
        categories=[k for k, _ in ranked(state.categories)],
        brands=[k for k, _ in ranked(state.brands)],
        price_bands=[k for k, _ in ranked(state.price_bands)],
        last_query=state.last_query,
        counts={t: c for t, c in zip(EVENT_TYPES, state.counts, strict=True) if c},
        drift=round(drift, 4),
        purchased=[k for k, _ in ranked(state.purchased)],
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    state: SessionState
    request: RegenRequest | None
    duplicate: bool = False


class SessionTracker:
    @classmethod
    def from_settings(
        cls, settings: Settings, *, intent_space: IntentSpace | None = None, policy: TriggerPolicy | None = None
    ) -> SessionTracker:
        """The worker's tracker (the catalog's intent space unless given, the trigger policy and affinity half-life of
        ``settings``): one construction for the worker and everything that folds a log as it does."""
        return cls(
            intent_space=load_intent_space(settings.catalog.catalog_dir) if intent_space is None else intent_space,
            policy=TriggerPolicy.from_settings(settings) if policy is None else policy,
            half_life_s=settings.worker.affinity_half_life_s,
        )

    def __init__(self, *, intent_space: IntentSpace, policy: TriggerPolicy, half_life_s: float) -> None:
        self._intent_space = intent_space
        self._policy = policy
        self._half_life_ms = half_life_s * 1000.0

    def apply(
        self,
        state: SessionState | None,
        event: ClickEvent,
        *,
        partition: int,
        offset: int,
        committed: int | None = None,
    ) -> Outcome:
        """Return the next state; an offset at or below the last applied one is a redelivery.

        ``committed`` is the partition's committed offset as the worker last saw it: the requests of events below
        it have reached Kafka (Faust flushes the producer before it commits). Offline there is none, and every
        request counts as delivered when it is made."""
        if state is None:
            state = SessionState(user_id=event.user_id, partition=partition, first_ts=event.ts, last_ts=event.ts)
        elif partition == state.partition and offset <= state.last_offset:
            # The requests of the versions made since the commit may have been lost with the worker that wrote
            # this state (requests and state go to different topics, and RocksDB keeps a state the changelog
            # never got): the event behind each of them sends it again, with the same version.
            return Outcome(state, self._resend(event, state, offset), duplicate=True)

        floor = offset if committed is None else committed
        moved = partition != state.partition  # offsets of another partition say nothing here
        if moved:
            state.earlier_regens = []
        elif state.earlier_regens:
            state.earlier_regens = [e for e in state.earlier_regens if e[0] >= floor]

        dt = max(0, event.ts - state.last_ts)
        factor = 0.5 ** (dt / self._half_life_ms)
        w = EVENT_WEIGHTS[event.event_type]
        is_cart = event.event_type == "cart"
        new_cart_category = event.category if is_cart and event.category not in state.cart_categories else None
        is_new_cart_category = new_cart_category is not None

        state.partition = partition
        state.last_offset = offset
        state.last_ts = max(state.last_ts, event.ts)
        state.user_id = event.user_id or state.user_id
        state.counts[_TYPE_INDEX[event.event_type]] += 1
        if event.product_id is not None:
            state.recent = [*state.recent, (event.product_id, _TYPE_INDEX[event.event_type])][-RECENT_ITEMS:]
        if event.query is not None:
            state.last_query = event.query
        if new_cart_category is not None:
            state.cart_categories = [*state.cart_categories, new_cart_category][-MAX_CART_CATEGORIES:]
        state.categories = _decay_add(state.categories, factor, event.category, w, TOP_CATEGORIES)
        state.brands = _decay_add(state.brands, factor, event.brand, w, TOP_BRANDS)
        band = price_band(event.price) if event.price is not None else None
        state.price_bands = _decay_add(state.price_bands, factor, band, w, TOP_PRICE_BANDS)
        bought = event.product_id if event.event_type == "purchase" else None
        if bought is not None or state.purchased:
            state.purchased = _decay_add(state.purchased, factor, bought, 1.0, TOP_PURCHASED)

        intent = state.intent * np.float32(factor)
        vec = self._intent_space.vector(event)
        if vec is not None and w:
            intent += np.float32(w) * vec
        state.intent_half = to_half(intent)
        intent = state.intent

        generated = state.version > 0
        drift = _cosine_drift(intent, state.regen_intent) if generated else 0.0
        state.drift_pending = generated and self._policy.armed(drift, state.drift_pending)
        reason = self._policy.decide(
            generated_before=generated,
            n_events=state.n_events,
            since_last_regen_ms=event.ts - state.last_regen_ts,
            is_search=event.event_type == "search",
            is_new_cart_category=is_new_cart_category,
            drift_armed=state.drift_pending,
        )
        if reason is None:
            return Outcome(state, None)

        if not moved and state.version > 0 and state.regen_offset >= floor and state.last_reason is not None:
            state.earlier_regens = [*state.earlier_regens, (state.regen_offset, state.last_reason)]
        state.version += 1
        state.last_regen_ts = event.ts
        state.regen_offset = offset
        state.last_reason = reason.value
        state.regen_intent_half = state.intent_half
        state.drift_pending = False
        return Outcome(state, self._request(event, state, reason.value, drift))

    def _resend(self, event: ClickEvent, state: SessionState, offset: int) -> RegenRequest | None:
        """The request of the version a redelivered event made, if its request may have been lost; the context is
        the session's latest, as its consumers keep the first copy of a version and newer versions follow."""
        if offset == state.regen_offset and state.last_reason is not None:
            return self._request(event, state, state.last_reason, 0.0)
        earlier = state.earlier_regens
        for i, (made_at, reason) in enumerate(earlier):
            if made_at == offset:
                return self._request(event, state, reason, 0.0, version=state.version - len(earlier) + i)
        return None

    @staticmethod
    def _request(
        event: ClickEvent, state: SessionState, reason: str, drift: float, *, version: int | None = None
    ) -> RegenRequest:
        return RegenRequest(
            session_id=event.session_id,
            user_id=state.user_id,
            version=state.version if version is None else version,
            reason=reason,
            event_ts=event.ts,
            context=session_context(state, drift),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One event folded: the session's next state, the request to send (ranker candidates attached), and the
    ranker keys written (for the changelog flush)."""

    state: SessionState
    request: RegenRequest | None
    duplicate: bool = False
    touched: list[bytes] = field(default_factory=list)


class WorkerStep:
    """The worker's whole per-event step: session state, ranker signals, request candidates. The Faust agent,
    ``streams.worker.fold`` and the offline evaluation all call ``apply``, so they cannot disagree."""

    def __init__(self, tracker: SessionTracker, ranker: RankerSignals) -> None:
        self.tracker = tracker
        self.ranker = ranker

    def apply(
        self,
        previous: SessionState | None,
        event: ClickEvent,
        *,
        partition: int,
        offset: int,
        committed: int | None = None,
    ) -> Step:
        window = covisit_window(previous)
        outcome = self.tracker.apply(previous, event, partition=partition, offset=offset, committed=committed)
        touched: list[bytes] = []
        if not outcome.duplicate:
            touched = self.ranker.observe_click(partition, event, window, EVENT_WEIGHTS[event.event_type])
        request = outcome.request
        if request is not None:
            request = replace(request, ranker=self.ranker.for_request(partition, request.context, request.event_ts))
        return Step(outcome.state, request, outcome.duplicate, touched)
