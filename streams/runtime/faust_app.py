"""Building a Faust app from settings: shared by the session worker and the generator."""

from __future__ import annotations

from typing import Any

import faust

from streams.runtime.kafka_config import faust_credentials
from streams.runtime.settings import Settings, StoreKind


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
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
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
    table = CodecTable(app, codec=codec, name=name, partitions=settings.topics.topic_partitions, help=help)
    return app.tables.add(table)


def faust_app(settings: Settings, *, app_id: str, stream_wait_empty: bool = True) -> faust.App:
    """At-least-once, agent concurrency 1 everywhere (DESIGN.md: Faust's exactly-once has data-loss reports)."""
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
