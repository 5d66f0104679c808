"""SessionTracker.apply: dedup, decay, caps, and when a regeneration is requested."""

from __future__ import annotations

import copy
import itertools
import random
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from streams.contracts.events import ClickEvent
from streams.contracts.regen import RegenRequest
from streams.worker.intent import TaxonomyIntent
from streams.worker.sessions import SessionTracker, price_band
from streams.worker.state import (
    MAX_CART_CATEGORIES,
    RECENT_ITEMS,
    TOP_BRANDS,
    TOP_CATEGORIES,
    TOP_PRICE_BANDS,
    SessionState,
)
from streams.worker.trigger import TriggerPolicy, TriggerReason

T0 = 1_569_888_000_000
HALF_LIFE_S = 600.0
COOLDOWN_MS = 60_000


def ev(n: int, ts: int, event_type: str = "view", **fields: Any) -> ClickEvent:
    base: dict[str, Any] = {
        "event_id": f"e{n}",
        "session_id": "s1",
        "user_id": "u1",
        "event_type": event_type,
        "ts": ts,
    }
    if event_type != "search":
        base["product_id"] = f"p{n}"
    return ClickEvent(**{**base, **fields})


def tracker(min_events: int = 3, cooldown_ms: int = COOLDOWN_MS, half_life_s: float = HALF_LIFE_S) -> SessionTracker:
    policy = TriggerPolicy(min_events=min_events, cooldown_ms=cooldown_ms)
    return SessionTracker(intent_space=TaxonomyIntent(), policy=policy, half_life_s=half_life_s)


class Feed:
    """Applies events in order with increasing offsets, as one partition would deliver them."""

    def __init__(self, t: SessionTracker) -> None:
        self.tracker = t
        self.state: SessionState | None = None
        self.offset = 0
        self.requests: list[RegenRequest | None] = []

    def __call__(self, event: ClickEvent) -> RegenRequest | None:
        out = self.tracker.apply(self.state, event, partition=0, offset=self.offset)
        assert not out.duplicate
        self.offset += 1
        self.state = out.state
        self.requests.append(out.request)
        return out.request

    @property
    def s(self) -> SessionState:
        assert self.state is not None
        return self.state


# --- dedup ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [5, 4, 0])
def test_redelivered_offset_is_a_duplicate_and_changes_nothing(offset: int) -> None:
    t = tracker()
    state = None
    for i in range(3):
        state = t.apply(state, ev(i, T0 + i * 1000, category="a.b"), partition=2, offset=3 + i).state
    assert state is not None and state.last_offset == 5
    before = copy.deepcopy(state)
    out = t.apply(state, ev(9, T0 + 10_000, "cart", category="x.y"), partition=2, offset=offset)
    assert out.duplicate
    # offset 5 is the event that triggered version 1: its redelivery re-sends that request, nothing else does
    assert (out.request.version if out.request else None) == (1 if offset == 5 else None)
    assert out.state == before


def test_next_offset_and_other_partition_are_not_duplicates() -> None:
    t = tracker()
    state = t.apply(None, ev(0, T0), partition=1, offset=10).state
    out = t.apply(state, ev(1, T0 + 1), partition=1, offset=11)
    assert not out.duplicate and out.state.n_events == 2
    # after a repartition the same session may arrive from another partition with a lower offset
    out = t.apply(out.state, ev(2, T0 + 2), partition=3, offset=0)
    assert not out.duplicate
    assert (out.state.n_events, out.state.partition, out.state.last_offset) == (3, 3, 0)


def test_first_event_initialises_the_state() -> None:
    out = tracker().apply(None, ev(0, T0 + 5, "cart", category="a.b", brand="acme", price=12.0), partition=4, offset=7)
    s = out.state
    assert (s.user_id, s.partition, s.last_offset, s.first_ts, s.last_ts) == ("u1", 4, 7, T0 + 5, T0 + 5)
    assert s.counts == [0, 1, 0, 0, 0]
    assert s.recent == [("p0", 1)]
    assert s.categories == {"a.b": 3.0} and s.brands == {"acme": 3.0} and s.price_bands == {"8-16": 3.0}
    assert s.cart_categories == ["a.b"]


# --- decay ------------------------------------------------------------------------------------------


def test_weights_halve_after_one_half_life() -> None:
    f = Feed(tracker(min_events=100))
    f(ev(0, T0, "cart", category="a.b", brand="acme", price=10.0))
    norm0 = float(np.linalg.norm(f.s.intent))
    # a search carries no weight: only the decay acts on the affinities and the intent
    f(ev(1, T0 + int(HALF_LIFE_S * 1000), "search", query="shoes"))
    assert f.s.categories == {"a.b": 1.5}
    assert f.s.brands == {"acme": 1.5}
    assert f.s.price_bands == {"8-16": 1.5}
    assert float(np.linalg.norm(f.s.intent)) == pytest.approx(norm0 / 2, rel=2e-3)
    f(ev(2, T0 + int(3 * HALF_LIFE_S * 1000), "view", category="a.b"))
    assert f.s.categories == {"a.b": pytest.approx(1.5 / 4 + 1.0)}


def test_out_of_order_event_does_not_amplify() -> None:
    f = Feed(tracker(min_events=100))
    f(ev(0, T0 + 60_000, category="a.b"))
    f(ev(1, T0, category="a.b"))  # late event: no negative decay (growth) of the older weight
    assert f.s.categories == {"a.b": 2.0}
    assert f.s.last_ts == T0 + 60_000


def test_remove_from_cart_can_drop_a_category() -> None:
    f = Feed(tracker(min_events=100))
    f(ev(0, T0, "view", category="a.b"))
    f(ev(1, T0, "view", category="c.d"))
    f(ev(2, T0, "remove_from_cart", category="a.b"))
    assert f.s.categories == {"c.d": 1.0}


# --- caps -------------------------------------------------------------------------------------------


def test_recent_items_keep_the_newest_eight_in_order() -> None:
    f = Feed(tracker(min_events=100))
    types = ["view", "cart", "purchase", "remove_from_cart"]
    for i in range(RECENT_ITEMS + 5):
        f(ev(i, T0 + i, types[i % 4]))
    f(ev(99, T0 + 100, "search", query="q"))  # searches name no product
    assert RECENT_ITEMS == 8
    expected_ids = [f"p{i}" for i in range(5, RECENT_ITEMS + 5)]
    assert [p for p, _ in f.s.recent] == expected_ids
    index = {"view": 0, "cart": 1, "remove_from_cart": 2, "purchase": 3}
    assert [t for _, t in f.s.recent] == [index[types[i % 4]] for i in range(5, RECENT_ITEMS + 5)]


def test_top_k_keeps_the_heaviest() -> None:
    f = Feed(tracker(min_events=1000))
    n = 12
    for i in range(n):  # one minute apart: every newer value outweighs the decayed older ones
        f(ev(i, T0 + i * 60_000, category=f"cat{i:02}", brand=f"brand{i:02}", price=float(2**i)))
    assert set(f.s.categories) == {f"cat{i:02}" for i in range(n - TOP_CATEGORIES, n)}
    assert set(f.s.brands) == {f"brand{i:02}" for i in range(n - TOP_BRANDS, n)}
    assert set(f.s.price_bands) == {price_band(float(2**i)) for i in range(n - TOP_PRICE_BANDS, n)}
    # a heavy old category survives newer light ones
    f(ev(50, T0 + n * 60_000, "purchase", category="big"))
    f(ev(51, T0 + n * 60_000, "purchase", category="big"))
    for i in range(10):
        f(ev(60 + i, T0 + n * 60_000 + i, category=f"late{i}"))
    assert "big" in f.s.categories
    assert len(f.s.categories) == TOP_CATEGORIES


def test_cart_categories_are_capped_and_unique() -> None:
    f = Feed(tracker(min_events=1000))
    for i in range(MAX_CART_CATEGORIES + 3):
        f(ev(i, T0 + i, "cart", category=f"c{i}"))
        f(ev(100 + i, T0 + i, "cart", category=f"c{i}"))
    assert f.s.cart_categories == [f"c{i}" for i in range(3, MAX_CART_CATEGORIES + 3)]


@pytest.mark.parametrize(
    ("price", "band"),
    [
        (0.0, "0-1"),
        (0.5, "0-1"),
        (0.99, "0-1"),
        (1.0, "1-2"),
        (1.99, "1-2"),
        (2.0, "2-4"),
        (3.99, "2-4"),
        (4.0, "4-8"),
        (7.99, "4-8"),
        (8.0, "8-16"),
        (130.76, "128-256"),
        (1023.99, "512-1024"),
        (1024.0, "1024-2048"),
        (2.0**40, f"{2**40}-{2**41}"),
    ],
)
def test_price_band_boundaries(price: float, band: str) -> None:
    assert price_band(price) == band


def test_every_price_lies_in_its_band() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        price = round(rng.uniform(1, 100_000), 2)
        low, high = (int(x) for x in price_band(price).split("-"))
        assert low <= price < high and high == 2 * low


# --- triggers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("min_events", [1, 3, 5])
def test_first_signal_at_exactly_min_events(min_events: int) -> None:
    f = Feed(tracker(min_events=min_events))
    for i in range(min_events - 1):
        assert f(ev(i, T0 + i, category="a.b")) is None
    req = f(ev(min_events, T0 + min_events, category="a.b", brand="acme", price=3.0))
    assert req is not None
    assert (req.reason, req.version, req.session_id, req.user_id) == ("first_signal", 1, "s1", "u1")
    assert req.event_ts == T0 + min_events
    assert req.context.counts == {"view": min_events}
    assert req.context.categories == ["a.b"]
    assert f.s.version == 1 and f.s.last_reason == "first_signal" and f.s.last_regen_ts == T0 + min_events
    assert f.s.regen_intent_half == f.s.intent_half


def test_versions_strictly_increase_over_a_long_session() -> None:
    rng = random.Random(11)
    f = Feed(tracker(cooldown_ms=5_000, half_life_s=60.0))
    ts = T0
    cats = [f"dept{d}.cat{c}" for d in range(4) for c in range(3)]
    for i in range(600):
        ts += rng.randint(0, 20_000)
        kind = rng.choices(["view", "cart", "remove_from_cart", "purchase", "search"], [88, 4, 2, 4, 2])[0]
        dept = i // 100 % 4  # interest moves to another department every 100 events
        category = rng.choice(cats[3 * dept : 3 * dept + 3])
        extra: dict[str, Any] = {"query": f"q{i}"} if kind == "search" else {"category": category}
        f(ev(i, ts, kind, **extra))
    versions = [r.version for r in f.requests if r is not None]
    assert len(versions) > 20
    assert versions == list(range(1, len(versions) + 1))
    assert f.s.version == versions[-1]
    reasons = {r.reason for r in f.requests if r is not None}
    assert reasons == {r.value for r in TriggerReason}
    # every request after the first respects the cooldown
    times = [r.event_ts for r in f.requests if r is not None]
    assert all(b - a >= 5_000 for a, b in itertools.pairwise(times))


def _generated(f: Feed, category: str = "a.b") -> int:
    """Three views: a first_signal at the returned time."""
    for i in range(3):
        f(ev(i, T0 + i, category=category))
    assert f.s.version == 1
    return T0 + 2


def test_cooldown_suppresses_then_allows() -> None:
    f = Feed(tracker())
    t1 = _generated(f)
    assert f(ev(10, t1 + COOLDOWN_MS - 1, "search", query="boots")) is None
    assert f.s.last_query == "boots"
    req = f(ev(11, t1 + COOLDOWN_MS, "search", query="boots"))
    assert req is not None and req.reason == "search" and req.version == 2
    assert req.context.last_query == "boots"
    assert f(ev(12, t1 + COOLDOWN_MS + 1, "search", query="sandals")) is None


def test_search_triggers_even_before_min_events() -> None:
    f = Feed(tracker(min_events=3))
    req = f(ev(0, T0, "search", query="tv"))
    assert req is not None and req.reason == "search" and req.version == 1


def test_cart_in_new_category_triggers_once_per_category() -> None:
    f = Feed(tracker())
    t1 = _generated(f, "a.b")
    req = f(ev(10, t1 + COOLDOWN_MS, "cart", category="a.b"))
    assert req is not None and req.reason == "cart_new_category"
    # same category again, well after the cooldown: no new category, and the intent has not moved
    assert f(ev(11, t1 + 3 * COOLDOWN_MS, "cart", category="a.b")) is None
    assert f.s.cart_categories == ["a.b"]


def test_cart_new_category_during_cooldown_is_not_retried_later() -> None:
    f = Feed(tracker())
    t1 = _generated(f, "a.b")
    assert f(ev(10, t1 + 1, "cart", category="a.b")) is None
    assert f.s.cart_categories == ["a.b"]
    assert f(ev(11, t1 + 2 * COOLDOWN_MS, "cart", category="a.b")) is None


def test_intent_drift_triggers_after_a_change_of_interest() -> None:
    f = Feed(tracker())
    t1 = _generated(f, "electronics.audio.headphone")
    reasons = []
    for i in range(6):
        req = f(ev(20 + i, t1 + COOLDOWN_MS + i * 1000, category="furniture.kitchen.table"))
        reasons.append(req.reason if req else None)
    assert "intent_drift" in reasons
    req = next(r for r in f.requests if r is not None and r.reason == "intent_drift")
    assert req.context.drift >= 0.35
    assert f.s.drift_pending is False


def test_drift_stays_armed_through_the_cooldown() -> None:
    f = Feed(tracker(cooldown_ms=10 * 60_000, half_life_s=60.0))
    t1 = _generated(f, "electronics.audio.headphone")
    f(ev(20, t1 + 120_000, category="furniture.kitchen.table"))
    f(ev(21, t1 + 180_000, category="furniture.kitchen.table"))
    assert f.s.drift_pending and f.requests[-1] is None
    req = f(ev(22, t1 + 10 * 60_000, category="furniture.kitchen.table"))
    assert req is not None and req.reason == "intent_drift"


def test_no_drift_when_interest_is_stable() -> None:
    f = Feed(tracker())
    t1 = _generated(f, "a.b")
    for i in range(20):
        assert f(ev(30 + i, t1 + (i + 1) * COOLDOWN_MS, category="a.b")) is None


# --- hysteresis -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "was_armed", "armed"),
    [
        (0.35, False, True),
        (0.9, False, True),
        (0.349, False, False),
        (0.25, False, False),
        (0.25, True, True),
        (0.2, True, True),
        (0.199, True, False),
        (0.0, True, False),
        (0.35, True, True),
    ],
)
def test_hysteresis(drift: float, was_armed: bool, armed: bool) -> None:
    assert TriggerPolicy(drift_high=0.35, drift_low=0.2).armed(drift, was_armed) is armed


def test_drift_low_above_high_is_rejected() -> None:
    with pytest.raises(ValueError, match="drift_low"):
        TriggerPolicy(drift_high=0.2, drift_low=0.3)
    assert TriggerPolicy(drift_high=0.3, drift_low=0.3).armed(0.3, False)


def test_decide_order_and_cooldown() -> None:
    p = TriggerPolicy(min_events=3, cooldown_ms=1000)
    kw: dict[str, Any] = {"is_search": True, "is_new_cart_category": True, "drift_armed": True}
    assert p.decide(generated_before=False, n_events=3, since_last_regen_ms=0, **kw) is TriggerReason.FIRST_SIGNAL
    assert p.decide(generated_before=True, n_events=9, since_last_regen_ms=999, **kw) is None
    assert p.decide(generated_before=True, n_events=9, since_last_regen_ms=1000, **kw) is TriggerReason.SEARCH
    kw["is_search"] = False
    assert (
        p.decide(generated_before=True, n_events=9, since_last_regen_ms=1000, **kw) is TriggerReason.CART_NEW_CATEGORY
    )
    kw["is_new_cart_category"] = False
    assert p.decide(generated_before=True, n_events=9, since_last_regen_ms=1000, **kw) is TriggerReason.INTENT_DRIFT
    # never generated: drift means nothing
    assert p.decide(generated_before=False, n_events=2, since_last_regen_ms=0, **kw) is None


def test_request_round_trips_through_json() -> None:
    f = Feed(tracker())
    f(ev(0, T0, category="a.b", brand="acme", price=5.0))
    f(ev(1, T0 + 1, "search", query="lamp"))
    req = f.requests[-1]
    assert req is not None
    assert RegenRequest.from_json(req.to_json()) == req


def test_redelivered_trigger_event_resends_its_request_with_the_same_version() -> None:
    """A worker may die after the state reached the changelog but before its request reached Kafka."""
    t = tracker(min_events=2)
    events = [ev(i, T0 + i * 1000, category="a.b") for i in range(4)]
    state = None
    requests = []
    for offset, e in enumerate(events):
        out = t.apply(state, e, partition=0, offset=offset)
        state, requests = out.state, [*requests, out.request]
    first = requests[1]
    assert first is not None and first.version == 1 and requests[2:] == [None, None]

    before = copy.deepcopy(state)
    resent = t.apply(state, events[1], partition=0, offset=1)
    assert resent.duplicate and resent.state == before
    assert resent.request is not None
    assert (resent.request.session_id, resent.request.version, resent.request.reason) == (
        first.session_id,
        first.version,
        first.reason,
    )
    for offset in (0, 2, 3):  # redeliveries of events that triggered nothing stay silent
        assert t.apply(state, events[offset], partition=0, offset=offset).request is None


def test_every_version_made_since_the_commit_is_resent_by_the_event_behind_it() -> None:
    """A SIGKILL can take several versions' requests out of the producer's buffer while RocksDB keeps the state of
    the last event (seen in CI: a session got version 2 only); the requests below the commit were delivered."""
    t = tracker(min_events=2, cooldown_ms=0)
    events = [
        ev(0, T0, category="a.b"),
        ev(1, T0 + 1000, category="a.b"),
        ev(2, T0 + 2000, "search", query="lamp"),
        ev(3, T0 + 3000, "cart", category="c.d"),
        ev(4, T0 + 4000, category="c.d"),
    ]
    made: dict[int, RegenRequest] = {}
    state = None
    for offset, e in enumerate(events):
        out = t.apply(state, e, partition=0, offset=offset, committed=1)
        state = out.state
        if out.request is not None:
            made[offset] = out.request
    assert state is not None
    assert [r.version for r in made.values()] == [1, 2, 3] and list(made) == [1, 2, 3]
    # Versions 1 (offset 1) and 2 are at or above the commit: remembered; 3 is the current version.
    assert state.earlier_regens == [(1, made[1].reason), (2, made[2].reason)]

    before = copy.deepcopy(state)
    for offset, e in enumerate(events):
        resent = t.apply(state, e, partition=0, offset=offset, committed=1)
        assert resent.duplicate and resent.state == before
        assert _identity(resent.request) == _identity(made.get(offset)), offset

    # After a commit at 3 the next event forgets what was delivered: offset 1 and 2 no longer resend.
    later = t.apply(state, ev(5, T0 + 5000, category="c.d"), partition=0, offset=5, committed=3)
    assert later.state.earlier_regens == []
    assert t.apply(later.state, events[2], partition=0, offset=2, committed=3).request is None
    assert t.apply(later.state, events[3], partition=0, offset=3, committed=3).request is not None  # current


def _identity(request: RegenRequest | None) -> tuple[int, str, int] | None:
    return None if request is None else (request.version, request.reason, request.event_ts)


def test_offline_every_request_counts_as_delivered() -> None:
    f = Feed(tracker(min_events=2, cooldown_ms=0))
    for e in (ev(0, T0), ev(1, T0 + 1000), ev(2, T0 + 2000, "search", query="lamp")):
        f(e)
    assert f.s.version == 2 and f.s.earlier_regens == []


def test_earlier_versions_round_trip_and_a_state_written_before_them_reads_back() -> None:
    f = Feed(tracker(min_events=2))
    for e in (ev(0, T0), ev(1, T0 + 1000)):
        f(e)
    state = f.s
    state.earlier_regens = [(7, "threshold")]
    assert SessionState.from_bytes(state.to_bytes()) == state

    data = state.to_bytes()
    _, n = struct.unpack_from("<BH", data)
    body = orjson.loads(data[3 : 3 + n])
    old_body = orjson.dumps(body[:18])  # the layout before field 18
    old = SessionState.from_bytes(struct.pack("<BH", 1, len(old_body)) + old_body + data[3 + n :])
    assert old.earlier_regens == [] and old.version == state.version and old.regen_offset == state.regen_offset
