"""Building a Faust app from settings: shared by the session worker and the generator."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.streams import _current_event
from faust.types import EventT, Message

from streams.runtime import faust_fastpath, metrics
from streams.runtime.kafka_config import faust_credentials
from streams.runtime.settings import Settings, StoreKind

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AgentHealth:
    """Crashes (and failed batches) of one agent in a row; readiness fails once they reach ``limit``.

    Faust restarts a crashed agent after a few seconds, so a crash loop looks alive from outside:
    this is what lets ``/readyz`` and ``vitrine_agent_crashes_total`` say so.
    """

    agent: str
    limit: int
    in_a_row: int = 0

    def crashed(self, exc: BaseException) -> None:
        self.in_a_row += 1
        metrics.AGENT_CRASHES.labels(self.agent).inc()
        log.error("agent %s failed (%d in a row)", self.agent, self.in_a_row, exc_info=exc)

    def succeeded(self) -> None:
        self.in_a_row = 0

    @property
    def healthy(self) -> bool:
        return self.in_a_row < self.limit


class MessageEvent:
    """What Faust's stores read of the current event, its message, for a message that no stream turned into one."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Message) -> None:
        self.message = message


@contextmanager
def as_current_event(event: EventT | MessageEvent) -> Iterator[None]:
    """Make ``event`` Faust's current event for a table write outside the stream's own iteration.

    Faust's RocksDB store takes a write's partition from the current event and asserts there is one;
    after ``take_events`` the batch has none of its own (Faust has no public setter for it).
    """
    # A MessageEvent stands in for an event where the stores read one (they read only its message).
    token = _current_event.set(weakref.ref(cast(EventT, event)))
    try:
        yield
    finally:
        _current_event.reset(token)


@contextmanager
def without_current_event() -> Iterator[None]:
    """No current event, for reads of keys from any partition inside a stream or the direct path.

    Faust's RocksDB store reads a key from the current event's partition's database when there is a current
    event, and finds the key's database itself (its key index, else every database) when there is none.
    """
    token = _current_event.set(None)
    try:
        yield
    finally:
        _current_event.reset(token)


def logging_config(settings: Settings) -> dict[str, Any]:
    fmt: dict[str, Any] = (
        {"()": "streams.runtime.logs.JsonFormatter"}
        if settings.operations.log_json
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": fmt},
        "filters": {"rate_limit": {"()": "streams.runtime.logs.RateLimit"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
                "filters": ["rate_limit"],
            }
        },
        "root": {"handlers": ["stderr"], "level": settings.operations.log_level.upper()},
    }


class CodecTable(faust.Table):
    """Faust derives a table's codecs from Record types only; ours are dataclasses with their own encoding.

    Set here, before ``app.tables.add`` creates the changelog topic, so that writes and recovery
    (which decodes with the topic's codec) agree.
    """

    def __init__(self, app: faust.App, *, codec: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = codec


def codec_table(app: faust.App, settings: Settings, name: str, codec: str, help: str) -> Any:
    """A changelog-backed table; on RocksDB every partition's database gets the configured memory bounds.

    ``options`` reach ``faust.stores.rocksdb.RocksDBOptions``; the store keeps (and pops keys from) the dict it is
    given, so each table gets its own.
    """
    options = settings.worker.rocksdb_options() if settings.worker.store is StoreKind.ROCKSDB else None
    table = CodecTable(
        app, codec=codec, name=name, partitions=settings.topics.topic_partitions, help=help, options=options
    )
    return app.tables.add(table)


def faust_app(settings: Settings, *, app_id: str, stream_wait_empty: bool = True) -> faust.App:
    """At-least-once, agent concurrency 1 everywhere (DESIGN.md: Faust's exactly-once has data-loss reports)."""
    faust_fastpath.install(fast_delivery=settings.worker.fast_delivery)
    return faust.App(
        app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.connection.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        store="memory://" if settings.worker.store is StoreKind.MEMORY else "rocksdb://",
        datadir=str(settings.worker.data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=settings.topics.topic_partitions,
        topic_replication_factor=settings.topics.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        # A SIGKILLed pod is noticed after the session timeout; with a group_instance_id (static membership)
        # its successor takes the same partitions back at once, without a rebalance.
        broker_session_timeout=settings.connection.consumer_session_timeout_s,
        broker_heartbeat_interval=settings.connection.consumer_heartbeat_interval_s,
        consumer_group_instance_id=settings.connection.group_instance_id,
        # Each changelog write is one message; without linger every write is its own produce request,
        # which showed in a py-spy profile (the effect was not isolated in a clean A/B run).
        producer_linger=settings.worker.producer_linger_s,
        producer_max_batch_size=256 * 1024,
        stream_wait_empty=stream_wait_empty,
        web_enabled=True,
        web_bind=settings.operations.web_host,
        web_port=settings.operations.web_port,
        web_in_thread=False,
        logging_config=logging_config(settings),
        autodiscover=False,
    )


def quiet_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """Faust's worker without its terminal spinner.

    With the spinner (always created, whatever ``quiet`` says) Faust sets the root logger to DEBUG so that the
    spinner turns on every record: every ``log.debug`` of aiokafka and Faust then builds a record that the
    handlers drop, one per produced message among them (11% of the session worker's time in a py-spy profile).
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker
