"""The offline fold: the worker's code path without Kafka."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from streams.contracts.errors import DlqReason
from streams.contracts.events import ClickEvent
from streams.datasets.readers import ReplayRecord
from streams.worker.fold import fold
from streams.worker.intent import TaxonomyIntent
from streams.worker.sessions import SessionTracker
from streams.worker.state import SessionState
from streams.worker.trigger import TriggerPolicy

T0 = 1_569_888_000_000
MAX = 512


def make_tracker() -> SessionTracker:
    return SessionTracker(intent_space=TaxonomyIntent(), policy=TriggerPolicy(cooldown_ms=10_000), half_life_s=300.0)


def rec(
    session: str, n: int, ts: int, event_type: str = "view", *, key: bytes | None = None, **extra: Any
) -> ReplayRecord:
    data: dict[str, Any] = {"event_id": f"{session}:{n}", "session_id": session, "event_type": event_type, "ts": ts}
    if event_type == "search":
        data["query"] = f"q{n}"
    else:
        data["product_id"] = f"p{n}"
        data["category"] = f"dept{n % 3}.cat"
    data.update(extra)
    return ReplayRecord(session.encode() if key is None else key, orjson.dumps(data), ts)


def build_log() -> tuple[list[ReplayRecord], Counter[DlqReason]]:
    records: list[ReplayRecord] = []
    bad: Counter[DlqReason] = Counter()
    types = ["view", "view", "cart", "view", "search", "purchase", "view"]
    for i in range(120):
        session = f"s{i % 5}"
        records.append(rec(session, i, T0 + i * 4_000, types[i % len(types)]))
        if i % 10 == 3:
            records.append(ReplayRecord(b"s1", b"{not json", None))
            bad[DlqReason.INVALID_JSON] += 1
        if i % 10 == 5:
            records.append(rec("s2", 1000 + i, T0, key=b"s9"))
            bad[DlqReason.KEY_MISMATCH] += 1
        if i % 20 == 7:
            records.append(rec("s3", 2000 + i, T0, "view", filler="x" * MAX))
            bad[DlqReason.OVERSIZED] += 1
        if i % 30 == 8:
            records.append(rec("s4", 3000 + i, T0, "view", price=-1))
            bad[DlqReason.INVALID_FIELD] += 1
    records.append(ReplayRecord(None, rec("s0", 9999, T0).value, T0))  # no key: an empty key, a mismatch
    bad[DlqReason.KEY_MISMATCH] += 1
    records.append(rec("s0", 9998, T0, "search", query=None))
    bad[DlqReason.INCONSISTENT] += 1
    return records, bad


def test_invalid_records_are_counted_by_reason_and_skipped() -> None:
    records, bad = build_log()
    result = fold(records, make_tracker(), max_event_bytes=MAX)
    assert result.invalid == Counter({reason.value: n for reason, n in bad.items()})
    assert result.events == 120
    assert sum(s.n_events for s in result.states.values()) == 120
    assert set(result.states) == {f"s{i}".encode() for i in range(5)}
    # the invalid records left no trace: no session s9, and s2/s4 hold only their valid events
    assert all(s.n_events == 24 for s in result.states.values())


def test_requests_match_the_tracker_outcomes() -> None:
    records, _ = build_log()
    result = fold(records, make_tracker(), max_event_bytes=MAX)
    # replay the valid records by hand and count what the tracker asked for
    tracker = make_tracker()
    states: dict[str, SessionState] = {}
    reasons: Counter[str] = Counter()
    for offset, r in enumerate(records):
        try:
            data = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            continue
        if len(r.value) > MAX or r.key != data["session_id"].encode() or data.get("price", 0) < 0:
            continue
        if data["event_type"] == "search" and data.get("query") is None:
            continue
        out = tracker.apply(states.get(data["session_id"]), ClickEvent(**data), partition=0, offset=offset)
        states[data["session_id"]] = out.state
        if out.request is not None:
            reasons[out.request.reason] += 1
    assert result.triggers == reasons
    assert result.requests == sum(reasons.values()) > 0
    assert {k.decode(): v.version for k, v in result.states.items()} == {k: v.version for k, v in states.items()}
    assert sum(s.version for s in result.states.values()) == result.requests


def test_fold_is_deterministic() -> None:
    records, _ = build_log()
    a = fold(records, make_tracker(), max_event_bytes=MAX)
    b = fold(records, make_tracker(), max_event_bytes=MAX)
    assert a.states == b.states and a.triggers == b.triggers and a.invalid == b.invalid
