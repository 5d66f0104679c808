"""Bad messages on a real broker: each is dead-lettered with its reason, none crashes the agent or loses state."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.contracts.errors import DlqReason
from streams.datasets.readers import ReplayRecord, read_source
from streams.devtools.replay import replay
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics, read_topic
from tests.conftest import REES46, WorkerProcess
from tests.worker.test_app import reference, wait_for_changelog

pytestmark = pytest.mark.kafka

BIG = 2_000_000  # over the producer's 1 MB request limit, so the original cannot go to the DLQ as it is
MAX_MESSAGE = 4 * 1024 * 1024


async def create_clickstream_for_big_messages(settings: Settings) -> None:
    """A producer outside our control may write up to the topic's limit, which may exceed ours."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        config = {"max.message.bytes": str(MAX_MESSAGE)}
        topic = NewTopic(settings.topics.clickstream_topic, settings.topics.topic_partitions, 1, topic_configs=config)
        await admin.create_topics([topic])
    finally:
        await admin.close()


async def send_raw(settings: Settings, messages: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(**aiokafka_options(settings), max_request_size=MAX_MESSAGE)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.topics.clickstream_topic, value, key=key)
    finally:
        await producer.stop()


def bad_messages(template: ReplayRecord) -> list[tuple[bytes, bytes | None, DlqReason]]:
    """One of each failure of issue 10, keyed like a real session so only the value is wrong."""
    good = orjson.loads(template.value)
    key = template.key or b""

    def with_(**changes: object) -> bytes:
        return orjson.dumps({**good, **changes})

    return [
        (key, None, DlqReason.NULL_VALUE),  # a tombstone
        (key, with_(pad="x" * BIG), DlqReason.OVERSIZED),
        (key, with_(ts=good["ts"] * 1000), DlqReason.IMPLAUSIBLE_TIME),  # microseconds: moved the watermark
        (key, with_(price="12.5"), DlqReason.INVALID_FIELD),  # was coerced to 12.5
        (key, with_(ts=True), DlqReason.INVALID_FIELD),  # was coerced to 1 ms
        (key, with_(ts=float(good["ts"])), DlqReason.INVALID_FIELD),
    ]


def test_bad_messages_go_to_the_dlq_without_crashing_or_expiring_anything(
    settings_factory: Callable[..., Settings], worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings = settings_factory(expiry_interval_s=0.5, session_ttl_s=3600.0)
    valid = read_source(REES46, limit=400).records
    bad = bad_messages(valid[0])
    asyncio.run(create_clickstream_for_big_messages(settings))
    asyncio.run(ensure_topics(settings))
    worker = worker_factory(settings)
    worker.wait_ready()

    asyncio.run(replay(valid[:200], settings, progress=False))
    asyncio.run(send_raw(settings, [(k, v) for k, v, _ in bad]))
    asyncio.run(replay(valid[200:], settings, progress=False))
    worker.wait_processed(len(valid) + len(bad))

    dlq = asyncio.run(read_topic(settings, settings.topics.dlq_topic))
    got = Counter(dict(r.headers)["vitrine.dlq.reason"].decode() for r in dlq)
    assert got == Counter(reason.value for _, _, reason in bad)
    by_reason = {dict(r.headers)["vitrine.dlq.reason"]: r for r in dlq}
    assert by_reason[b"null_value"].value is None
    big = dict(by_reason[b"oversized"].headers)
    assert by_reason[b"oversized"].value == b"", "the original does not fit one produce request"
    assert int(big["vitrine.dlq.value_bytes"]) > BIG
    assert big["vitrine.dlq.value_ref"].decode().startswith(f"{settings.topics.clickstream_topic}/")
    assert worker.endpoint.metric("vitrine_agent_crashes_total") == 0

    time.sleep(2 * settings.worker.expiry_interval_s + 1)  # expiry ticks after the microsecond event
    assert worker.endpoint.metric("vitrine_expired_sessions_total") == 0
    wait_for_changelog(settings, reference(valid, settings))
    assert worker.proc.poll() is None
    print(f"RELIABILITY bad-input: {len(valid)} valid events, DLQ {dict(sorted(got.items()))}, 0 crashes, 0 expired")
