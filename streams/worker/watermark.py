"""Event time for expiry: a watermark no single event can move, and the plausible-time window of ``ts``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streams.contracts.events import PlausibleTime
from streams.runtime.settings import Settings

WINDOW = 9
MIN_SAMPLES = 3


def plausible_time(settings: Settings) -> PlausibleTime:
    max_age = settings.worker.event_ts_max_age_s
    return PlausibleTime(
        max_ahead_ms=int(settings.worker.event_ts_max_ahead_s * 1000),
        max_age_ms=int(max_age * 1000) if max_age is not None else None,
    )


@dataclass(slots=True)
class Watermark:
    """The lower median of the last ``WINDOW`` event times, never going back.

    Expiry tombstones every session older than the watermark minus the TTL, so one wrong ``ts`` that
    passed the contract must not move it: the median needs a majority of recent events to agree,
    a taken-over maximum needs only one. It starts moving after ``MIN_SAMPLES`` events.
    """

    recent: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    value: int = 0

    def observe(self, ts: int) -> None:
        self.recent.append(ts)
        if len(self.recent) >= MIN_SAMPLES:
            ordered = sorted(self.recent)
            self.value = max(self.value, ordered[(len(ordered) - 1) // 2])
