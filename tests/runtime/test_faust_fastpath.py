"""The fast delivery path: fails loudly when Faust's internals move, keeps the rebalance protection it replaces."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP as FaustTP
from mode import Service
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.runtime import faust_fastpath, metrics
from streams.runtime.faust_fastpath import FaustInternalsChanged, deliver


def test_installed_faust_is_the_code_the_overrides_replace() -> None:
    """Fails after a Faust upgrade that touched a replaced method: port the marked changes, then update the hash."""
    faust_fastpath.check()
    faust_fastpath.install()
    assert Consumer._drain_messages is faust_fastpath._drain_messages
    assert Recovery.on_recovery_completed is faust_fastpath.on_recovery_completed
    assert Recovery._resume_streams is faust_fastpath._resume_streams
    assert AIOKafkaConsumerThread.seek_to_committed is faust_fastpath.seek_to_committed
    assert AIOKafkaConsumerThread._fetch_records is faust_fastpath._fetch_records


def test_without_fast_delivery_faust_own_loop_runs_and_the_recovery_fix_stays() -> None:
    try:
        faust_fastpath.install(fast_delivery=False)
        assert Consumer._drain_messages is faust_fastpath._ORIGINALS["Consumer._drain_messages"]
        assert Recovery.on_recovery_completed is faust_fastpath.on_recovery_completed
    finally:
        faust_fastpath.install()


@pytest.mark.parametrize(
    "name",
    [
        "Consumer._drain_messages",
        "Recovery.on_recovery_completed",
        "AIOKafkaConsumerThread.seek_to_committed",
        "AIOKafkaConsumerThread._fetch_records",
        "Consumer._commit_offsets",  # relied on by committed_offsets, not replaced
    ],
)
def test_a_changed_method_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setitem(faust_fastpath.ORIGINAL_SHA256, name, "0" * 64)
    with pytest.raises(FaustInternalsChanged, match=name):
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
        self.app = SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: False),
            flow_control=FlowControlEvent(initially_suspended=False),
        )
        self.flow_active = True
        self.fetcher = Service()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        if not self.rounds:
            self.fetcher._stopped.set()
            return
        for offset in self.rounds.pop(0):
            yield TP, SimpleNamespace(topic="clicks", partition=0, offset=offset, key=None, value=None)

    async def seek_to_committed(self) -> dict[Any, int]:
        return {TP: self.committed}


TP = FaustTP("clicks", 0)


def drain(seek_while_delivering: bool, *, direct: bool = False) -> tuple[list[int], int | None, float]:
    """Fetch 50, a seek back to the committed 10 lands while 50's delivery waits, then 10-12 come again.

    ``direct``: the messages go to a direct handler (``handle_directly``) instead, the conductor's callback refuses.
    """

    async def main() -> tuple[list[int], int | None]:
        delivered: list[int] = []
        room = asyncio.Event()

        async def handle(message: Any) -> None:
            if message.offset == 50:
                await room.wait()  # a full stream queue, or a producer buffer
            delivered.append(message.offset)

        async def refuse(message: Any) -> None:
            raise AssertionError("a directly handled message reached the conductor")

        consumer = DrainingConsumer([[50], [10, 11, 12]], refuse if direct else handle, committed=10)
        if direct:
            faust_fastpath.handle_directly(consumer.app, "clicks", handle)  # type: ignore[arg-type]

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


def test_the_direct_path_keeps_the_seek_bookkeeping_so_the_refetched_messages_are_handled() -> None:
    delivered, read_offset, lost = drain(seek_while_delivering=True, direct=True)
    assert delivered == [50, 10, 11, 12] and read_offset == 12 and lost == 0


def test_control_on_the_direct_path_without_a_seek_the_read_offset_filter_drops() -> None:
    delivered, read_offset, lost = drain(seek_while_delivering=False, direct=True)
    assert delivered == [50] and read_offset == 50 and lost == 3


@pytest.mark.parametrize("stopped", ["app flow control", "consumer flow", None])
def test_the_direct_path_handles_nothing_while_a_rebalance_stops_the_flow(stopped: str | None) -> None:
    """A message fetched while the flow is stopped is left unread for the seek that ends the rebalance (its read
    offset not advanced), as Faust's delivery abandons it; the control (nothing stopped) handles both."""

    async def main() -> tuple[list[int], int | None]:
        handled: list[int] = []

        async def handle(message: Any) -> None:
            handled.append(message.offset)

        async def refuse(message: Any) -> None:
            raise AssertionError("a directly handled message reached the conductor")

        consumer = DrainingConsumer([[3, 4]], refuse, committed=3)
        faust_fastpath.handle_directly(consumer.app, "clicks", handle)  # type: ignore[arg-type]
        if stopped == "app flow control":
            consumer.app.flow_control.suspend()
        elif stopped == "consumer flow":
            consumer.flow_active = False
        await faust_fastpath._drain_messages(consumer, consumer.fetcher)  # type: ignore[arg-type]
        return handled, consumer._read_offset[TP]

    faust_fastpath.install()
    assert asyncio.run(main()) == (([3, 4], 4) if stopped is None else ([], None))


STREAM, CHANGELOG = FaustTP("clicks", 0), FaustTP("app-sessions-changelog", 0)


class RecoveringConsumer:
    """The consumer as recovery leaves it: flow running (the changelogs were read), stream partition paused."""

    def __init__(self) -> None:
        self.paused = {STREAM}
        self.seeks = 0

    def assignment(self) -> set[Any]:
        return {STREAM, CHANGELOG}

    def resume_partitions(self, tps: set[Any]) -> None:
        self.paused -= tps

    def resume_flow(self) -> None:
        pass

    async def perform_seek(self) -> None:
        for _ in range(3):  # the seek is a thread call: the event loop runs meanwhile
            await asyncio.sleep(0)
        self.seeks += 1


class FinishingRecovery:
    """What the end of Faust's recovery reads of ``Recovery``, with mode's real flow control and stream queue."""

    def __init__(self) -> None:
        self.consumer = RecoveringConsumer()
        self.flow_control = FlowControlEvent(initially_suspended=False)
        noop = SimpleNamespace(send=_anoop)
        self.app = SimpleNamespace(
            consumer=self.consumer,
            on_rebalance_complete=noop,
            consumer_generation_id=1,
            conf=SimpleNamespace(broker_request_timeout=5.0),
            flow_control=self.flow_control,
            _fetcher=SimpleNamespace(maybe_start=_anoop),
            assignor=SimpleNamespace(assigned_standbys=set),
            on_rebalance_end=lambda: None,
        )
        self.log = SimpleNamespace(info=_noop, dev=_noop, warning=_noop)
        self.tables = SimpleNamespace(values=list, on_actives_ready=_noop, on_standbys_ready=_noop)
        self.actives_for_table: dict[Any, Any] = {}
        self.standbys_for_table: dict[Any, Any] = {}
        self.completed = asyncio.Event()

    def _set_recovery_ended(self) -> None:
        pass

    def _is_changelog_tp(self, tp: Any) -> bool:
        return bool(tp.topic.endswith("-changelog"))

    async def _wait(self, coro: Any, timeout: float) -> None:
        await asyncio.create_task(coro)  # Faust's goes through ``wait_first``: tasks, so the loop turns


async def _anoop(*args: Any) -> None:
    pass


def _noop(*args: Any) -> None:
    pass


def finish_recovery(method: Any) -> tuple[int, int]:
    """(messages fetched from the stream partition, messages still queued for the agent) after ``method`` ran."""

    async def main() -> tuple[int, int]:
        recovery = FinishingRecovery()
        queue: FlowControlQueue[int] = FlowControlQueue(flow_control=recovery.flow_control, clear_on_resume=True)
        fetched = 0
        done = False

        async def fetcher() -> None:  # delivers whatever the consumer may fetch, one message per loop turn
            nonlocal fetched
            while not done:
                if STREAM not in recovery.consumer.paused:
                    await queue.put(fetched)
                    fetched += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(fetcher())
        await method(recovery, generation_id=1)
        for _ in range(5):
            await asyncio.sleep(0)
        done = True
        await task
        assert recovery.consumer.seeks == 1 and recovery.completed.is_set()
        return fetched, queue.qsize()

    return asyncio.run(main())


@pytest.mark.parametrize("method", ["on_recovery_completed", "_resume_streams"])
def test_messages_fetched_while_recovery_completes_reach_the_agent(method: str) -> None:
    fetched, queued = finish_recovery(getattr(faust_fastpath, method))
    assert fetched > 0 and queued == fetched


@pytest.mark.parametrize("method", ["on_recovery_completed", "_resume_streams"])
def test_control_faust_own_order_clears_messages_fetched_during_the_seek(method: str) -> None:
    """Faust resumes the stream partitions before the seek and clears the queues after it: those messages are gone."""
    fetched, queued = finish_recovery(faust_fastpath._ORIGINALS[f"Recovery.{method}"])
    assert queued < fetched


async def _topics_of_five_records(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create each topic with its number of partitions, and write 5 records to every partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in partitions.items()])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, n in partitions.items():
            for partition in range(n):
                for i in range(5):
                    await producer.send_and_wait(topic, f"{i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def _read_then_seek_to_committed(bootstrap: str, *, patched: bool, reset: str = "earliest") -> dict[str, int]:
    """Two partitions of a group that never committed: both fetched to the end, as records a rebalance dropped.

    Partition 1 then gets a commit at 3; the changelog-named partition has no commit either. Returns each
    partition's position after the seek to the committed offsets.
    """
    suffix = uuid.uuid4().hex[:8]
    stream, changelog = f"stream-{suffix}", f"app-{suffix}-sessions-changelog"
    await _topics_of_five_records(bootstrap, {stream: 2, changelog: 1})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"group-{suffix}", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(stream, 0), TopicPartition(stream, 1), TopicPartition(changelog, 0)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while sum(len(r) for r in (await consumer.getmany(*tps, timeout_ms=1000)).values()) > 0:
            pass  # read to the end
        await consumer.commit({TopicPartition(stream, 1): 3})
        faust_consumer = SimpleNamespace(
            _is_changelog_tp=lambda tp: tp.topic == changelog,
            app=SimpleNamespace(conf=SimpleNamespace(consumer_auto_offset_reset=reset)),
        )
        if patched:
            await faust_fastpath._seek_to_committed(consumer, faust_consumer)  # type: ignore[arg-type]
        else:
            await consumer.seek_to_committed()
        return {f"{tp.topic.split('-')[0]}-{tp.partition}": await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


@pytest.mark.parametrize(("reset", "uncommitted_at"), [("earliest", 0), ("latest", 5)])
async def test_the_seek_to_committed_resets_stream_partitions_that_have_no_commit(
    kafka_bootstrap: str, reset: str, uncommitted_at: int
) -> None:
    positions = await _read_then_seek_to_committed(kafka_bootstrap, patched=True, reset=reset)
    assert positions == {"stream-0": uncommitted_at, "stream-1": 3, "app-0": 5}  # the changelog is recovery's


async def test_control_aiokafka_own_seek_leaves_an_uncommitted_partition_past_what_it_dropped(
    kafka_bootstrap: str,
) -> None:
    positions = await _read_then_seek_to_committed(kafka_bootstrap, patched=False)
    assert positions == {"stream-0": 5, "stream-1": 3, "app-0": 5}


async def _fetch_with_every_partition_paused(bootstrap: str, fetch: Any) -> tuple[int, int]:
    """Records buffered for a partition, then a fetch while Faust's live active set is empty (a rebalance paused
    everything). Returns how many records that fetch returned, and how many the next fetch returns once the
    partition is active again."""
    topic = f"paused-{uuid.uuid4().hex[:8]}"
    await _topics_of_five_records(bootstrap, {topic: 1})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=True))
        active: set[TopicPartition] = set()
        while not consumer._fetcher._records:  # the background fetch buffers the records
            await asyncio.sleep(0.05)
        paused = await fetch(thread, consumer, active, timeout=0.5)
        active.add(tp)
        resumed = await fetch(thread, consumer, active, timeout=5.0)
        return sum(len(r) for r in paused.values()), sum(len(r) for r in resumed.values())
    finally:
        await consumer.stop()


async def test_a_fetch_while_every_partition_is_paused_returns_nothing_and_keeps_the_records(
    kafka_bootstrap: str,
) -> None:
    assert await _fetch_with_every_partition_paused(kafka_bootstrap, faust_fastpath._fetch_records) == (0, 5)


async def test_control_faust_own_fetch_returns_a_paused_partition_records(kafka_bootstrap: str) -> None:
    original = faust_fastpath._ORIGINALS["AIOKafkaConsumerThread._fetch_records"]
    assert await _fetch_with_every_partition_paused(kafka_bootstrap, original) == (5, 0)
