"""Ranker signals: decayed popularity ordering, per-category lists, co-visitation, and their encoding."""

from __future__ import annotations

from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.worker.ranker import NEIGHBOURS, ProductSignal, RankerSignals, signal_key, split_key

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
    assert [p for p, _ in r.covisited(0, ["a"])] == ["b", "c"]
    # Most recent first, weights 1, 1/2: from c (recent) b scores 1, a 1; a is in the session itself.
    assert r.covisited(0, ["c", "a"]) == [("b", 1.5)]


def test_neighbour_lists_stay_bounded() -> None:
    r = signals()
    r.observe(0, "hub", None, 1.0, 0)
    for i in range(200):
        r.observe(0, f"p{i}", None, 1.0, i, co_visited=["hub"])
    assert len(r.store[signal_key(0, "hub")].neighbours) <= 40
    assert len(r.covisited(0, ["hub"])) == 24
    assert NEIGHBOURS < 40


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
