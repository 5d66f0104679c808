"""Fold an event log through the session tracker without Kafka.

The reference the integration tests compare the worker's table against, and the simulator used to
tune the trigger policy: both go through ``SessionTracker.apply``, the worker's own code path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.contracts.errors import InvalidEvent
from streams.contracts.events import PlausibleTime, decode_event
from streams.contracts.regen import RegenRequest
from streams.datasets.readers import ReplayRecord
from streams.runtime.settings import Settings
from streams.worker.ranker import RankerSignals
from streams.worker.sessions import SessionTracker, WorkerStep
from streams.worker.state import SessionState


@dataclass(slots=True)
class FoldResult:
    states: dict[bytes, SessionState] = field(default_factory=dict)
    triggers: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    events: int = 0
    emitted: list[RegenRequest] = field(default_factory=list)  # with ranker candidates, when folded with a ranker

    @property
    def requests(self) -> int:
        return sum(self.triggers.values())


def fold(
    records: Iterable[ReplayRecord],
    tracker: SessionTracker,
    *,
    max_event_bytes: int,
    ranker: RankerSignals | None = None,
    window: PlausibleTime | None = None,
    now_ms: int | None = None,
) -> FoldResult:
    """With a ``ranker``, also the requests the worker would send (one partition, as if one worker).

    With a ``window``, ``ts`` is checked against ``now_ms`` (the wall clock by default), as the worker
    checks it against the message timestamp of a log replayed now.
    """
    result = FoldResult()
    reference_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    step = WorkerStep(tracker, ranker if ranker is not None else RankerSignals({}, half_life_s=3600.0))
    for offset, rec in enumerate(records):
        try:
            event = decode_event(
                rec.value, max_bytes=max_event_bytes, key=rec.key or b"", window=window, reference_ms=reference_ms
            )
        except InvalidEvent as exc:
            result.invalid[exc.reason.value] += 1
            continue
        key = event.session_id.encode()
        done = step.apply(result.states.get(key), event, partition=0, offset=offset)
        result.states[key] = done.state
        result.events += 1
        if done.request is not None:
            result.triggers[done.request.reason] += 1
            if ranker is not None:
                result.emitted.append(done.request)
    return result


def regeneration_requests(records: Iterable[ReplayRecord], settings: Settings) -> list[RegenRequest]:
    """What the session worker would ask the generator for over a log, ranker candidates included."""
    tracker = SessionTracker.from_settings(settings)
    ranker = RankerSignals(
        {}, half_life_s=settings.worker.ranker_half_life_s, per_list=settings.worker.ranker_candidates
    )
    return fold(records, tracker, max_event_bytes=settings.worker.max_event_bytes, ranker=ranker).emitted
