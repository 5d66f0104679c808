"""A cheaper per-message delivery in Faust's consumer, written against faust-streaming 0.15.3.

Every Faust-internals override of this project lives here. ``Consumer._drain_messages`` hands each fetched
message to the conductor with ``await self.wait_first(callback(message), self.suspend_flow.wait())``, so that
a delivery blocked when a rebalance suspends the flow is abandoned and the message discarded
(faust-streaming PR #223). ``wait_first`` wraps both in tasks, plus two more for the service's stopped and
crashed events, and cancels the losers: four tasks for every message, although the delivery almost never
blocks (it only waits on flow control, the producer buffer, or a full stream queue).

``deliver`` runs the delivery's first step inline: a delivery that completes without suspending (the usual
case) never met a suspension point, so no rebalance could have happened during it and nothing was there to
abandon. One that does suspend is resumed under today's ``wait_first`` race, exactly where it stopped, so
the PR #223 protection holds. As an upstream change this is the one line in ``_drain_messages`` below.

The copy also closes a race of the original. After a delivery it records the message as the partition's read
offset, and later messages below that offset are dropped as already read. A seek to the committed offsets
(``perform_seek``, run when a rebalance or a recovery completes) that lands while a delivery is suspended is
then overwritten by the stale offset: the re-fetched messages between the committed offset and it are dropped
unseen, never acked, and the partition's commit sticks at its head (the shape of the generator's page loss
after a SIGKILL, RELIABILITY.md). Here ``perform_seek`` and ``seek`` advance a per-consumer count, and a
delivery that spanned one leaves the read offset as the seek set it. Every message the read-offset filter
drops is counted (``vitrine_messages_dropped_total``) and logged, rate-limited: outside that race it should
not happen.

The second override closes a loss at the end of every rebalance that keeps a partition busy. Recovery's last
step (``Recovery.on_recovery_completed``, or ``_resume_streams`` when nothing needed restoring) resumes the
stream partitions, awaits the seek to the committed offsets, and only then calls ``flow_control.resume()``,
which clears every stream queue (they are ``clear_on_resume`` queues, so that messages fetched before the
rebalance are not processed). But the consumer's flow is already running (recovery resumed it to read the
changelogs), and the seek is awaited through ``wait_first`` tasks: messages fetched from the just-resumed
stream partitions are delivered into the queues, their offsets recorded as read, and the clear then drops
them. Nothing fetches them again (their offsets are below the read offset), and the acks of the messages
after them let Faust commit past them (``_new_offset`` commits the first run of acked offsets, wherever it
starts). The rebalance test caught it: up to 134 sessions missing, about one run in seven. The copies below
resume the stream partitions after the queues are cleared, in the same step as the consumer's flow, so that
nothing is fetched from them while a clear is still to come.

The third override makes that seek complete. ``perform_seek`` is how Faust takes back what it fetched but did
not deliver: records of paused partitions that a fetch returned during a rebalance (aiokafka reads an empty
partition set as "every partition", and Faust hands it its live active set, which a rebalance empties while a
fetch waits), records dropped because the flow was stopped. aiokafka's ``seek_to_committed`` seeks only
partitions with a committed offset above 0, so a partition that had none (a worker that lost it before its
first commit) stays where the dropped records left it, past them: the memory-store rebalance test lost every
event of the two partitions its first worker kept (369 sessions, one run in about ten). The copy seeks every
such stream partition to offset 0 (committed 0) or by the consumer's ``auto_offset_reset`` (no commit), as a
new assignment would; the records in between are redelivered, and the offsets kept in each state make that
idempotent. Changelog partitions are left alone: recovery seeks them itself.

The fourth override closes the cause of most of those drops. Faust's fetch hands aiokafka its live active set;
a fetch that started while a partition was active keeps waiting in the consumer's thread while a rebalance
pauses everything, and aiokafka, finding the set empty, returns the buffered records of every partition,
paused ones included. Faust drops those it does not deliver. When that happens after recovery's last seek
(the records fetched from the seek's offsets, the partition not yet resumed), nothing seeks them back: the
rebalance test lost 110 sessions after 2 -> 1 that way. The copy passes a view of the same live set that is
never empty to aiokafka, so a paused partition's records stay buffered for the fetch after its resume.

The direct path (``handle_directly``) goes one step further for a topic whose consumer opts in: the drain loop
hands each of its messages to the consumer's own coroutine, skipping the conductor, the channel queue, the
stream iterator, the event and Faust's per-message sensors, which together were most of a message's cost
(BENCHMARKS.md, issue 13). What Faust's path gives is kept: the consumer group and its rebalances, Faust's
read-offset filter and seek bookkeeping above, acks through ``Message.ack`` (the commit rule is Faust's),
and no message handled while the consumer's flow or the app's flow control is stopped (a rebalance): such a
message is left unread for the seek that ends every rebalance, as PR #223 abandons it. The handler itself is
never abandoned midway (it is not under ``wait_first``): like an agent's loop body, it runs to its end.

``install()`` swaps in the patched methods only when the installed Faust's are, source for source, the ones
this was written against (``ORIGINAL_SHA256``); otherwise it raises, so an upgrade fails at start and in
``tests/runtime/test_faust_fastpath.py`` instead of silently running an outdated copy.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping, Set
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ConsumerStoppedError
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import Message
from faust.types.transports import ConsumerCallback, ConsumerT
from mode import Service, ServiceT

from streams.runtime import metrics

FAUST_VERSION = "0.15.3"
# sha256 of ``inspect.getsource(...)`` of each replaced or relied-on method in that version.
ORIGINAL_SHA256 = {
    "Consumer._drain_messages": "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68",
    "Recovery.on_recovery_completed": "895e7c415a4d137997ea0e6c04f0c180d3c783cd6ef18a977a14338ca1073b59",
    "Recovery._resume_streams": "fbe0f747b84c0b2743bc83626a6836c0b1ffc3b1e3b3ac0073eb13552fd44c75",
    "AIOKafkaConsumerThread.seek_to_committed": "43907fc1163624bd01465d4f99e52f77f3e6180c423f94e4fd00c388d0bff801",
    "AIOKafkaConsumerThread._fetch_records": "9e7369fc572de4d0a2747de8690cf28587dddac36dde6f619cbd5fb85d94cfb9",
    "Consumer._commit_offsets": "86b3e9b0aec773ac0923dd4409d8ff220781c0017cc356258331792009c903a8",
}

_REPLACED: dict[str, tuple[type, str]] = {
    "Consumer._drain_messages": (Consumer, "_drain_messages"),
    "Recovery.on_recovery_completed": (Recovery, "on_recovery_completed"),
    "Recovery._resume_streams": (Recovery, "_resume_streams"),
    "AIOKafkaConsumerThread.seek_to_committed": (AIOKafkaConsumerThread, "seek_to_committed"),
    "AIOKafkaConsumerThread._fetch_records": (AIOKafkaConsumerThread, "_fetch_records"),
}
# Not replaced, but relied on: ``committed_offsets`` is sound only because this flushes the producer before it
# commits.
_RELIED_ON: dict[str, tuple[type, str]] = {"Consumer._commit_offsets": (Consumer, "_commit_offsets")}
_ORIGINALS = {name: getattr(cls, attr) for name, (cls, attr) in (_REPLACED | _RELIED_ON).items()}
# Every Faust method that sets ``_read_offset`` to a position it seeks to, as Faust defines it.
_SEEKING = {
    (cls, name): getattr(cls, name)
    for cls, name in (
        (faust_consumer.Consumer, "perform_seek"),
        (faust_consumer.Consumer, "seek"),
        (faust_consumer.ThreadDelegateConsumer, "seek_wait"),
    )
}
_SEEKS = "_vitrine_seeks"  # the per-consumer count of seeks, an attribute on Faust's consumer

_DIRECT = "_vitrine_direct"  # an attribute on the app: topic -> the coroutine function its messages go to

DirectHandler = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)


class FaustInternalsChanged(RuntimeError):
    """The installed Faust's code differs from the code the fast path replaces."""


def _source_sha256(func: Any) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(func)).encode()).hexdigest()


class _Resumed:
    """Awaiting it continues ``coro`` after a first step that yielded ``yielded``: ``yield from`` resumed midway.

    Each future the coroutine yields is passed up to the task awaiting this, which waits on it and sends the
    result (or throws the exception, cancellation included) back down, as for any awaited coroutine.
    """

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        yielded = self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # noqa: BLE001 - every exception, cancellation too, goes to the coroutine
                try:
                    yielded = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = self.coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Resumed(coro, yielded)


async def deliver(consumer: Consumer, callback: ConsumerCallback, message: Message) -> None:
    """``wait_first(callback(message), suspend_flow.wait())`` without tasks while the delivery does not block."""
    service = cast(Service, consumer)
    if consumer.suspend_flow.is_set() or service._stopped.is_set() or service._crashed.is_set():
        await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
        return
    coro = cast(Coroutine[Any, Any, Any], callback(message))
    try:
        yielded = coro.send(None)
    except StopIteration:
        return  # delivered without suspending: nothing could have intervened
    await consumer.wait_first(_resume(coro, yielded), consumer.suspend_flow.wait())


def handle_directly(app: faust.App, topic: str, handler: DirectHandler) -> None:
    """Have the drain loop await ``handler(message)`` for each of ``topic``'s messages, in place of delivering it.

    Only with the fast delivery installed (the hand-off is in its drain loop); the topic must still be subscribed
    to (by an agent), since that is what gets it assigned. Register before the app starts.
    """
    direct: dict[str, DirectHandler] = app.__dict__.setdefault(_DIRECT, {})
    direct[topic] = handler


def seeks(consumer: Consumer) -> int:
    """How many seeks have set ``consumer``'s read offsets so far."""
    count: int = getattr(consumer, _SEEKS, 0)
    return count


def _counted(seek: Callable[..., Awaitable[None]]) -> Callable[..., Coroutine[Any, Any, None]]:
    """``seek`` (a Faust method that sets read offsets), advancing the consumer's seek count once it is done."""

    @functools.wraps(seek)
    async def counted(self: Consumer, *args: Any) -> None:
        try:
            await seek(self, *args)
        finally:
            setattr(self, _SEEKS, seeks(self) + 1)

    return counted


def _dropped(message: Message, read_offset: int) -> None:
    metrics.DROPPED.labels(message.topic).inc()
    log.warning(
        "message below the read offset dropped",
        extra={"topic": message.topic, "partition": message.partition, "offset": message.offset, "read": read_offset},
    )


# Faust's ``Consumer._drain_messages`` of faust-streaming 0.15.3, unchanged but for the lines marked "was:".
async def _drain_messages(self: Consumer, fetcher: ServiceT) -> None:  # pragma: no cover - Faust's own loop
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    direct: dict[str, DirectHandler] = self.app.__dict__.get(_DIRECT, {})  # was: (not there)
    flow_control_active = self.app.flow_control.is_active

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        seeks_before = seeks(self)
                        handler = direct.get(tp.topic)  # was: (no direct path)
                        if handler is None:
                            await deliver(self, callback, message)  # was: await self.wait_first(callback(message), ...)
                        elif not (self.flow_active and flow_control_active()):
                            continue  # was: (no direct path) left for the seek that ends the rebalance
                        else:
                            await handler(message)
                        if seeks(self) == seeks_before:  # was: unconditional (a seek meanwhile set it afresh)
                            set_read_offset(tp, offset)
                    else:
                        _dropped(message, r_offset)  # was: self.log.dev("DROPPED MESSAGE ROFF ...")
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def _stream_tps(recovery: Recovery, assignment: set[Any]) -> set[Any]:
    return {tp for tp in assignment if not recovery._is_changelog_tp(tp)}


# Faust's ``Recovery.on_recovery_completed`` of faust-streaming 0.15.3, but for the lines marked "was:".
async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:  # pragma: no cover - Faust's
    """Call when active table recovery is completed."""
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    # This needs to happen if all goes well
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}")
        return
    # was: consumer.resume_partitions(<stream partitions>) here, before the seek and the queues' clear
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_partitions(_stream_tps(self, assignment))  # was: before the seek (above)
    consumer.resume_flow()
    # finally make sure the fetcher is running.
    await cast(Any, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


# Faust's ``Recovery._resume_streams`` of faust-streaming 0.15.3, but for the lines marked "was:".
async def _resume_streams(self: Recovery, generation_id: int = 0) -> None:  # pragma: no cover - Faust's
    app = self.app
    consumer = app.consumer
    await app.on_rebalance_complete.send()
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    if assignment:
        # was: consumer.resume_partitions(<stream partitions>) here, before the seek and the queues' clear
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    else:
        self.log.info("Resuming streams with empty assignment")
    self.completed.set()
    # Resume partitions and start fetching.
    self.log.info("Resuming flow...")
    app.flow_control.resume()
    consumer.resume_partitions(_stream_tps(self, assignment))  # was: before the seek (above)
    consumer.resume_flow()
    # finally make sure the fetcher is running.
    await cast(Any, app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


# Faust's ``AIOKafkaConsumerThread.seek_to_committed`` of faust-streaming 0.15.3, but for the line marked "was:".
async def seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[Any, int]:
    """Seek partitions to the last committed offset."""
    # was: return await self.call_thread(self._ensure_consumer().seek_to_committed)
    return cast(Mapping[Any, int], await self.call_thread(_seek_to_committed, self._ensure_consumer(), self.consumer))


async def _seek_to_committed(consumer: AIOKafkaConsumer, faust_consumer: Consumer) -> dict[Any, int | None]:
    """aiokafka's seek to the committed offsets, then every stream partition without one above 0 (run in its thread)."""
    committed: dict[Any, int | None] = await consumer.seek_to_committed()
    streams = [tp for tp, offset in committed.items() if not offset and not faust_consumer._is_changelog_tp(tp)]
    for tp in streams:
        if committed[tp] == 0:
            consumer.seek(tp, 0)
    uncommitted = [tp for tp in streams if committed[tp] is None]
    if uncommitted:
        if faust_consumer.app.conf.consumer_auto_offset_reset == "latest":
            await consumer.seek_to_end(*uncommitted)
        else:
            await consumer.seek_to_beginning(*uncommitted)
    return committed


class ActivePartitions:
    """Faust's live set of active partitions as aiokafka's ``fetched_records`` reads it: empty is not "every one"."""

    __slots__ = ("tps",)

    def __init__(self, tps: Set[Any]) -> None:
        self.tps = tps

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.tps


# Faust's ``AIOKafkaConsumerThread._fetch_records`` of faust-streaming 0.15.3, but for the line marked "was:".
async def _fetch_records(  # pragma: no cover - Faust's own fetch, run by every broker-backed test
    self: AIOKafkaConsumerThread,
    consumer: AIOKafkaConsumer,
    active_partitions: Set[Any],
    timeout: float | None = None,
    max_records: int | None = None,
) -> Any:
    if not self.consumer.flow_active:
        return {}
    fetcher = consumer._fetcher
    if consumer._closed or fetcher._closed:
        raise ConsumerStoppedError()
    with fetcher._subscriptions.fetch_context():
        try:
            return await fetcher.fetched_records(
                ActivePartitions(active_partitions),  # was: active_partitions
                timeout=timeout,
                max_records=max_records,
            )
        finally:
            pass


_COPIES: dict[str, Callable[..., Any]] = {
    "Consumer._drain_messages": _drain_messages,
    "Recovery.on_recovery_completed": on_recovery_completed,
    "Recovery._resume_streams": _resume_streams,
    "AIOKafkaConsumerThread.seek_to_committed": seek_to_committed,
    "AIOKafkaConsumerThread._fetch_records": _fetch_records,
}


def committed_offsets(consumer: ConsumerT, topic: str) -> dict[int, int]:
    """``topic``'s committed offset by partition, as Faust last committed or read it (``_committed_offset``).

    Faust's ``_commit_offsets`` awaits ``producer.flush()`` before it commits, so everything the app produced
    while handling the messages below a committed offset has reached Kafka. Partitions without one are left out."""
    committed = cast(Consumer, consumer)._committed_offset
    return {tp.partition: offset for tp, offset in committed.items() if tp.topic == topic and offset}


def check() -> None:
    """Raise unless the installed Faust is the version, and each method replaced or relied on the code, this module
    was written against."""
    changed = [name for name, original in _ORIGINALS.items() if _source_sha256(original) != ORIGINAL_SHA256[name]]
    if faust.__version__ != FAUST_VERSION or changed:
        raise FaustInternalsChanged(
            f"faust-streaming {faust.__version__}: {', '.join(changed) or 'the version'} is not the {FAUST_VERSION} "
            "code streams/runtime/faust_fastpath.py replaces; port the change or drop the override"
        )


def install(*, fast_delivery: bool = True) -> None:
    """Replace the recovery, seek and fetch methods with their copies, and the drain loop when ``fast_delivery``.

    Idempotent. The recovery, seek and fetch fixes are correctness fixes and always go in; the inline
    delivery is the opt-out ``VITRINE_FAST_DELIVERY`` setting, which puts Faust's own loop back.
    """
    check()
    for name, (cls, attr) in _REPLACED.items():
        keep_faust = name == "Consumer._drain_messages" and not fast_delivery
        setattr(cls, attr, _ORIGINALS[name] if keep_faust else _COPIES[name])
    for (cls, name), faust_seek in _SEEKING.items():
        setattr(cls, name, _counted(faust_seek))
