"""The contract in strict mode, the plausible-time window and a watermark no single event can move."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.contracts.catalog_update import decode_catalog_update
from streams.contracts.errors import DlqReason, InvalidEvent
from streams.contracts.events import PlausibleTime, decode_event
from streams.runtime.settings import Settings
from streams.worker.watermark import Watermark, plausible_time

NOW = 1_764_800_000_000
GOOD: dict[str, Any] = {"event_id": "e", "session_id": "s", "event_type": "view", "product_id": "1", "ts": NOW}


def reason(raw: bytes | None, **kwargs: Any) -> DlqReason:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, max_bytes=8192, **kwargs)
    return info.value.reason


@pytest.mark.parametrize(
    "changes",
    [{"price": "12.5"}, {"ts": True}, {"ts": float(NOW)}, {"ts": str(NOW)}, {"product_id": 1004856}, {"user_id": 7}],
)
def test_nothing_is_coerced(changes: dict[str, Any]) -> None:
    assert reason(orjson.dumps({**GOOD, **changes})) is DlqReason.INVALID_FIELD


def test_a_null_value_is_a_reason_not_a_type_error() -> None:
    assert reason(None) is DlqReason.NULL_VALUE


def test_ts_must_be_plausible_against_the_message_timestamp() -> None:
    window = plausible_time(Settings(event_ts_max_ahead_s=3600, event_ts_max_age_s=86400))
    for ts in (NOW * 1000, NOW * 1_000_000, NOW + 3_600_001, NOW - 86_400_001):
        raw = orjson.dumps({**GOOD, "ts": ts})
        assert reason(raw, window=window, reference_ms=NOW) is DlqReason.IMPLAUSIBLE_TIME, ts
    for ts in (NOW, NOW + 3_600_000, NOW - 86_400_000):
        assert decode_event(orjson.dumps({**GOOD, "ts": ts}), max_bytes=8192, window=window, reference_ms=NOW).ts == ts
    old = orjson.dumps({**GOOD, "ts": 1569888000000})  # REES46, replayed years later: no age limit by default
    assert decode_event(old, max_bytes=8192, window=plausible_time(Settings()), reference_ms=NOW).ts == 1569888000000


def test_a_window_needs_its_reference() -> None:
    with pytest.raises(ValueError, match="reference"):
        decode_event(orjson.dumps(GOOD), max_bytes=8192, window=PlausibleTime(1000))


def test_one_event_cannot_move_the_watermark_a_majority_can() -> None:
    mark = Watermark()
    for ts in range(NOW, NOW + 9):
        mark.observe(ts)
    before = mark.value
    mark.observe(NOW * 1000)  # passed every check, still wrong by a factor of 1000
    assert NOW <= mark.value <= before + 1
    for _ in range(5):
        mark.observe(NOW + 60_000)
    assert mark.value == NOW + 60_000
    mark.observe(0)  # and a late event never moves it back
    assert mark.value == NOW + 60_000


def test_catalog_updates_are_strict_too() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_catalog_update(b'{"product_id": "1", "in_stock": "no", "ts": 1}')
    assert info.value.reason is DlqReason.INVALID_FIELD
    with pytest.raises(InvalidEvent) as info:
        decode_catalog_update(None)
    assert info.value.reason is DlqReason.NULL_VALUE
