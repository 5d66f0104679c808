"""Stream an event log into the clickstream topic, keyed by session, at a chosen speed.

Per-session order holds because every event of a session has the same key (so the same
partition) and the producer is idempotent (retries cannot reorder a partition).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from streams.datasets.readers import ReplayRecord
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics

_INFLIGHT = 5000


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    sent: int
    sessions: int
    wall_s: float
    first_ts: int | None
    last_ts: int | None
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"sent      {self.sent:,} events in {self.wall_s:.1f}s ({self.rate:,.0f} events/s)",
            f"sessions  {self.sessions:,}",
        ]
        if self.first_ts is not None and self.last_ts is not None:
            out.append(f"span      {(self.last_ts - self.first_ts) / 1000:,.0f}s of event time")
        out += [f"skipped   {n:,} ({why})" for why, n in sorted(self.skipped.items())]
        return out


class _Pacer:
    """Sleeps so that event time advances ``speed`` times faster than the wall clock (0 = no pacing)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin: tuple[int, float] | None = None

    async def wait(self, ts: int | None) -> None:
        if self.speed <= 0 or ts is None:
            return
        if self._origin is None:
            self._origin = (ts, time.monotonic())
            return
        first_ts, start = self._origin
        delay = start + (ts - first_ts) / 1000.0 / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def replay(
    records: list[ReplayRecord],
    settings: Settings,
    *,
    speed: float = 0.0,
    progress: bool = True,
    skipped: Counter[str] | None = None,
) -> ReplaySummary:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        **aiokafka_options(settings), enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    pacer = _Pacer(speed)
    pending: list[asyncio.Future[object]] = []
    start = time.monotonic()
    try:
        for rec in tqdm(records, desc="replay", unit="ev", disable=not progress, mininterval=0.5):
            await pacer.wait(rec.ts)
            pending.append(await producer.send(settings.topics.clickstream_topic, rec.value, key=rec.key))
            if len(pending) >= _INFLIGHT:
                await asyncio.gather(*pending)
                pending.clear()
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    stamps = [r.ts for r in records if r.ts is not None]
    return ReplaySummary(
        sent=len(records),
        sessions=len({r.key for r in records}),
        wall_s=time.monotonic() - start,
        first_ts=min(stamps, default=None),
        last_ts=max(stamps, default=None),
        skipped=dict(skipped or {}),
    )
