"""The Faust app of the session worker: topics, the sessions table, the agent, timers and endpoints.

Processing guarantee is at-least-once with agent concurrency 1 (Faust's exactly-once and
concurrent agents have open data-loss reports); outputs are made idempotent instead: the state
remembers the last applied input offset, and requests carry a per-session monotonic version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import faust
from faust.types import Message, StreamT
from mode import BaseSignalT

from streams.contracts.errors import InvalidEvent
from streams.contracts.events import PlausibleTime, decode_event
from streams.contracts.regen import RegenRequest
from streams.runtime import metrics
from streams.runtime.dlq import DeadLetters, Rejected
from streams.runtime.faust_app import (
    AgentHealth,
    MessageEvent,
    as_current_event,
    codec_table,
    faust_app,
    quiet_worker,
    without_current_event,
)
from streams.runtime.faust_fastpath import committed_offsets, handle_directly
from streams.runtime.process import prepare_process
from streams.runtime.settings import Settings, StoreKind
from streams.runtime.stall import StallWatch, consumer_internals
from streams.runtime.web import add_endpoints
from streams.worker.codecs import PRODUCT_SIGNAL_CODEC, SESSION_STATE_CODEC
from streams.worker.ranker import RankerSignals, signal_key, split_key
from streams.worker.scan import count_keys, idle_sessions
from streams.worker.sessions import SessionTracker, WorkerStep, covisit_window
from streams.worker.state import SessionState
from streams.worker.watermark import Watermark, plausible_time

log = logging.getLogger(__name__)

_STATE_SIZE_SAMPLE = 256
STALL_WARN_S = 15.0  # three gauge refreshes without progress
SESSIONS_TABLE = "sessions"
RANKER_TABLE = "ranker"
TABLES = (SESSIONS_TABLE, RANKER_TABLE)


def rocksdb_memory_bound(settings: Settings) -> int:
    """The most block cache and memtable memory one worker can hold: every table's database for every partition.

    A worker never holds more databases than that: a partition is active or standby on it, not both.
    """
    return len(TABLES) * settings.topics.topic_partitions * settings.worker.rocksdb_bytes_per_database()


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class SessionWorker:
    """Everything the agent needs, built once; ``handle`` is the per-event path.

    Changelog writes are coalesced: the store is updated on every event, but a session's state
    is sent to the changelog once per flush (every ``flush_max_events`` events or
    ``flush_interval_s``), and the events behind it are acked only after that send. Faust's own
    ``table[key] = value`` writes one changelog message per event through its per-message
    producer buffer, which was the largest single cost in a py-spy profile of the worker.
    """

    app: faust.App
    settings: Settings
    tracker: SessionTracker
    table: Any
    ranker_table: Any
    ranker: RankerSignals
    dead_letters: DeadLetters
    regen_topic: str
    window: PlausibleTime
    health: AgentHealth
    watermark: Watermark = field(default_factory=Watermark)
    lag_labels: set[tuple[str, str]] = field(default_factory=set)
    stalls: StallWatch = field(default_factory=lambda: StallWatch(warn_after_s=STALL_WARN_S))
    dirty: dict[bytes, SessionState] = field(default_factory=dict)
    # The states a flush is sending now: expiry leaves them to the next walk, or its tombstone could go out before
    # the state that the flush sends after it, and the changelog would bring the session back on a restore.
    sending: dict[bytes, SessionState] = field(default_factory=dict)
    # One flush at a time (the timer's and handle's may meet): two at once could send a key's older state last.
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty_signals: set[bytes] = field(default_factory=set)
    unacked: list[Message] = field(default_factory=list)
    # Clickstream partition -> committed offset, as of the last flush.
    committed: dict[int, int] = field(default_factory=dict)

    @property
    def live_iteration(self) -> bool:
        """The store can be walked while events change it (RocksDB's iterators read a snapshot; a dict cannot)."""
        return self.settings.worker.store is StoreKind.ROCKSDB

    async def handle_direct(self, msg: Message) -> None:
        """The direct path's handler (``faust_fastpath.handle_directly``): ``handle`` with the message as Faust's
        current event (the RocksDB store takes a write's partition from it), and the agent's health kept.

        An exception here is a bug (bad input is dead-lettered, never raised): it is counted and let out, Faust's
        fetcher crashes and the process exits non-zero with nothing committed past the event; the restarted pod
        resumes from the committed offset. Skipping the event instead would let Faust commit past it."""
        try:
            with as_current_event(MessageEvent(msg)):
                await self.handle(msg)
        except Exception as exc:
            self.health.crashed(exc)
            raise
        self.health.succeeded()

    async def handle(self, msg: Message) -> None:
        """One clickstream message, from the agent's stream or the direct path."""
        self.unacked.append(msg)
        try:
            click = decode_event(
                msg.value,
                max_bytes=self.settings.worker.max_event_bytes,
                key=msg.key or b"",
                window=self.window,
                reference_ms=int(msg.timestamp * 1000) if msg.timestamp and msg.timestamp > 0 else _now_ms(),
            )
        except InvalidEvent as exc:
            rejected = Rejected(msg.topic, msg.partition, msg.offset, msg.key, msg.value, msg.headers or ())
            await self.dead_letters.send(rejected, exc.reason, exc.detail)
        else:
            key = click.session_id.encode()  # equals msg.key: decode_event checked
            previous = self.table.data.get(key)
            outcome = WorkerStep(self.tracker, self.ranker).apply(
                previous,
                click,
                partition=msg.partition,
                offset=msg.offset,
                committed=self.committed.get(msg.partition, 0),
            )
            if outcome.duplicate:
                metrics.DUPLICATES.inc()
                # The local store (RocksDB survives a SIGKILL) may hold this state although the flush that
                # would have sent it to the changelog never ran: send it again before this event is acked.
                self.dirty[key] = outcome.state
                recent_before = covisit_window(previous)
                self._redirty_signals(msg.partition, click.product_id, recent_before)
                if outcome.request is not None:  # same version again: consumers keep the first
                    metrics.RESENT.inc()
                    await self._request(key, outcome.request, msg.partition)
            else:
                # Inside the stream the current event names the partition, which the RocksDB store needs.
                self.table.data[key] = self.dirty[key] = outcome.state
                self.watermark.observe(click.ts)
                metrics.EVENTS.labels(click.event_type).inc()
                self.dirty_signals.update(outcome.touched)
                if outcome.request is not None:
                    metrics.TRIGGERS.labels(outcome.request.reason).inc()
                    await self._request(key, outcome.request, msg.partition)
        if len(self.unacked) >= self.settings.worker.flush_max_events:
            await self.flush()

    async def flush(self) -> None:
        """Send dirty states and signals to their changelogs, then ack the events they came from.

        Run by the timer and, past ``flush_max_events``, by ``handle``: there under the current message, whose
        partition is not that of every dirty signal, so the signals are read without a current event (on
        RocksDB a read under one looks in that partition's database only)."""
        async with self.flushing:
            await self._flush()

    async def _flush(self) -> None:
        dirty, signals, unacked = self.dirty, self.dirty_signals, self.unacked
        self.dirty, self.dirty_signals, self.unacked = {}, set(), []
        changelog = self.table.changelog_topic.get_topic_name()
        send = self.app.producer.send
        self.sending = dirty
        try:
            for key, state in dirty.items():
                await send(changelog, key, state.to_bytes(), state.partition, None, None)
        finally:
            self.sending = {}
        signal_changelog = self.ranker_table.changelog_topic.get_topic_name()
        with without_current_event():
            encoded = [(key, self.ranker_table.data[key].to_bytes()) for key in signals]
        for key, value in encoded:
            await send(signal_changelog, key, value, split_key(key)[0], None, None)
        consumer = self.app.consumer
        for message in unacked:
            message.ack(consumer)
        # A stale (lower) offset only keeps more versions re-sendable; Faust commits on its own timer.
        self.committed = committed_offsets(consumer, self.settings.topics.clickstream_topic)

    def _redirty_signals(self, partition: int, product_id: str | None, recent: list[str]) -> None:
        """The ranker signals a redelivered event touched, as far as they exist here (sent again, unchanged)."""
        if product_id is None:
            return
        keys = (signal_key(partition, p) for p in (product_id, *recent))
        self.dirty_signals.update(k for k in keys if k in self.ranker_table.data)

    async def _request(self, key: bytes, request: RegenRequest, partition: int) -> None:
        request = replace(request, requested_at_ms=int(time.time() * 1000))
        await self.app.producer.send(self.regen_topic, key, request.to_json(), partition, None, None)

    def active_partitions(self) -> set[int]:
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.settings.topics.clickstream_topic
        }

    async def expire_idle(self) -> int:
        """Tombstone sessions idle for ``session_ttl_s`` of event time, in this worker's partitions only (a walk of
        every session that lets events through between chunks: ``streams.worker.scan``)."""
        horizon = self.watermark.value - int(self.settings.worker.session_ttl_s * 1000)
        changelog = self.table.changelog_topic.get_topic_name()
        expired = 0
        async for key, state in idle_sessions(
            self.table.data,
            horizon_ms=horizon,
            owned=self.active_partitions,
            copy_keys=not self.live_iteration,
            stop=lambda: bool(self.app.rebalancing),
        ):
            if key in self.sending:
                continue  # idle still, it expires in the next walk, after the flush sent its state
            del self.table.data[key]
            self.dirty.pop(key, None)
            expired += 1
            # Through the producer the flush sends states with, so a state of this key sent later (a new session
            # under the same id) follows the tombstone in the partition; Faust's send_changelog goes through a
            # buffer of its own. The partition is given: outside the agent no current event names it.
            await self.app.producer.send(changelog, key, None, state.partition, None, None)
        metrics.EXPIRED.inc(expired)
        return expired

    async def refresh_gauges(self) -> None:
        # A RocksDB store's len() walks every key at once; a memory store's is a dict's.
        sessions = (
            await count_keys(self.table.data, stop=lambda: bool(self.app.rebalancing))
            if self.live_iteration
            else len(self.table.data)
        )
        if sessions is not None:
            metrics.SESSIONS.set(sessions)
        sample = [s.to_bytes() for _, s in zip(range(_STATE_SIZE_SAMPLE), self.table.data.values(), strict=False)]
        if sample:
            metrics.STATE_BYTES.set(sum(map(len, sample)) / len(sample))
        consumer = self.app.consumer
        owned: set[tuple[str, str]] = set()
        for tp in consumer.assignment():
            if tp.topic != self.settings.topics.clickstream_topic:
                continue
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                labels = (tp.topic, str(tp.partition))
                lag = max(0, highwater - position)
                metrics.LAG.labels(*labels).set(lag)
                owned.add(labels)
                stalled = self.stalls.observe(labels, position, lag, time.monotonic())
                if stalled >= self.stalls.warn_after_s:
                    log.warning(
                        "partition stalled",
                        extra={
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "stalled_s": round(stalled, 1),
                            "position": position,
                            "highwater": highwater,
                            "unacked_events": len(self.unacked),
                            **consumer_internals(consumer, tp),
                        },
                    )
        for labels in self.lag_labels - owned:  # a partition given away: its lag is its new owner's to report
            metrics.LAG.remove(*labels)
            self.stalls.forget(labels)
        self.lag_labels = owned

    def is_ready(self) -> bool:
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its ABC
        return bool(recovery.completed.is_set()) and not self.app.rebalancing and self.health.healthy


def create_app(settings: Settings) -> tuple[faust.App, SessionWorker]:
    app = faust_app(
        settings,
        app_id=settings.topics.app_id,
        # Faust would wait for every started event to be acked before a rebalance or shutdown, but our
        # acks follow changelog flushes, which stop with the timers: a stop would hang. Unflushed
        # events are simply not committed; whoever owns the partition next replays them, and the
        # offset kept in each state makes that replay idempotent.
        stream_wait_empty=False,
    )
    clickstream = app.topic(
        settings.topics.clickstream_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topics.topic_partitions,
    )
    ranker_table = codec_table(
        app, settings, RANKER_TABLE, PRODUCT_SIGNAL_CODEC, "Popularity and co-visitation by partition/product."
    )
    worker = SessionWorker(
        app=app,
        settings=settings,
        tracker=SessionTracker.from_settings(settings),
        table=codec_table(
            app,
            settings,
            SESSIONS_TABLE,
            SESSION_STATE_CODEC,
            "Session state by session id, co-partitioned with the clickstream.",
        ),
        ranker_table=ranker_table,
        ranker=RankerSignals(
            ranker_table.data,
            half_life_s=settings.worker.ranker_half_life_s,
            per_list=settings.worker.ranker_candidates,
        ),
        dead_letters=DeadLetters(app.producer, settings.topics.dlq_topic, settings.topics.dlq_max_value_bytes),
        regen_topic=settings.topics.regen_topic,
        window=plausible_time(settings),
        health=AgentHealth("sessions", settings.operations.agent_crash_limit),
    )

    @app.agent(clickstream, concurrency=1)
    async def sessions(stream: StreamT[bytes]) -> None:
        # Manual acks: an event is acked only once the state it produced is on its way to the
        # changelog (see SessionWorker.flush), so a commit never runs ahead of durable state.
        # Bad input never gets here as an exception (it is dead-lettered); anything that does is counted,
        # and Faust restarts the agent from the last acked offset.
        try:
            async for event in stream.noack().events():  # type: ignore[attr-defined]  # Stream has it, StreamT not
                await worker.handle(event.message)
                worker.health.succeeded()
        except Exception as exc:
            worker.health.crashed(exc)
            raise

    @app.on_rebalance_complete.connect
    def forget_ranker_lists(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        """A restore from the changelog wrote the ranker store directly: rebuild the kept lists from it."""
        worker.ranker.reset()

    if settings.worker.direct_path and settings.worker.fast_delivery:
        # The agent above still subscribes to the clickstream (that is what gets its partitions assigned), but
        # its messages go from the drain loop to the worker without the conductor and the stream.
        handle_directly(app, clickstream.get_topic_name(), worker.handle_direct)

    @app.timer(settings.worker.flush_interval_s)
    async def flush() -> None:
        await worker.flush()

    @app.timer(settings.worker.expiry_interval_s)
    async def expire() -> None:
        if worker.is_ready():
            n = await worker.expire_idle()
            if n:
                log.info("expired idle sessions", extra={"expired": n})

    @app.timer(5.0)
    async def gauges() -> None:
        metrics.READY.set(1 if worker.is_ready() else 0)
        if worker.is_ready():
            await worker.refresh_gauges()

    add_endpoints(app, worker.is_ready)

    return app, worker


def run_worker(settings: Settings) -> None:
    """Prepare the process, then run the Faust worker until it is stopped."""
    prepare_process(settings)
    app, _ = create_app(settings)
    if settings.worker.store is StoreKind.ROCKSDB:
        log.info("rocksdb memory bound", extra={"bytes": rocksdb_memory_bound(settings)})
    quiet_worker(app, settings.operations.log_level).execute_from_commandline()
