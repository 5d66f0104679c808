"""The broker and topics a broker-backed benchmark runs on, in one place so every benchmark sets them alike."""

from __future__ import annotations

import os
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from streams.devtools.local_kafka import LocalKafka
from streams.runtime.settings import Settings


def bench_broker(stack: ExitStack, name: str, partitions: int, **settings: Any) -> tuple[Path, Settings]:
    """A scratch directory and settings on ``KAFKA_BOOTSTRAP_SERVERS`` or a local KRaft broker, both closed
    with ``stack``; the app id and topics are unique to this run, so runs on one broker never share data."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"vitrine-{name}-")))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        bootstrap = stack.enter_context(LocalKafka(workdir / "kafka")).bootstrap
    topic = f"{name}-{uuid.uuid4().hex[:6]}"
    return workdir, Settings(
        kafka_bootstrap_servers=bootstrap,
        app_id=topic,
        clickstream_topic=topic,
        regen_topic=f"{topic}-regen",
        dlq_topic=f"{topic}-dlq",
        topic_partitions=partitions,
        **settings,
    )
