"""Topic names and creation: the replay tool and the k8s init Job create topics before producers run."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Input and request topics share the partition count: the sessions table is co-partitioned."""
    n, rf = settings.topics.topic_partitions, settings.topics.topic_replication_factor
    week = str(7 * 24 * 3600 * 1000)
    return [
        NewTopic(settings.topics.clickstream_topic, n, rf),
        NewTopic(settings.topics.regen_topic, n, rf, topic_configs={"cleanup.policy": "delete"}),
        *(
            NewTopic(name, 1, rf, topic_configs={"retention.ms": str(14 * 24 * 3600 * 1000)})
            for name in (
                settings.topics.dlq_topic,
                settings.topics.catalog_dlq_topic,
                settings.topics.regen_dlq_topic,
                settings.topics.merch_dlq_topic,
            )
        ),
        # The latest page per session is what a consumer needs; older versions may be compacted away.
        NewTopic(
            settings.topics.storefront_topic,
            n,
            rf,
            topic_configs={"cleanup.policy": "compact,delete", "retention.ms": week},
        ),
        # Compacted: the topic is the current price/stock override of every product (generators read it from the start).
        NewTopic(settings.topics.catalog_updates_topic, n, rf, topic_configs={"cleanup.policy": "compact"}),
        # Compacted: the topic is the current rule set (a tombstone deletes a rule); a few rules, read whole by all.
        NewTopic(settings.topics.merch_rules_topic, 1, rf, topic_configs={"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently")
        return [t.name for t in missing]
    finally:
        await admin.close()


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topic``, by partition and offset, read without joining a consumer group."""
    return await read_partitions(settings, topic)


async def read_partitions(
    settings: Settings, topic: str, starts: dict[int, int] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic`` from ``starts`` (partition -> offset; none: every partition from its beginning)
    to where each partition ends now, by partition and offset, read without joining a consumer group. A start
    below what retention kept reads from the earliest record kept."""
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        chosen = sorted(partitions or ()) if starts is None else sorted(set(starts) & set(partitions or ()))
        tps = [TopicPartition(topic, p) for p in chosen]
        if not tps:
            return []
        consumer.assign(tps)
        if starts is None:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, starts[tp.partition])
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > (0 if starts is None else starts[tp.partition])}
        out: list[ConsumerRecord[bytes, bytes]] = []
        while remaining:
            for tp, msgs in (await consumer.getmany(*remaining, timeout_ms=2000)).items():
                out += [m for m in msgs if m.offset < ends[tp]]
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()
