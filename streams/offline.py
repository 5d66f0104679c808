"""Fold an event log through the session tracker without Kafka.

The reference the integration tests compare the worker's table against, and the simulator used to
tune the trigger policy: both go through ``SessionTracker.apply``, the worker's own code path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.events import decode_event
from streams.exceptions import InvalidEvent
from streams.replay_sources import ReplayRecord
from streams.session_state import SessionState
from streams.sessions import SessionTracker


@dataclass(slots=True)
class FoldResult:
    states: dict[bytes, SessionState] = field(default_factory=dict)
    triggers: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    events: int = 0

    @property
    def requests(self) -> int:
        return sum(self.triggers.values())


def fold(records: Iterable[ReplayRecord], tracker: SessionTracker, *, max_event_bytes: int) -> FoldResult:
    result = FoldResult()
    for offset, rec in enumerate(records):
        try:
            event = decode_event(rec.value, max_bytes=max_event_bytes, key=rec.key or b"")
        except InvalidEvent as exc:
            result.invalid[exc.reason.value] += 1
            continue
        key = event.session_id.encode()
        outcome = tracker.apply(result.states.get(key), event, partition=0, offset=offset)
        result.states[key] = outcome.state
        result.events += 1
        if outcome.request is not None:
            result.triggers[outcome.request.reason] += 1
    return result
