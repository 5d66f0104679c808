"""aiokafka's reconnect loop logs an ERROR per attempt (aio-libs/aiokafka#496): the filter keeps one per
template and interval, and the next one says how many it dropped."""

from __future__ import annotations

import logging
import time

from streams.runtime.logs import RateLimit


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_reconnect_storm_becomes_one_line_per_interval_with_the_count() -> None:
    limit = RateLimit(interval_s=0.2)
    storm = [record("aiokafka.conn", 'Unable connect to "%s:%s": %s', "127.0.0.1", 9092, i) for i in range(10_000)]
    passed = [r for r in storm if limit.filter(r)]
    assert len(passed) == 1
    time.sleep(0.25)
    later = record("aiokafka.conn", 'Unable connect to "%s:%s": %s', "127.0.0.1", 9092, "x")
    assert limit.filter(later)
    assert later.suppressed == 9_999  # type: ignore[attr-defined]


def test_other_templates_and_our_own_loggers_pass() -> None:
    limit = RateLimit(interval_s=60)
    assert limit.filter(record("aiokafka.conn", "a %s", 1))
    assert limit.filter(record("aiokafka.client", "b %s", 1))
    assert not limit.filter(record("aiokafka.conn", "a %s", 2))
    assert all(limit.filter(record("streams.worker.app", "expired %s", i)) for i in range(100))
