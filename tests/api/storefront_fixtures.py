"""Storefront updates for the API tests: built with the contract's own classes, published to a real broker."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

from aiokafka import AIOKafkaProducer

from streams.contracts.storefront import Arm, Item, ItemSource, Placement, Quality, StorefrontUpdate
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics


def storefront(
    session: str, version: int, *, theme: str = "Picked for you", products: tuple[str, ...] = ("p1", "p2", "p3")
) -> StorefrontUpdate:
    items = [Item(product_id=p, score=1.0 / (i + 1), source=ItemSource.RETRIEVAL) for i, p in enumerate(products)]
    placement = Placement(
        kind="hero", theme=theme, keywords=["running shoes"], items=items, quality=Quality(ok=True), fallback=False
    )
    now = int(time.time() * 1000)
    return StorefrontUpdate(
        session_id=session,
        user_id=None,
        version=version,
        event_ts=now,
        requested_at_ms=now,
        published_at_ms=now + version,
        trigger="intent_drift",
        arm=Arm.TEACHER,
        experiment_id="exp-1",
        placements=[placement],
        degraded=False,
    )


def publish(settings: Settings, messages: list[StorefrontUpdate | tuple[bytes, bytes]]) -> None:
    """Updates keyed by session, as the generator sends them (or raw (key, value) pairs for broken ones)."""

    async def send() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**aiokafka_options(settings))
        await producer.start()
        try:
            for m in messages:
                key, value = (m.session_id.encode(), m.to_json()) if isinstance(m, StorefrontUpdate) else m
                await producer.send_and_wait(settings.topics.storefront_topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
