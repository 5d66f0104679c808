"""Ranker signals: decayed popularity ordering, per-category lists, co-visitation, and their encoding."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from streams.contracts.events import ClickEvent
from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.runtime.settings import Settings, StoreKind
from streams.worker.app import create_app
from streams.worker.ranker import (
    _PRUNE_AT,
    COVIS_WINDOW,
    NEIGHBOURS,
    ProductSignal,
    RankerSignals,
    signal_key,
    split_key,
)
from streams.worker.sessions import covisit_window
from streams.worker.state import SessionState

HOUR_MS = 3_600_000


def signals(**kwargs: object) -> RankerSignals:
    return RankerSignals({}, half_life_s=3600, stale_after=1, **kwargs)  # type: ignore[arg-type]


def test_decay_lets_recent_interest_overtake_an_older_larger_count() -> None:
    r = signals()
    for _ in range(3):
        r.observe(0, "old", "a", 1.0, 0)
    for _ in range(2):
        r.observe(0, "new", "a", 1.0, 2 * HOUR_MS)  # old decayed to 3/4 < 2
    top = r.candidates(0, now_ms=2 * HOUR_MS, categories=["a"], recent=[]).popular
    assert [p for p, _ in top] == ["new", "old"]
    assert top[1][1] == 0.75  # 3 events, two half-lives ago


def test_partitions_are_kept_apart() -> None:
    r = signals()
    r.observe(0, "p0", "a", 1.0, 0)
    r.observe(1, "p1", "a", 5.0, 0)
    assert [p for p, _ in r.candidates(0, now_ms=0, categories=[], recent=[]).popular] == ["p0"]
    assert r.partitions() == {0, 1}
    assert split_key(signal_key(3, "a/b")) == (3, "a/b")


def test_category_lists_only_hold_their_category() -> None:
    r = signals()
    r.observe(0, "x", "tv", 3.0, 0)
    r.observe(0, "y", "phone", 2.0, 0)
    r.observe(0, "z", "tv", 1.0, 0)
    c = r.candidates(0, now_ms=0, categories=["tv", "none"], recent=[])
    assert [p for p, _ in c.by_category["tv"]] == ["x", "z"]
    assert c.by_category["none"] == []


def test_covisitation_is_symmetric_and_skips_the_session_items() -> None:
    r = signals()
    r.observe(0, "a", None, 1.0, 0)
    r.observe(0, "b", None, 1.0, 1, co_visited=["a"])
    r.observe(0, "c", None, 1.0, 2, co_visited=["b", "a"])
    assert [p for p, _ in r.covisited(0, ["a"])] == ["c", "b"]  # a tie: c, the more recent, is more popular
    # Most recent first, weights 1, 1/2: from c (recent) b scores 1, a 1; a is in the session itself.
    assert r.covisited(0, ["c", "a"]) == [("b", 1.5)]


def test_neighbour_lists_stay_bounded() -> None:
    r = signals()
    r.observe(0, "hub", None, 1.0, 0)
    for i in range(200):
        r.observe(0, f"p{i}", None, 1.0, i, co_visited=["hub"])
    assert len(r.store[signal_key(0, "hub")].neighbours) <= _PRUNE_AT
    assert len(r.covisited(0, ["hub"])) == 24
    assert NEIGHBOURS < _PRUNE_AT


def test_signal_and_candidates_round_trip_through_their_encodings() -> None:
    s = ProductSignal("a.b", 2.5, 123, {"x": 1.0})
    assert ProductSignal.from_bytes(s.to_bytes()) == s
    request = RegenRequest(
        session_id="s",
        user_id=None,
        version=2,
        reason="search",
        event_ts=5,
        context=SessionContext([RecentItem("1", "view")], ["a"], [], [], None, {"view": 1}, 0.0),
        ranker=RankerCandidates(popular=[("1", 2.0)], by_category={"a": [("2", 1.0)]}, covisited=[("3", 0.5)]),
    )
    assert RegenRequest.from_json(request.to_json()) == request


def _view(session: str, product: str, ts: int, category: str | None = None) -> ClickEvent:
    return ClickEvent(
        event_id=f"{session}{ts}", session_id=session, event_type="view", product_id=product, category=category, ts=ts
    )


def _browse(r: RankerSignals, session: str, products: str) -> None:
    """Each product of ``products`` viewed in turn, through the worker's window of the session's state."""
    state = SessionState()
    for ts, product in enumerate(products):
        r.observe_click(0, _view(session, product, ts), covisit_window(state), 1.0)
        state.recent = [*state.recent, (product, 0)]


def test_pairs_span_a_window_of_consecutive_events_with_repeats_collapsed() -> None:
    r = signals()
    _browse(r, "s", "AABBCDEFG")  # collapsed: A B C D E F G
    assert COVIS_WINDOW == 5
    neighbours = r.store[signal_key(0, "A")].neighbours
    assert neighbours == {"B": 1.0, "C": 1.0, "D": 1.0, "E": 1.0}  # F is 5 collapsed events after A: out
    narrow = RankerSignals({}, half_life_s=3600, window=3)
    _browse(narrow, "s", "AABBCDEFG")
    assert narrow.store[signal_key(0, "A")].neighbours == {"B": 1.0, "C": 1.0}
    assert narrow.store[signal_key(0, "D")].neighbours == {"B": 1.0, "C": 1.0, "E": 1.0, "F": 1.0}
    r2 = signals()
    _browse(r2, "s", "ABA")  # a return to A pairs A and B again; the immediate repeat of A in "AAB" would not
    assert r2.store[signal_key(0, "A")].neighbours == {"B": 2.0}


def test_the_window_ignores_immediate_repeats() -> None:
    state = SessionState(recent=[(p, 0) for p in "ABBBCCDEEF"][-8:])
    assert covisit_window(state) == ["F", "E", "D", "C", "B"]
    assert covisit_window(None) == []


def test_session_knn_weights_the_last_three_products_one_half_a_quarter() -> None:
    r = signals()
    for product, partner in (("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")):
        r.observe(0, product, None, 1.0, 0)
        r.observe(0, partner, None, 1.0, 0, co_visited=[product])
    assert r.covisited(0, ["a", "b", "c", "d"]) == [("x", 1.0), ("y", 0.5), ("z", 0.25)]  # d is a 4th: out


def test_a_request_lists_the_latest_products_category_first() -> None:
    r = signals()
    r.observe(0, "tv1", "tv", 5.0, 0)
    r.observe(0, "ph1", "phone", 1.0, 0)
    context = SessionContext(
        [RecentItem("tv1", "view"), RecentItem("ph1", "view")], ["tv", "audio"], [], [], None, {}, 0.0
    )
    assert list(r.for_request(0, context, 0).by_category) == ["phone", "tv", "audio"]


def test_a_young_partition_is_reranked_before_its_cache_goes_stale() -> None:
    r = RankerSignals({}, half_life_s=3600, stale_after=500)
    r.observe(0, "first", None, 1.0, 0)
    assert [p for p, _ in r.popular(0, 5, 0)] == ["first"]
    r.observe(0, "second", None, 3.0, 0)
    assert [p for p, _ in r.popular(0, 5, 0)] == ["second", "first"]


def _scan(store: dict[bytes, ProductSignal], partition: int, depth: int) -> tuple[list[str], dict[str, list[str]]]:
    """What the top lists were before ``observe`` kept them: a sort of the partition's whole store."""
    prefix = f"{partition}/".encode()
    ranked = sorted(
        ((s.rank_key(3_600_000.0), split_key(k)[1], s.category) for k, s in store.items() if k.startswith(prefix)),
        key=lambda t: (-t[0], t[1]),
    )
    by_category: dict[str, list[str]] = {}
    for _, product, category in ranked:
        if category is not None and len(by_category.setdefault(category, [])) < depth:
            by_category[category].append(product)
    return [p for _, p, _ in ranked[:depth]], by_category


def test_kept_top_lists_equal_a_sort_of_the_store_on_every_partition() -> None:
    """Zero weights (new products at -inf), repeats, ties, categories appearing, changing and lost: the lists
    ``observe`` keeps by insertion are, at every rebuild, what a full sort of the store gives."""
    rng = random.Random(7)
    live = RankerSignals({}, half_life_s=3600, stale_after=1, per_list=5)
    products = [f"p{i}" for i in range(60)]
    for step in range(4000):
        product = rng.choice(products)
        category = rng.choice([None, f"c{int(product[1:]) % 4}", f"c{int(product[1:]) % 4}", "moved"])
        ts = (step // 3) * 60_000  # same-time updates tie
        live.observe(rng.randrange(3), product, category, rng.choice([0.0, 1.0, 1.0, 3.0]), ts)
        if step % 97 == 0:
            for partition in range(3):
                assert live._tops(partition) == _scan(live.store, partition, 5), step  # type: ignore[arg-type]


def test_a_stale_cache_serves_the_lists_of_its_last_rebuild() -> None:
    """``stale_after`` keeps its meaning: between rebuilds the lists do not move, then show every update."""
    r = RankerSignals({}, half_life_s=3600, stale_after=3, per_list=2)
    for product, weight in [("a", 3.0), ("b", 2.0), ("c", 1.0)]:
        r.observe(0, product, "x", weight, 0)
    assert [p for p, _ in r.popular(0, 2, 0)] == ["a", "b"]
    r.observe(0, "c", "x", 5.0, 0)
    r.observe(0, "c", "x", 5.0, 0)
    assert [p for p, _ in r.popular(0, 2, 0)] == ["a", "b"]  # two updates: the cache still stands
    r.observe(0, "b", "x", 0.0, 0)
    assert [p for p, _ in r.popular(0, 2, 0)] == ["c", "a"]
    assert r._tops(0)[1] == {"x": ["c", "a"]}


def test_a_store_written_behind_observe_shows_after_reset() -> None:
    """A changelog restore writes the store directly; the worker resets the ranker when a rebalance completes."""
    r = signals()
    r.observe(0, "seen", "a", 1.0, 0)
    assert [p for p, _ in r.popular(0, 5, 0)] == ["seen"]
    r.store[signal_key(0, "restored")] = ProductSignal("a", 9.0, 0)
    assert [p for p, _ in r.popular(0, 5, 0)] == ["seen"]  # the kept lists do not know it yet
    r.reset()
    assert [p for p, _ in r.popular(0, 5, 0)] == ["restored", "seen"]


def test_the_worker_resets_its_ranker_when_a_rebalance_completes(tmp_path: Path) -> None:
    app, worker = create_app(Settings(store=StoreKind.MEMORY, data_dir=tmp_path))
    worker.ranker.observe(0, "seen", "a", 1.0, 0)
    worker.ranker.popular(0, 5, 0)
    assert worker.ranker._live
    asyncio.run(app.on_rebalance_complete.send())
    assert not worker.ranker._live
