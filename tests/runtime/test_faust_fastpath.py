"""The fast delivery path: fails loudly when Faust's internals move, keeps the rebalance protection it replaces."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.types import TP as FaustTP
from mode import Service

from streams.runtime import faust_fastpath, metrics
from streams.runtime.faust_fastpath import FaustInternalsChanged, deliver


def test_installed_faust_is_the_code_the_fast_path_replaces() -> None:
    """Fails after a Faust upgrade that touched ``_drain_messages``: port the one-line change, then update the hash."""
    faust_fastpath.check()
    faust_fastpath.install()
    assert Consumer._drain_messages is faust_fastpath._drain_messages


@pytest.mark.parametrize("method", sorted(faust_fastpath.ORIGINAL_SHA256))
def test_a_changed_faust_method_is_refused(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    monkeypatch.setitem(faust_fastpath.ORIGINAL_SHA256, method, "0" * 64)
    with pytest.raises(FaustInternalsChanged, match=method):
        faust_fastpath.install()


class FakeConsumer(Service):
    """Just what ``deliver`` touches of a Faust consumer, with mode's real ``wait_first``."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.raced = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.raced += 1
        return await super().wait_first(*coros, timeout=timeout)


def test_a_delivery_that_never_blocks_runs_inline_without_the_race() -> None:
    async def main() -> tuple[list[str], int]:
        consumer, seen = FakeConsumer(), []

        async def callback(message: Any) -> None:
            seen.append(message)

        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        return seen, consumer.raced

    assert asyncio.run(main()) == (["m1"], 0)


def test_a_blocked_delivery_resumes_where_it_stopped_and_keeps_its_result_and_errors() -> None:
    async def main() -> tuple[list[Any], int]:
        consumer, seen = FakeConsumer(), []
        room = asyncio.Event()
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def callback(message: Any) -> None:
            await room.wait()  # a full stream queue
            seen.append(await fut)
            if message == "bad":
                raise ValueError(message)

        async def unblock() -> None:
            await asyncio.sleep(0.01)
            room.set()
            await asyncio.sleep(0.01)
            fut.set_result("value")

        task = asyncio.create_task(unblock())
        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        await task
        with pytest.raises(ValueError, match="bad"):
            await deliver(consumer, callback, "bad")  # type: ignore[arg-type]
        return seen, consumer.raced

    assert asyncio.run(main()) == (["value", "value"], 1)


def test_a_delivery_blocked_when_the_flow_is_suspended_is_abandoned() -> None:
    """faust-streaming PR #223: after a rebalance the message is discarded, not delivered late."""

    async def main() -> tuple[list[str], bool]:
        consumer, delivered = FakeConsumer(), []
        room = asyncio.Event()
        cancelled = False

        async def callback(message: Any) -> None:
            nonlocal cancelled
            try:
                await room.wait()
            except asyncio.CancelledError:
                cancelled = True
                raise
            delivered.append(message)

        async def rebalance() -> None:
            await asyncio.sleep(0.01)
            consumer.suspend_flow.set()

        task = asyncio.create_task(rebalance())
        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        await task
        room.set()
        await asyncio.sleep(0.01)
        return delivered, cancelled

    assert asyncio.run(main()) == ([], True)


def test_while_the_flow_is_suspended_delivery_takes_faust_own_path() -> None:
    async def main() -> int:
        consumer = FakeConsumer()
        consumer.suspend_flow.set()

        async def callback(message: Any) -> None:
            await asyncio.sleep(0)

        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        return consumer.raced

    assert asyncio.run(main()) == 1


class DrainingConsumer(FakeConsumer):
    """What the copied ``_drain_messages`` reads of a Faust consumer; ``rounds`` are the fetches, in order."""

    consumer_stopped_errors = ()

    def __init__(self, rounds: list[list[int]], callback: Any, committed: int) -> None:
        super().__init__()
        self.rounds, self.callback, self.committed = rounds, callback, committed
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._commit_every = None
        self._n_acked = 0
        self.diag: Any = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: False))
        self.fetcher = Service()
        self.flow_active = False  # this fake's fetches ignore the flow; off, the seek holds no partition

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        if not self.rounds:
            self.fetcher._stopped.set()
            return
        for offset in self.rounds.pop(0):
            yield TP, SimpleNamespace(topic="clicks", partition=0, offset=offset, key=None, value=None)

    async def seek_to_committed(self) -> dict[Any, int]:
        return {TP: self.committed}


TP = FaustTP("clicks", 0)


def drain(seek_while_delivering: bool) -> tuple[list[int], int | None, float]:
    """Fetch 50, a seek back to the committed 10 lands while 50's delivery waits, then 10-12 come again."""

    async def main() -> tuple[list[int], int | None]:
        delivered: list[int] = []
        room = asyncio.Event()

        async def callback(message: Any) -> None:
            if message.offset == 50:
                await room.wait()  # a full stream queue
            delivered.append(message.offset)

        consumer = DrainingConsumer([[50], [10, 11, 12]], callback, committed=10)

        async def rebalance_completes() -> None:
            await asyncio.sleep(0.01)
            try:
                if seek_while_delivering:
                    await Consumer.perform_seek(consumer)  # type: ignore[arg-type]
            finally:
                room.set()

        task = asyncio.create_task(rebalance_completes())
        await faust_fastpath._drain_messages(consumer, consumer.fetcher)  # type: ignore[arg-type]
        await task
        return delivered, consumer._read_offset[TP]

    faust_fastpath.install()
    before = dropped()
    delivered, read_offset = asyncio.run(main())
    return delivered, read_offset, dropped() - before


def dropped() -> float:
    return metrics.REGISTRY.get_sample_value("vitrine_messages_dropped_total", {"topic": "clicks"}) or 0.0


def test_a_seek_during_a_delivery_keeps_its_read_offset_so_the_refetched_messages_are_served() -> None:
    delivered, read_offset, lost = drain(seek_while_delivering=True)
    assert delivered == [50, 10, 11, 12] and read_offset == 12 and lost == 0


def test_control_without_a_seek_messages_below_the_read_offset_are_dropped_and_counted() -> None:
    """Faust's read-offset filter itself, which the race above turned against the re-fetched messages."""
    delivered, read_offset, lost = drain(seek_while_delivering=False)
    assert delivered == [50] and read_offset == 50 and lost == 3


class SeekingConsumer:
    """What the seek overrides touch of Faust's aiokafka consumer: its flow, its partition sets, its thread, its
    app's settings; Faust's own ``pause_partitions`` / ``resume_partitions`` / ``resume_flow`` run on it."""

    def __init__(self, committed: dict[FaustTP, int | None], reset: str = "earliest") -> None:
        self.flow_active, self.can_resume_flow, self.suspend_flow = True, asyncio.Event(), asyncio.Event()
        self.app = SimpleNamespace(
            conf=SimpleNamespace(consumer_auto_offset_reset=reset),
            tables=SimpleNamespace(changelog_topics={"app-table-changelog"}),
            consumer_generation_id=7,
        )
        self._assignment = set(committed)
        self._active_partitions: set[FaustTP] | None = None
        self._paused_partitions: set[FaustTP] = set()
        self._read_offset: dict[Any, int | None] = {}
        self._committed_offset: dict[Any, int | None] = {}
        self.events: list[str] = []
        self.rewound: list[FaustTP] = []
        outer = self

        class Thread:
            async def seek_to_committed(self) -> dict[FaustTP, int | None]:
                fetched = sorted(str(tp.partition) for tp in outer._get_active_partitions() if tp.topic == "regen")
                outer.events.append(
                    f"seek_to_committed (flow {'on' if outer.flow_active else 'off'}, "
                    f"fetching regen {','.join(fetched) or 'none'})"
                )
                return committed

            async def earliest_offsets(self, *tps: FaustTP) -> dict[FaustTP, int]:
                return {tp: 0 for tp in tps}

            def seek(self, tp: FaustTP, offset: int) -> None:  # sets the position at once, unlike a lazy reset
                assert offset == 0
                outer.rewound.append(tp)

        self._thread = Thread()

    def assignment(self) -> set[FaustTP]:
        return self._assignment

    def _get_active_partitions(self) -> set[FaustTP]:
        return Consumer._get_active_partitions(self)  # type: ignore[arg-type]

    def _set_active_tps(self, tps: set[FaustTP]) -> set[FaustTP]:
        return Consumer._set_active_tps(self, tps)  # type: ignore[arg-type]

    def pause_partitions(self, tps: Any) -> None:
        Consumer.pause_partitions(self, tps)  # type: ignore[arg-type]

    def resume_partitions(self, tps: Any) -> None:
        Consumer.resume_partitions(self, tps)  # type: ignore[arg-type]

    async def seek_to_committed(self) -> Any:
        return await ThreadDelegateConsumer.seek_to_committed(self)  # type: ignore[arg-type]


def perform_seek(consumer: SeekingConsumer) -> None:
    faust_fastpath.install()
    asyncio.run(Consumer.perform_seek(consumer))  # type: ignore[arg-type]


CHANGELOG = FaustTP("app-table-changelog", 0)


def test_the_recovery_seek_holds_the_stream_partitions_until_the_flow_resumes() -> None:
    """The recovery resumes the flow right after this seek, and resuming clears the stream queues: nothing of the
    stream partitions may be fetched in between. The changelogs (standbys) keep flowing: a stopped flow would
    make ``getmany`` discard their records for good."""
    consumer = SeekingConsumer({FaustTP("regen", 0): 42, FaustTP("regen", 1): 7, CHANGELOG: None})
    perform_seek(consumer)
    assert consumer.events == ["seek_to_committed (flow on, fetching regen none)"]
    assert consumer.flow_active and consumer._get_active_partitions() == {CHANGELOG}
    assert consumer._read_offset == {FaustTP("regen", 0): 42, FaustTP("regen", 1): 7, CHANGELOG: None}
    Consumer.resume_flow(consumer)  # type: ignore[arg-type]  # what the recovery calls next
    assert consumer._get_active_partitions() == set(consumer.assignment())
    assert consumer._paused_partitions == set()


def test_held_partitions_are_left_to_the_next_recovery_after_a_rebalance() -> None:
    consumer = SeekingConsumer({FaustTP("regen", 0): 42, CHANGELOG: None})
    perform_seek(consumer)
    consumer.app.consumer_generation_id += 1  # a rebalance came in between: its own recovery resumes its streams
    Consumer.resume_flow(consumer)  # type: ignore[arg-type]
    assert consumer._get_active_partitions() == {CHANGELOG}


def test_the_seek_of_a_stopped_flow_holds_nothing() -> None:
    """``getmany`` seeks when a batch came back with the flow off (a rebalance): the rebalance resumes streams."""
    consumer = SeekingConsumer({FaustTP("regen", 0): 42, CHANGELOG: None})
    Consumer.stop_flow(consumer)  # type: ignore[arg-type]
    perform_seek(consumer)
    assert consumer.events == ["seek_to_committed (flow off, fetching regen 0)"]
    assert consumer._paused_partitions == set()


def test_stream_partitions_without_a_committed_offset_go_back_to_their_beginning() -> None:
    """aiokafka does not move a partition without a committed offset (or at 0); what the cleared queues held
    must be fetched again."""
    committed = {
        FaustTP("regen", 0): None,
        FaustTP("regen", 1): 0,
        FaustTP("regen", 2): 42,
        CHANGELOG: None,  # the recovery positions changelogs itself
    }
    consumer = SeekingConsumer(committed)
    perform_seek(consumer)
    assert consumer.rewound == [FaustTP("regen", 0), FaustTP("regen", 1)]
    assert consumer._read_offset[FaustTP("regen", 0)] is None  # every message from the beginning passes


def test_with_a_latest_reset_nothing_is_rewound() -> None:
    consumer = SeekingConsumer({FaustTP("regen", 0): None}, reset="latest")
    perform_seek(consumer)
    assert consumer.rewound == []
