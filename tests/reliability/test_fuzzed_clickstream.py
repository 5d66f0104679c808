"""A fuzzed clickstream on a real broker: thousands of bad messages of every kind beside valid ones.

Every bad message lands in the DLQ with its reason, no agent restarts, no session is expired by a
wrong ``ts``, every session equals the offline reference and no request version is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from streams.contracts.errors import DlqReason, InvalidEvent
from streams.contracts.events import decode_event
from streams.contracts.regen import RegenRequest
from streams.datasets.readers import read_source
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics, read_topic
from streams.worker.watermark import plausible_time
from tests.conftest import REES46, WorkerProcess
from tests.reliability.fuzz import KINDS, interleave
from tests.reliability.test_bad_input import BIG, MAX_MESSAGE, create_clickstream_for_big_messages
from tests.worker.test_app import reference, wait_for_changelog

N_VALID = 2000
N_BAD = 5000


async def produce(settings: Settings, messages: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(
        **aiokafka_options(settings), max_request_size=MAX_MESSAGE, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = [await producer.send(settings.topics.clickstream_topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.mark.kafka
def test_fuzzed_clickstream_loses_nothing_and_crashes_nothing(
    settings_factory: Callable[..., Settings], worker_factory: Callable[..., WorkerProcess]
) -> None:
    # The slice spans 2.3 h of event time: a TTL of days (the fixture's) expires nothing legitimately,
    # while a microsecond ts that moved the watermark would expire everything.
    settings = settings_factory(expiry_interval_s=0.5)
    valid = read_source(REES46, limit=N_VALID).records
    stream = interleave(valid, N_BAD, seed=10)
    big = orjson.loads(valid[0].value)
    for _ in range(2):  # beyond the producer's 1 MB request limit: the DLQ keeps a reference
        stream.insert(
            len(stream) // 2, (valid[0].key or b"", orjson.dumps({**big, "pad": "x" * BIG}), DlqReason.OVERSIZED)
        )
    expected_reasons = Counter(r.value for _, _, r in stream if r is not None)
    assert set(expected_reasons) == {r.value for r in KINDS}
    assert sum(expected_reasons.values()) >= N_BAD

    asyncio.run(create_clickstream_for_big_messages(settings))
    asyncio.run(ensure_topics(settings))
    worker = worker_factory(settings)
    worker.wait_ready()
    started = time.monotonic()
    asyncio.run(produce(settings, [(k, v) for k, v, _ in stream]))
    worker.wait_processed(len(stream))
    elapsed = time.monotonic() - started

    source = asyncio.run(read_topic(settings, settings.topics.clickstream_topic))
    dlq = asyncio.run(read_topic(settings, settings.topics.dlq_topic))
    got = Counter(dict(r.headers)["vitrine.dlq.reason"].decode() for r in dlq)
    assert got == expected_reasons
    origin = {(r.partition, r.offset): r for r in source}
    for rec in dlq:
        headers = dict(rec.headers)
        src = origin[int(headers["vitrine.dlq.partition"]), int(headers["vitrine.dlq.offset"])]
        if "vitrine.dlq.value_ref" in headers:
            assert src.value is not None and int(headers["vitrine.dlq.value_bytes"]) == len(src.value)
        else:
            assert rec.value == src.value, "the DLQ keeps the original bytes"
    assert worker.endpoint.metric("vitrine_agent_crashes_total") == 0
    assert worker.endpoint.metric("vitrine_events_total") == N_VALID

    time.sleep(2 * settings.worker.expiry_interval_s + 1)
    assert worker.endpoint.metric("vitrine_expired_sessions_total") == 0
    wait_for_changelog(settings, reference(valid, settings))
    requests = [RegenRequest.from_json(r.value) for r in asyncio.run(read_topic(settings, settings.topics.regen_topic))]
    last: dict[str, int] = {}
    for req in requests:
        assert req.version == last.get(req.session_id, 0) + 1, f"version lost or repeated for {req.session_id}"
        last[req.session_id] = req.version
    print(f"fuzz: {len(stream)} messages ({N_VALID} valid) in {elapsed:.1f}s; DLQ {dict(sorted(got.items()))}")


def _json(data: object) -> bytes:
    """The standard library writes what orjson refuses (integers beyond 64 bits, NaN), as a broken producer might."""
    return json.dumps(data).encode()


@hsettings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
            max_leaves=12,
        ).map(_json),
        st.fixed_dictionaries(
            {
                "event_id": st.text(max_size=3),
                "session_id": st.just("s"),
                "event_type": st.sampled_from(["view", "search", "cart", "x"]),
                "product_id": st.none() | st.text(max_size=3) | st.integers(),
                "price": st.none() | st.floats() | st.text(max_size=4) | st.integers(),
                "ts": st.integers(min_value=-(2**70), max_value=2**70) | st.booleans() | st.floats(),
            }
        ).map(_json),
    )
)
def test_the_decoder_only_ever_raises_invalid_event(raw: bytes | None) -> None:
    """Whatever arrives, the agent gets an event or a reason: never another exception (an agent crash)."""
    window = plausible_time(Settings())
    try:
        event = decode_event(raw, max_bytes=8192, key=b"s", window=window, reference_ms=1_764_800_000_000)
    except InvalidEvent as exc:
        assert exc.reason in DlqReason
    else:
        assert type(event.ts) is int and 0 <= event.ts <= 1_764_800_000_000 + 3_600_000
