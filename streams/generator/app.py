"""The generator's Faust app: the request agent, catalog updates, the versions table, and endpoints.

Delivery is at-least-once: a batch's events are acked only after its updates are handed to the
producer, and the highest version published per session is kept in a changelog-backed table
(co-partitioned with the request topic), so a redelivered request is recognised and dropped; an
update published twice carries the same version, which consumers ignore the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import StreamT

from streams.contracts.catalog_update import decode_catalog_update
from streams.contracts.errors import InvalidEvent
from streams.contracts.regen import RegenRequest
from streams.generator.pipeline import StorefrontGenerator, coalesce
from streams.generator.setup import GeneratorParts, load_generator_parts
from streams.runtime import metrics
from streams.runtime.dlq import dlq_headers
from streams.runtime.faust_app import codec_table, faust_app
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.process import prepare_process
from streams.runtime.settings import Settings
from streams.runtime.web import add_endpoints

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CatalogFollower:
    """Applies the compacted ``catalog-updates`` topic, from its start, to Qdrant and the retriever.

    Every generator reads every partition (no consumer group): each needs the whole catalog state.
    """

    settings: Settings
    parts: GeneratorParts
    app: faust.App
    caught_up: bool = False

    async def run(self) -> None:
        topic = self.settings.topics.catalog_updates_topic
        consumer = AIOKafkaConsumer(**aiokafka_options(self.settings), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await _partitions(consumer, topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        await self._apply(record.value, tp.topic, tp.partition, record.offset, record.key)
                if not self.caught_up:
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    self.caught_up = all(positions[tp] >= ends[tp] for tp in tps)
        finally:
            await consumer.stop()

    async def _apply(self, raw: bytes | None, topic: str, partition: int, offset: int, key: bytes | None) -> None:
        try:
            update = decode_catalog_update(raw)
        except InvalidEvent as exc:
            metrics.DLQ.labels(exc.reason.value).inc()
            headers = dlq_headers(exc.reason, exc.detail, topic=topic, partition=partition, offset=offset)
            await self.app.producer.send(self.settings.topics.dlq_topic, key, raw or b"", None, None, headers)
            return
        await asyncio.to_thread(self.parts.apply_catalog_update, update)
        metrics.CATALOG_UPDATES.inc()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic} has no partitions")


def create_generator_app(settings: Settings) -> tuple[faust.App, StorefrontGenerator]:
    app = faust_app(settings, app_id=f"{settings.topics.app_id}-generator")
    requests_topic = app.topic(
        settings.topics.regen_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topics.topic_partitions,
    )
    versions = codec_table(
        app, settings, "storefront-versions", "json", "Highest storefront version published per session."
    )
    parts = load_generator_parts(settings)
    generator = StorefrontGenerator(
        assembler=parts.assembler,
        planner=parts.planner,
        control_share=settings.generator.experiment_control_share,
        experiment_id=settings.generator.experiment_id,
    )
    follower = CatalogFollower(settings, parts, app)
    changelog = versions.changelog_topic.get_topic_name()

    @app.agent(requests_topic, concurrency=1)
    async def generate(stream: StreamT[bytes]) -> None:
        batch_max, batch_wait_s = settings.generator.generator_batch_max, settings.generator.generator_batch_wait_s
        async for events in stream.take_events(batch_max, within=batch_wait_s):  # type: ignore[attr-defined]
            partition_of: dict[str, int] = {}
            requests = []
            for event in events:
                try:
                    request = RegenRequest.from_json(event.value)
                except (ValueError, TypeError, KeyError) as exc:
                    log.warning("unreadable regeneration request skipped", extra={"error": str(exc)})
                    metrics.INVALID_REQUESTS.inc()
                    continue
                requests.append(request)
                partition_of[request.session_id] = event.message.partition
            metrics.BATCH_SIZE.observe(len(requests))
            fresh = coalesce(requests, lambda s: versions.data.get(s.encode(), 0))
            if not fresh:
                continue
            updates = await asyncio.to_thread(generator.generate, fresh)
            for update in updates:
                key = update.session_id.encode()
                await app.producer.send(settings.topics.storefront_topic, key, update.to_json(), None, None, None)
                versions.data[key] = update.version
                # Written directly with the request's partition: after take_events the "current event"
                # Faust would use for table writes is the batch's last, not this session's.
                value = str(update.version).encode()
                await app.producer.send(changelog, key, value, partition_of[update.session_id], None, None)
                if update.latency_ms.request_to_publish:
                    metrics.REQUEST_TO_PUBLISH.observe(update.latency_ms.request_to_publish / 1000)

    @app.task
    async def follow_catalog() -> None:
        if parts.catalog is None:
            return  # control arm only: no product facts to keep current
        with contextlib.suppress(asyncio.CancelledError):
            await follower.run()

    def is_ready() -> bool:
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its ABC
        return (
            bool(recovery.completed.is_set()) and not app.rebalancing and (parts.catalog is None or follower.caught_up)
        )

    add_endpoints(app, is_ready)
    return app, generator


def run_generator(settings: Settings) -> None:
    """Prepare the process, then run the Faust worker until it is stopped."""
    prepare_process(settings)
    app, _ = create_generator_app(settings)
    faust.Worker(app, loglevel=settings.operations.log_level, quiet=True).execute_from_commandline()
