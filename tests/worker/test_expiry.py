"""Expiry against a flush in progress: a session whose state a flush is sending is not tombstoned under it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.runtime.settings import Settings
from streams.worker.app import SessionWorker, create_app
from streams.worker.state import SessionState

TTL_S = 60.0


@dataclass
class HeldProducer:
    """Records what the worker writes, in order, and holds the first write until ``go_on`` is set (the producer's
    buffer is full: that flush waits there while the loop runs on)."""

    written: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    first_sent: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int, *_: Any) -> None:
        self.written.append((key, value))
        if not self.first_sent.is_set():
            self.first_sent.set()
            await self.go_on.wait()


def test_a_session_a_flush_is_sending_expires_after_the_flush_not_under_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flush awaits the producer once per state; expiry runs in between (its own timer). Had it tombstoned
    ``b"idle"`` there, the flush's later send of that state would follow the tombstone in the changelog and a
    restore would bring the session back. The changelog is recorded in the order the worker wrote it."""
    app, worker = create_app(Settings(session_ttl_s=TTL_S))  # built, never started: no broker
    monkeypatch.setattr(SessionWorker, "active_partitions", lambda _self: {0})  # no rebalance ran: own partition 0
    worker.watermark.value = 10 * int(TTL_S * 1000)
    producer = HeldProducer()
    monkeypatch.setattr(app.producer, "send", producer.send)

    async def run() -> tuple[int, int]:
        for key in (b"first", b"idle"):  # a late event made the idle session dirty; a flush sends both
            worker.table.data[key] = worker.dirty[key] = SessionState(partition=0, last_ts=1)
        flush = asyncio.create_task(worker.flush())
        await producer.first_sent.wait()
        during = await worker.expire_idle()
        producer.go_on.set()
        await flush
        return during, await worker.expire_idle()

    during, after = asyncio.run(run())
    assert (during, after) == (0, 2)  # what the flush holds waits for the walk after it
    idle = [value is None for key, value in producer.written if key == b"idle"]
    assert idle == [False, True], "the tombstone must follow the state the flush sent"
    assert b"idle" not in worker.table.data


def test_a_flush_that_meets_another_waits_so_a_key_s_newest_state_is_sent_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``handle`` flushes past ``flush_max_events`` while the timer's flush may still be sending."""
    app, worker = create_app(Settings())
    producer = HeldProducer()
    monkeypatch.setattr(app.producer, "send", producer.send)
    older, newer = SessionState(partition=0, last_ts=1), SessionState(partition=0, last_ts=2)

    async def run() -> None:
        worker.dirty[b"first"] = SessionState(partition=0, last_ts=1)
        worker.dirty[b"s"] = older
        timer = asyncio.create_task(worker.flush())
        await producer.first_sent.wait()
        worker.dirty[b"s"] = newer  # an event while the timer's flush waits on the producer
        second = asyncio.create_task(worker.flush())
        await asyncio.sleep(0.01)
        producer.go_on.set()
        await asyncio.gather(timer, second)

    asyncio.run(run())
    assert [value for key, value in producer.written if key == b"s"] == [older.to_bytes(), newer.to_bytes()]
