"""Storefront updates for the API tests: built with the contract's own classes, published to a real broker."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

from aiokafka import AIOKafkaProducer

from streams.contracts.storefront import StorefrontUpdate
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from tests import factories


def storefront(
    session: str, version: int, *, theme: str = "Picked for you", products: tuple[str, ...] = ("p1", "p2", "p3")
) -> StorefrontUpdate:
    now = int(time.time() * 1000)
    return factories.storefront(
        [factories.placement(theme=theme, keywords=["running shoes"], items=factories.items(products, ranked=True))],
        session_id=session,
        version=version,
        event_ts=now,
        requested_at_ms=now,
        published_at_ms=now + version,
        trigger="intent_drift",
        experiment_id="exp-1",
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
