"""The generator's Faust app: the request agent, catalog updates, merchandising rules, the versions table, endpoints.

Delivery is at-least-once: a batch's events are acked only after its updates are handed to the
producer (a request that keeps failing is dead-lettered with the reason, never dropped), and the
highest version published per session is kept in a changelog-backed table (co-partitioned with the
request topic), so a redelivered request is recognised and dropped; an
update published twice carries the same version, which consumers ignore the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, EventT, StreamT
from mode import BaseSignalT

from streams.contracts.catalog_update import decode_catalog_update
from streams.contracts.errors import DlqReason, InvalidEvent
from streams.contracts.merch_rule import decode_merch_rule
from streams.contracts.regen import RegenRequest
from streams.contracts.storefront import StorefrontUpdate
from streams.generator.backlog import Backlog
from streams.generator.merch import MerchBook
from streams.generator.pipeline import StorefrontGenerator, coalesce
from streams.generator.setup import GeneratorParts, load_generator_parts
from streams.runtime import metrics
from streams.runtime.dlq import DeadLetters, Rejected
from streams.runtime.faust_app import AgentHealth, as_current_event, codec_table, faust_app, quiet_worker
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.process import prepare_process
from streams.runtime.settings import Settings
from streams.runtime.web import add_endpoints

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CompactedFollower:
    """Applies a compacted topic (catalog updates, merchandising rules), from its start, record by record.

    Every generator reads every partition (no consumer group): each needs the whole state the topic holds.
    ``caught_up`` turns true once every partition was read to where it ended at start (readiness waits for it).
    """

    settings: Settings
    topic: str
    apply: Callable[[Rejected], Awaitable[None]]
    caught_up: bool = False

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(**aiokafka_options(self.settings), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await _partitions(consumer, self.topic)
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        headers = tuple(record.headers or ())
                        rejected = Rejected(tp.topic, tp.partition, record.offset, record.key, record.value, headers)
                        await self.apply(rejected)
                if not self.caught_up:
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    self.caught_up = all(positions[tp] >= ends[tp] for tp in tps)
        finally:
            await consumer.stop()


async def apply_catalog_update(parts: GeneratorParts, dead_letters: DeadLetters, record: Rejected) -> None:
    """A price/stock change to Qdrant and the retriever; an invalid one to the catalog DLQ with its reason."""
    try:
        update = decode_catalog_update(record.value)
    except InvalidEvent as exc:
        await dead_letters.send(record, exc.reason, exc.detail)
        return
    await asyncio.to_thread(parts.apply_catalog_update, update)
    metrics.CATALOG_UPDATES.inc()


async def apply_merch_rule(book: MerchBook, dead_letters: DeadLetters, record: Rejected) -> None:
    """A rule set, changed or deleted (tombstone); an invalid one to the merch DLQ with its reason (the rule it
    meant to change stays as it was)."""
    try:
        rule_id, rule = decode_merch_rule(record.key, record.value)
    except InvalidEvent as exc:
        await dead_letters.send(record, exc.reason, exc.detail)
        return
    book.apply(rule_id, rule)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic} has no partitions")


@dataclass(slots=True)
class RequestHandler:
    """One micro-batch of requests: each ends published, superseded, stale or dead-lettered, then acked.

    ``take_events`` acks a batch's events once the loop body returns (or raises), so nothing may
    escape it: a failing batch is tried again ``generator_max_attempts`` times, then one request at a
    time, and a request that still fails is dead-lettered with the reason, never acked silently.
    """

    app: faust.App
    settings: Settings
    generator: StorefrontGenerator
    versions: Any
    dead_letters: DeadLetters
    health: AgentHealth
    backlog: Backlog
    # Versions handed to the producer but not yet delivered: process memory only, so a crash forgets them.
    in_flight: dict[bytes, int] = field(default_factory=dict)
    background: set[asyncio.Future[Any]] = field(default_factory=set)

    async def handle(self, events: list[EventT]) -> None:
        requests: list[RegenRequest] = []
        event_of: dict[tuple[str, int], EventT] = {}
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for event in events:
            first.setdefault(event.message.partition, event.message.offset)
            last[event.message.partition] = event.message.offset
            try:
                request = _checked(RegenRequest.from_json(event.value))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                metrics.INVALID_REQUESTS.inc()
                await self.dead_letters.send(
                    _rejected(event), DlqReason.INVALID_REQUEST, f"{type(exc).__name__}: {exc}"
                )
                continue
            requests.append(request)
            event_of[request.session_id, request.version] = event
        metrics.BATCH_SIZE.observe(len(requests))
        await self.backlog.read(first)
        fresh = coalesce(
            requests,
            self._published,
            lambda r: self.backlog.newest(r.session_id, event_of[r.session_id, r.version].message.partition),
        )
        self.backlog.passed(last)
        if not fresh:
            return
        error: Exception | None = None
        for attempt in range(self.settings.generator.generator_max_attempts):
            try:
                await self._serve(fresh, event_of)
            except Exception as exc:
                error = exc
                log.warning("batch failed (try %d)", attempt + 1, exc_info=exc)
                await asyncio.sleep(self.settings.generator.generator_retry_backoff_s * 2**attempt)
            else:
                self.health.succeeded()
                return
        failed = 0
        for request in fresh:  # one at a time: one poison request must not take its batch with it
            try:
                await self._serve([request], event_of)
            except Exception as exc:  # noqa: BLE001  # dead-lettered with its reason, below
                failed += 1
                detail = f"{type(exc).__name__}: {exc}"
                rejected = _rejected(event_of[request.session_id, request.version])
                await self.dead_letters.send(rejected, DlqReason.GENERATION_FAILED, detail)
        if failed == len(fresh) and error is not None:
            self.health.crashed(error)
        else:
            self.health.succeeded()

    def _published(self, session_id: str) -> int:
        key = session_id.encode()
        durable: int = self.versions.data.get(key, 0)
        return max(durable, self.in_flight.get(key, 0))

    async def _serve(self, requests: list[RegenRequest], event_of: dict[tuple[str, int], EventT]) -> None:
        pending = [r for r in requests if r.version > self._published(r.session_id)]  # a retry skips what went out
        if not pending:
            return
        updates = await asyncio.to_thread(self.generator.generate, pending)
        for update in updates:
            key = update.session_id.encode()
            self.in_flight[key] = max(self.in_flight.get(key, 0), update.version)
            delivery = asyncio.ensure_future(
                await self.app.producer.send(
                    self.settings.topics.storefront_topic, key, update.to_json(), None, None, None
                )
            )
            delivery.add_done_callback(partial(self._delivered, update, event_of[update.session_id, update.version]))
            if update.latency_ms.request_to_publish:
                metrics.REQUEST_TO_PUBLISH.observe(update.latency_ms.request_to_publish / 1000)

    def _delivered(self, update: StorefrontUpdate, event: EventT, delivery: asyncio.Future[Any]) -> None:
        """Record a version only once its page is on the broker.

        Pages and versions go to different partitions, so to different produce requests: a version that
        reached its changelog before its page would make a successor drop the request as already served
        (a SIGKILLed generator lost pages that way). Awaiting delivery inside the batch instead stalled
        Faust's ``take_events`` now and then; a callback keeps the agent free.
        """
        key = update.session_id.encode()
        if self.in_flight.get(key) == update.version:
            del self.in_flight[key]
        if delivery.cancelled() or delivery.exception() is not None:
            error = "cancelled" if delivery.cancelled() else repr(delivery.exception())
            log.error("page not delivered; its request was acked", extra={"session": update.session_id, "error": error})
            self.health.crashed(RuntimeError(error))
            return
        with as_current_event(event):  # the request's event names the partition (RocksDB needs one)
            if self.versions.data.get(key, 0) >= update.version:
                return
            self.versions.data[key] = update.version
        changelog = self.versions.changelog_topic.get_topic_name()
        value = str(update.version).encode()
        sent = asyncio.ensure_future(self.app.producer.send(changelog, key, value, event.message.partition, None, None))
        self.background.add(sent)
        sent.add_done_callback(self.background.discard)


def _checked(request: RegenRequest) -> RegenRequest:
    """What coalescing and the versions table rely on; the rest is the page builder's to judge."""
    if not isinstance(request.session_id, str) or not request.session_id:
        raise ValueError(f"session_id {request.session_id!r} is not a non-empty string")
    if type(request.version) is not int or request.version < 1:
        raise ValueError(f"version {request.version!r} is not a positive integer")
    return request


def _rejected(event: EventT) -> Rejected:
    msg = event.message
    return Rejected(msg.topic, msg.partition, msg.offset, msg.key, event.value, msg.headers or ())


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
    merch = MerchBook()
    generator = StorefrontGenerator(
        assembler=parts.assembler,
        planner=parts.planner,
        control_share=settings.generator.experiment_control_share,
        experiment_id=settings.generator.experiment_id,
        merch=merch,
    )
    topics = settings.topics
    catalog_dlq = DeadLetters(app.producer, topics.catalog_dlq_topic, topics.dlq_max_value_bytes)
    catalog_apply = partial(apply_catalog_update, parts, catalog_dlq)
    catalog = CompactedFollower(settings, topics.catalog_updates_topic, catalog_apply)
    merch_dlq = DeadLetters(app.producer, topics.merch_dlq_topic, topics.dlq_max_value_bytes)
    rules = CompactedFollower(settings, topics.merch_rules_topic, partial(apply_merch_rule, merch, merch_dlq))
    handler = RequestHandler(
        app=app,
        settings=settings,
        generator=generator,
        versions=versions,
        dead_letters=DeadLetters(app.producer, settings.topics.regen_dlq_topic, settings.topics.dlq_max_value_bytes),
        health=AgentHealth("generate", settings.operations.agent_crash_limit),
        backlog=Backlog(settings),
    )

    @app.on_partitions_assigned.connect
    def read_backlog_again(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        """Requests of the (re)assigned partitions may be behind pages a killed owner published."""
        assigned: set[TP] = args[0]
        handler.backlog.assigned({tp.partition for tp in assigned if tp.topic == settings.topics.regen_topic})

    @app.agent(requests_topic, concurrency=1)
    async def generate(stream: StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]  # Stream has it, StreamT not
            settings.generator.generator_batch_max, within=settings.generator.generator_batch_wait_s
        )
        try:
            async for events in batches:
                await handler.handle(events)
        except Exception as exc:  # only a failing dead-letter send gets here
            handler.health.crashed(exc)
            raise

    @app.task
    async def follow_catalog() -> None:
        if parts.catalog is None:
            return  # control arm only: no product facts to keep current
        with contextlib.suppress(asyncio.CancelledError):
            await catalog.run()

    @app.task
    async def follow_merch_rules() -> None:
        if parts.catalog is None:
            return  # rules target categories and brands: without product facts nothing matches them
        with contextlib.suppress(asyncio.CancelledError):
            await rules.run()

    def is_ready() -> bool:
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its ABC
        return (
            bool(recovery.completed.is_set())
            and not app.rebalancing
            and (parts.catalog is None or (catalog.caught_up and rules.caught_up))
            and handler.health.healthy
        )

    add_endpoints(app, is_ready)
    return app, generator


def run_generator(settings: Settings) -> None:
    """Prepare the process, then run the Faust worker until it is stopped."""
    prepare_process(settings)
    app, _ = create_generator_app(settings)
    quiet_worker(app, settings.operations.log_level).execute_from_commandline()
