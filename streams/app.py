"""The Faust app of the session worker: topics, the sessions table, the agent, timers and endpoints.

Processing guarantee is at-least-once with agent concurrency 1 (Faust's exactly-once and
concurrent agents have open data-loss reports); outputs are made idempotent instead: the state
remembers the last applied input offset, and requests carry a per-session monotonic version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import faust
from faust.types import EventT, StreamT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.codecs import SESSION_STATE_CODEC
from streams.events import DlqReason, decode_event
from streams.exceptions import InvalidEvent
from streams.intent import load_intent_space
from streams.kafka_config import faust_credentials
from streams.regen import RegenRequest
from streams.session_state import SessionState
from streams.sessions import SessionTracker
from streams.settings import Settings, StoreKind
from streams.trigger import TriggerPolicy

log = logging.getLogger(__name__)

LIVE_PATH = "/livez"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

_STATE_SIZE_SAMPLE = 256
# aiohttp takes the charset separately and rejects it inside content_type.
_METRICS_CONTENT_TYPE = "; ".join(p.strip() for p in CONTENT_TYPE_LATEST.split(";") if "charset" not in p)


def dlq_headers(reason: DlqReason, detail: str, *, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka Connect's convention: the original bytes stay the value, the context goes in headers."""
    return [
        ("vitrine.dlq.reason", reason.value.encode()),
        ("vitrine.dlq.detail", detail.encode()[:1024]),
        ("vitrine.dlq.topic", topic.encode()),
        ("vitrine.dlq.partition", str(partition).encode()),
        ("vitrine.dlq.offset", str(offset).encode()),
    ]


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
    dlq_topic: str
    regen_topic: str
    watermark_ms: int = 0
    dirty: dict[bytes, SessionState] = field(default_factory=dict)
    unacked: list[EventT] = field(default_factory=list)

    async def handle(self, event: EventT) -> None:
        msg = event.message
        self.unacked.append(event)
        try:
            click = decode_event(event.value, max_bytes=self.settings.max_event_bytes, key=msg.key or b"")
        except InvalidEvent as exc:
            await self._dead_letter(msg, event.value, exc)
        else:
            key = click.session_id.encode()  # equals msg.key: decode_event checked
            outcome = self.tracker.apply(self.table.data.get(key), click, partition=msg.partition, offset=msg.offset)
            if outcome.duplicate:
                metrics.DUPLICATES.inc()
                if outcome.request is not None:  # same version again: consumers keep the first
                    metrics.RESENT.inc()
                    await self._request(key, outcome.request, msg.partition)
            else:
                # Inside the stream the current event names the partition, which the RocksDB store needs.
                self.table.data[key] = self.dirty[key] = outcome.state
                self.watermark_ms = max(self.watermark_ms, click.ts)
                metrics.EVENTS.labels(click.event_type).inc()
                if outcome.request is not None:
                    metrics.TRIGGERS.labels(outcome.request.reason).inc()
                    await self._request(key, outcome.request, msg.partition)
        if len(self.unacked) >= self.settings.flush_max_events:
            await self.flush()

    async def flush(self) -> None:
        """Send dirty states to the changelog, then ack the events they came from."""
        dirty, unacked = self.dirty, self.unacked
        self.dirty, self.unacked = {}, []
        changelog = self.table.changelog_topic.get_topic_name()
        send = self.app.producer.send
        for key, state in dirty.items():
            await send(changelog, key, state.to_bytes(), state.partition, None, None)
        for event in unacked:
            event.ack()

    async def _request(self, key: bytes, request: RegenRequest, partition: int) -> None:
        request = replace(request, requested_at_ms=int(time.time() * 1000))
        await self.app.producer.send(self.regen_topic, key, request.to_json(), partition, None, None)

    async def _dead_letter(self, msg: Any, raw: bytes, exc: InvalidEvent) -> None:
        metrics.DLQ.labels(exc.reason.value).inc()
        headers = dlq_headers(exc.reason, exc.detail, topic=msg.topic, partition=msg.partition, offset=msg.offset)
        await self.app.producer.send(self.dlq_topic, msg.key, raw, None, None, headers)

    def active_partitions(self) -> set[int]:
        return {
            tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.settings.clickstream_topic
        }

    def expire_idle(self) -> int:
        """Tombstone sessions idle for ``session_ttl_s`` of event time, in this worker's partitions only."""
        horizon = self.watermark_ms - int(self.settings.session_ttl_s * 1000)
        active = self.active_partitions()
        expired = [k for k, s in self.table.items() if s.last_ts < horizon and s.partition in active]
        for key in expired:
            # Written directly: outside the agent there is no current event to take the partition from.
            self.table.send_changelog(self.table.data[key].partition, key, None, value_serializer="raw")
            del self.table.data[key]
            self.dirty.pop(key, None)
        metrics.EXPIRED.inc(len(expired))
        return len(expired)

    async def refresh_gauges(self) -> None:
        metrics.SESSIONS.set(len(self.table.data))
        sample = [s.to_bytes() for _, s in zip(range(_STATE_SIZE_SAMPLE), self.table.data.values(), strict=False)]
        if sample:
            metrics.STATE_BYTES.set(sum(map(len, sample)) / len(sample))
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.clickstream_topic:
                continue
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    def is_ready(self) -> bool:
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its ABC
        return bool(recovery.completed.is_set()) and not self.app.rebalancing


def _faust_logging_config(settings: Settings) -> dict[str, Any]:
    fmt: dict[str, Any] = (
        {"()": "streams.logs.JsonFormatter"}
        if settings.log_json
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": fmt},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
    }


class SessionTable(faust.Table):
    """Faust derives a table's codecs from Record types only; ours is a dataclass with its own encoding.

    Set here, before ``app.tables.add`` creates the changelog topic, so that writes and recovery
    (which decodes with the topic's codec) agree.
    """

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = SESSION_STATE_CODEC


def _sessions_table(app: faust.App, settings: Settings) -> Any:
    table = SessionTable(
        app,
        name="sessions",
        partitions=settings.topic_partitions,
        help="Session state by session id, co-partitioned with the clickstream.",
    )
    return app.tables.add(table)


def create_app(settings: Settings) -> tuple[faust.App, SessionWorker]:
    store = "memory://" if settings.store is StoreKind.MEMORY else "rocksdb://"
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        store=store,
        datadir=str(settings.data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        # Each changelog write is one message; without linger every write is its own produce request,
        # which showed in a py-spy profile (the effect was not isolated in a clean A/B run).
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=256 * 1024,
        # Faust would wait for every started event to be acked before a rebalance or shutdown, but our
        # acks follow changelog flushes, which stop with the timers: a stop would hang. Unflushed
        # events are simply not committed; whoever owns the partition next replays them, and the
        # offset kept in each state makes that replay idempotent.
        stream_wait_empty=False,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        logging_config=_faust_logging_config(settings),
        autodiscover=False,
    )
    clickstream = app.topic(
        settings.clickstream_topic, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions
    )
    worker = SessionWorker(
        app=app,
        settings=settings,
        tracker=SessionTracker(
            intent_space=load_intent_space(settings.catalog_dir),
            policy=TriggerPolicy.from_settings(settings),
            half_life_s=settings.affinity_half_life_s,
        ),
        table=_sessions_table(app, settings),
        dlq_topic=settings.dlq_topic,
        regen_topic=settings.regen_topic,
    )

    @app.agent(clickstream, concurrency=1)
    async def sessions(stream: StreamT[bytes]) -> None:
        # Manual acks: an event is acked only once the state it produced is on its way to the
        # changelog (see SessionWorker.flush), so a commit never runs ahead of durable state.
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # Stream has it, StreamT not
            await worker.handle(event)

    @app.timer(settings.flush_interval_s)
    async def flush() -> None:
        await worker.flush()

    @app.timer(settings.expiry_interval_s)
    async def expire() -> None:
        if worker.is_ready():
            n = worker.expire_idle()
            if n:
                log.info("expired idle sessions", extra={"expired": n})

    @app.timer(5.0)
    async def gauges() -> None:
        metrics.READY.set(1 if worker.is_ready() else 0)
        if worker.is_ready():
            await worker.refresh_gauges()

    @app.page(LIVE_PATH)
    class Live(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page(READY_PATH)
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready = worker.is_ready()
            return self.json({"ready": ready}, status=200 if ready else 503)

    @app.page(METRICS_PATH)
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            metrics.READY.set(1 if worker.is_ready() else 0)
            return self.bytes(generate_latest(metrics.REGISTRY), content_type=_METRICS_CONTENT_TYPE)

    return app, worker
