"""The experiment readout reading its inputs from the topics themselves (a real broker), not from files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from streams.contracts.events import ClickEvent
from streams.contracts.storefront import Arm
from streams.experiments.readout import readout
from streams.experiments.sources import load_inputs
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from tests.api.storefront_fixtures import publish, storefront

pytestmark = pytest.mark.kafka


def send_events(settings: Settings, events: list[ClickEvent | bytes]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(**aiokafka_options(settings))
        await producer.start()
        try:
            for e in events:
                value, key = (e.to_json(), e.session_id.encode()) if isinstance(e, ClickEvent) else (e, b"x")
                await producer.send_and_wait(settings.topics.clickstream_topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_the_readout_reads_exposures_and_behaviour_from_the_topics(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    pages = [storefront("a", 1, products=("p1", "p2")), storefront("a", 2, products=("p3",)), storefront("b", 1)]
    publish(settings, [*pages, (b"c", b"{broken")])
    after = max(p.event_ts for p in pages) + 1
    send_events(
        settings,
        [
            ClickEvent(event_id="1", session_id="a", event_type="cart", product_id="p3", ts=after),
            ClickEvent(event_id="2", session_id="a", event_type="purchase", product_id="p3", ts=after + 1),
            ClickEvent(event_id="3", session_id="b", event_type="cart", product_id="zz", ts=after),
            b"not an event",
        ],
    )
    inputs = load_inputs(settings, exposures=None, events=None)
    assert len(inputs.exposures) == 3 and len(inputs.events) == 3
    assert inputs.skipped == {"unreadable storefront update": 1, "invalid event: invalid_json": 1}
    result = readout(inputs.exposures, inputs.events, experiment_id="exp-1", resamples=50).arm(Arm.TEACHER)
    assert (result.sessions, result.page_views, result.cart_adds, result.shown_cart_adds) == (2, 3, 2, 1)
    assert result.purchases == 1
