"""Faust's consumer drain loop, written against faust-streaming 0.15.3: a cheaper delivery, and a race closed.

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

The race fix is installed in every process (``install``); the inline delivery only with
``inline_delivery`` (``VITRINE_FAST_DELIVERY``, default true), so that turning the cheaper path off
never brings the race back.

A third loss sits in the recovery that ends every rebalance. ``Recovery.on_recovery_completed`` (and
``_resume_streams``) resume the stream partitions, then ``perform_seek`` to the committed offsets, then resume
the flow, and resuming the flow clears every stream queue (mode's ``FlowControlEvent.resume``). The flow was
already running (changelog reading resumed it), so messages fetched while the seek waits on the broker are
delivered into queues that are then cleared; they come back only if the seek moves the fetch position, and
aiokafka's ``seek_to_committed`` does not for a partition without a committed offset (or one at 0). A
generator killed before its first commit left its successor exactly that: 1-2 requests lost per partition, and
the commit, unchecked for gaps while nothing is committed (``Consumer._new_offset``), moved past them. Here
``perform_seek`` holds the stream partitions back until the flow resumes (Faust's ``pause_partitions``: they
leave the set the fetcher reads, so whatever comes back from the broker stays in aiokafka's buffer), and a
stream partition without a committed offset is sent back to its beginning (the ``earliest`` reset this project
configures): what the cleared queues held is fetched again, at least once, and the consumers drop what they
had already done. Only the stream partitions are held: stopping the whole flow instead (the first version of
this fix) made ``Consumer.getmany`` discard a batch that came back while the flow was off, standby changelog
records included, which no seek brings back; a worker that later took the partition over recovered from past
the gap and served sessions without their earlier events (the rebalance 1 -> 2 -> 1 test, 1-5 sessions).

``install()`` swaps these in only when the installed Faust's code is, source for source, the code this was
written against (``ORIGINAL_SHA256``: the replaced loop and the methods whose order the fixes rely on);
otherwise it raises, so an upgrade fails at start and in ``tests/runtime/test_faust_fastpath.py`` instead of
silently running an outdated copy.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, cast

import faust
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import CONSUMER_FETCHING, Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP, Message
from faust.types.transports import ConsumerCallback
from mode import Service, ServiceT

from streams.runtime import metrics

FAUST_VERSION = "0.15.3"
# sha256 of ``inspect.getsource`` of each Faust method replaced, wrapped or relied on, in that version.
ORIGINAL_SHA256 = {
    "Consumer._drain_messages": "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68",
    "Consumer.perform_seek": "2b4ceebd23deb7ee43ff9bb6894715c3ff49da43160fc37b0351a7db7ea07e3e",
    "ThreadDelegateConsumer.seek_to_committed": "6c17ae1d4f33af0cfa8deef0f44d9bdda2748ec18ae0bf59a4ec09404cbfc387",
    # Both resume the stream partitions, perform_seek, then resume the flow (which clears the stream queues).
    "Recovery._resume_streams": "fbe0f747b84c0b2743bc83626a6836c0b1ffc3b1e3b3ac0073eb13552fd44c75",
    "Recovery.on_recovery_completed": "895e7c415a4d137997ea0e6c04f0c180d3c783cd6ef18a977a14338ca1073b59",
    "Consumer.resume_flow": "192f20bc377f5fec2acaa88023ea74747b60c0251687d77163196376cc6b5ffb",
    # A held partition leaves the live set that getmany filters by and the aiokafka thread fetches from.
    "Consumer.pause_partitions": "a1814af098238ff172ff3accd4b2241ccea51d4d467f54f749d0d526f5df363c",
    "Consumer.getmany": "e486c434b7928ee8dc33eb66f8ad03adae289861dcec23f4cbd767ccc3c38148",
    "AIOKafkaConsumerThread._fetch_records": "9e7369fc572de4d0a2747de8690cf28587dddac36dde6f619cbd5fb85d94cfb9",
}
_ORIGINALS: dict[str, Callable[..., Any]] = {
    "Consumer._drain_messages": Consumer._drain_messages,
    "Consumer.perform_seek": Consumer.perform_seek,
    "ThreadDelegateConsumer.seek_to_committed": ThreadDelegateConsumer.seek_to_committed,
    "Recovery._resume_streams": Recovery._resume_streams,
    "Recovery.on_recovery_completed": Recovery.on_recovery_completed,
    "Consumer.resume_flow": Consumer.resume_flow,
    "Consumer.pause_partitions": Consumer.pause_partitions,
    "Consumer.getmany": Consumer.getmany,
    "AIOKafkaConsumerThread._fetch_records": AIOKafkaConsumerThread._fetch_records,
}
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
_HELD = "_vitrine_held"  # (generation, stream partitions) that perform_seek paused until the flow resumes
_inline = True  # whether ``_drain_messages`` delivers through ``deliver`` (set by ``install``)

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
                        if _inline:  # was: await self.wait_first(callback(message), self.suspend_flow.wait())
                            await deliver(self, callback, message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
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


def _holding_streams(perform_seek: Callable[..., Awaitable[None]]) -> Callable[..., Coroutine[Any, Any, None]]:
    """``perform_seek`` with the stream partitions held back until the flow resumes (``_resume_flow``).

    Only while the flow runs (the recovery's seek); ``getmany``'s seek runs with the flow already off."""

    @functools.wraps(perform_seek)
    async def holding_streams(self: Consumer) -> None:
        if self.flow_active:
            changelogs = self.app.tables.changelog_topics
            held = {tp for tp in self._get_active_partitions() if tp.topic not in changelogs}
            if held:
                self.pause_partitions(held)
                setattr(self, _HELD, (self.app.consumer_generation_id, held))
        await perform_seek(self)

    return holding_streams


def _resume_flow(self: Consumer) -> None:
    """Faust's ``resume_flow``, then the partitions the seek held back, unless a rebalance came in between (its
    own recovery resumes what it assigns)."""
    _ORIGINALS["Consumer.resume_flow"](self)
    generation, held = getattr(self, _HELD, (None, set()))
    if held:
        setattr(self, _HELD, (None, set()))
        if generation == self.app.consumer_generation_id:
            self.resume_partitions(held & self.assignment())


async def _seek_to_committed(self: ThreadDelegateConsumer) -> Mapping[TP, int]:
    """Faust's ``seek_to_committed``, then stream partitions without a committed offset to their beginning."""
    committed: Mapping[TP, int] = await _ORIGINALS["ThreadDelegateConsumer.seek_to_committed"](self)
    if self.app.conf.consumer_auto_offset_reset == "earliest":
        changelogs = self.app.tables.changelog_topics
        fresh = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
        if fresh:
            # To explicit offsets: aiokafka's ``seek_to_beginning`` is a lazy reset that leaves the position unset
            # until a fetch resolves it, and Faust's livelock check reads it meanwhile (an AssertionError that
            # crashed a worker's consumer in CI).
            thread = cast(Any, self._thread)
            for tp, offset in (await thread.earliest_offsets(*fresh)).items():
                thread.seek(tp, offset)
    return committed


def check() -> None:
    """Raise unless the installed Faust is the version, and each method the code, these overrides were written for."""
    changed = [name for name, func in _ORIGINALS.items() if _source_sha256(func) != ORIGINAL_SHA256[name]]
    if faust.__version__ != FAUST_VERSION or changed:
        raise FaustInternalsChanged(
            f"faust-streaming {faust.__version__}: {', '.join(changed) or 'the version'} differs from the "
            f"{FAUST_VERSION} code streams/runtime/faust_fastpath.py overrides; port the changes or drop them"
        )


def install(*, inline_delivery: bool = True) -> None:
    """Replace ``Consumer._drain_messages`` with the copy (inline delivery on or off), count seeks, hold the
    stream partitions from the recovery's seek to the flow's resume, uncommitted partitions from their beginning
    (idempotent)."""
    global _inline
    check()
    _inline = inline_delivery
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    Consumer.resume_flow = _resume_flow  # type: ignore[method-assign]
    for (cls, name), faust_seek in _SEEKING.items():
        seek = _holding_streams(faust_seek) if name == "perform_seek" else faust_seek
        setattr(cls, name, _counted(seek))
