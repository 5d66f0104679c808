"""The stall watch: time counts only while lag waits and the position stands still."""

from __future__ import annotations

from types import SimpleNamespace

from streams.runtime import metrics
from streams.runtime.stall import StallWatch, consumer_internals

LABELS = ("clicks", "3")


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("vitrine_partition_stalled_seconds", {"topic": "clicks", "partition": "3"})


def test_a_position_that_stands_still_with_lag_counts_up_and_movement_resets_it() -> None:
    watch = StallWatch(warn_after_s=15)
    assert watch.observe(LABELS, position=10, lag=5, now=100.0) == 0.0
    assert watch.observe(LABELS, position=10, lag=5, now=120.0) == 20.0
    assert gauge() == 20.0
    assert watch.observe(LABELS, position=11, lag=4, now=125.0) == 0.0  # moved
    assert watch.observe(LABELS, position=11, lag=4, now=130.0) == 5.0


def test_no_lag_is_never_a_stall_and_a_partition_given_away_is_forgotten() -> None:
    watch = StallWatch(warn_after_s=15)
    watch.observe(LABELS, position=10, lag=0, now=0.0)
    assert watch.observe(LABELS, position=10, lag=0, now=500.0) == 0.0  # idle, caught up
    watch.observe(LABELS, position=10, lag=2, now=600.0)
    assert watch.observe(LABELS, position=10, lag=2, now=700.0) == 100.0
    watch.forget(LABELS)
    assert gauge() is None
    assert watch.observe(LABELS, position=10, lag=2, now=800.0) == 0.0  # taken back: counts afresh


def test_consumer_internals_reads_what_faust_keeps_and_tolerates_what_it_lacks() -> None:
    consumer = SimpleNamespace(
        _read_offset={"tp": 41}, _committed_offset={"tp": 11}, _acked={"tp": [44, 42, 43]}, flow_active=True
    )
    found = consumer_internals(consumer, "tp")
    assert found["read_offset"] == 41 and found["committed_offset"] == 11
    assert found["acked_head"] == [42, 43, 44] and found["acked"] == 3 and found["paused"] is False
    assert consumer_internals(SimpleNamespace(), "tp")["read_offset"] is None
