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

``install()`` swaps in the patched ``_drain_messages`` only when the installed Faust's is, source for source,
the one this was written against (``ORIGINAL_SHA256``); otherwise it raises, so an upgrade fails at start
and in ``tests/runtime/test_faust_fastpath.py`` instead of silently running an outdated copy.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types import Message
from faust.types.transports import ConsumerCallback
from mode import Service, ServiceT

from streams.runtime import metrics

FAUST_VERSION = "0.15.3"
# sha256 of ``inspect.getsource(faust.transport.consumer.Consumer._drain_messages)`` in that version.
ORIGINAL_SHA256 = "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68"


_FAUST_DRAIN_MESSAGES = Consumer._drain_messages
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
                        await deliver(self, callback, message)  # was: await self.wait_first(callback(message), ...)
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


def check() -> None:
    """Raise unless the installed Faust is the version, and ``_drain_messages`` the code, this replaces."""
    if faust.__version__ != FAUST_VERSION or _source_sha256(_FAUST_DRAIN_MESSAGES) != ORIGINAL_SHA256:
        raise FaustInternalsChanged(
            f"faust-streaming {faust.__version__}: Consumer._drain_messages is not the {FAUST_VERSION} code "
            "streams/runtime/faust_fastpath.py replaces; port the change or drop the fast path"
        )


def install() -> None:
    """Replace ``Consumer._drain_messages`` with the fast-path copy, and count seeks (idempotent)."""
    check()
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    for (cls, name), faust_seek in _SEEKING.items():
        setattr(cls, name, _counted(faust_seek))
