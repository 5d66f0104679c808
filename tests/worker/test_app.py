"""The session worker against a real broker: state equals an offline fold, bad input is dead-lettered,
and a restarted worker restores its table from the changelog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from streams.contracts.errors import DlqReason
from streams.contracts.regen import RegenRequest
from streams.datasets.readers import ReplayRecord, read_source
from streams.devtools.replay import replay
from streams.runtime import faust_fastpath
from streams.runtime.settings import Settings, StoreKind
from streams.runtime.topics import read_topic
from streams.worker.app import create_app
from streams.worker.fold import fold
from streams.worker.intent import load_intent_space
from streams.worker.sessions import SessionTracker
from streams.worker.state import SessionState
from tests.conftest import REES46, WorkerProcess
from tests.worker.test_rocksdb_options import options_file

pytestmark = pytest.mark.kafka


def reference(records: list[ReplayRecord], settings: Settings) -> dict[bytes, dict[str, object]]:
    tracker = SessionTracker.from_settings(settings)
    result = fold(records, tracker, max_event_bytes=settings.worker.max_event_bytes)
    return {k: s.logical() for k, s in result.states.items()}


def latest_by_key(records: list[ConsumerRecord[bytes, bytes]]) -> dict[bytes, bytes]:
    """The compacted view of a changelog: last value per key, a tombstone removing the key."""
    out: dict[bytes, bytes] = {}
    for r in records:
        assert r.key is not None
        if r.value is None:
            out.pop(r.key, None)
        else:
            out[r.key] = r.value
    return out


def changelog_states(settings: Settings) -> dict[bytes, dict[str, object]]:
    topic = f"{settings.topics.app_id}-sessions-changelog"
    latest = latest_by_key(asyncio.run(read_topic(settings, topic)))
    return {k: SessionState.from_bytes(v).logical() for k, v in latest.items()}


def wait_for_changelog(settings: Settings, expected: dict[bytes, dict[str, object]], timeout_s: float = 30) -> None:
    """The changelog is flushed a moment after processing; poll until it holds what we expect."""
    deadline = time.monotonic() + timeout_s
    states: dict[bytes, dict[str, object]] = {}
    while time.monotonic() < deadline:
        states = changelog_states(settings)
        if states == expected:
            return
        time.sleep(0.5)
    missing = expected.keys() - states.keys()
    differing = [k for k in expected.keys() & states.keys() if expected[k] != states[k]]
    detail = f"{len(missing)} sessions missing, {len(differing)} differ"
    if differing:
        k = differing[0]
        detail += f"; e.g. {k!r}: worker {states[k]} != reference {expected[k]}"
    raise AssertionError(detail)


@pytest.mark.parametrize(
    ("direct_path", "overrides"),
    [
        (True, {}),
        (False, {}),
        # Flushes inside the step, under a message of one partition, reading signals of every partition (on
        # RocksDB such a read once looked in the message's partition's database only: KeyError, worker gone).
        (True, {"store": StoreKind.ROCKSDB, "flush_max_events": 50, "flush_interval_s": 2.0}),
    ],
    ids=["direct", "agent", "direct-rocksdb-flush-in-step"],
)
def test_rees46_replay_matches_offline_reference(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[[Settings], WorkerProcess],
    direct_path: bool,
    overrides: dict[str, object],
) -> None:
    """On the direct path (the default) and through the agent's stream, the same states and requests."""
    settings = settings_factory(direct_path=direct_path, **overrides)
    records = read_source(REES46).records
    worker = worker_factory(settings)
    worker.wait_ready()

    asyncio.run(replay(records, settings, progress=False))
    worker.wait_processed(len(records))

    expected = reference(records, settings)
    assert len(expected) == 5066
    wait_for_changelog(settings, expected)

    requests = [
        RegenRequest.from_json(r.value)
        for r in asyncio.run(read_topic(settings, settings.topics.regen_topic))
        if r.value
    ]
    tracker = SessionTracker.from_settings(settings, intent_space=load_intent_space(None))
    assert len(requests) == fold(records, tracker, max_event_bytes=settings.worker.max_event_bytes).requests
    last_version: dict[str, int] = {}
    for req in requests:
        assert req.version > last_version.get(req.session_id, 0), f"version went back for {req.session_id}"
        last_version[req.session_id] = req.version
    assert worker.endpoint.metric("vitrine_regen_triggers_total") == len(requests)
    assert worker.endpoint.metric("vitrine_dlq_events_total") == 0
    # States keep the versions made since the commit (re-sent if a kill loses them), and forget the rest once
    # Faust commits past them (it does after 10,000 acks): a worker that never saw a commit would keep them all.
    raw = latest_by_key(asyncio.run(read_topic(settings, f"{settings.topics.app_id}-sessions-changelog")))
    states = [SessionState.from_bytes(v) for v in raw.values()]
    kept = sum(len(s.earlier_regens) for s in states)
    assert 0 < kept < sum(s.version - 1 for s in states if s.version), "earlier versions not forgotten on commit"


@pytest.mark.parametrize(("direct_path", "fast_delivery"), [(True, True), (False, True), (True, False)])
def test_the_clickstream_takes_the_direct_path_only_with_both_settings(
    tmp_path: Path, direct_path: bool, fast_delivery: bool
) -> None:
    """The direct hand-off lives in the fast delivery's drain loop: without it the agent's stream serves."""
    settings = Settings(data_dir=tmp_path, direct_path=direct_path, fast_delivery=fast_delivery)
    app, worker = create_app(settings)
    direct = app.__dict__.get(faust_fastpath._DIRECT, {})
    if direct_path and fast_delivery:
        assert direct == {settings.topics.clickstream_topic: worker.handle_direct}
    else:
        assert direct == {}


def test_endpoints_report_liveness_readiness_and_metrics(
    settings_factory: Callable[..., Settings], worker_factory: Callable[[Settings], WorkerProcess]
) -> None:
    worker = worker_factory(settings_factory())
    worker.wait_ready()
    assert worker.endpoint.get("/livez") == (200, b'{"status":"alive"}')
    status, body = worker.endpoint.get("/readyz")
    assert (status, orjson.loads(body)) == (200, {"ready": True})
    status, body = worker.endpoint.get("/metrics")
    text = body.decode()
    assert status == 200
    for family in (
        "vitrine_events",
        "vitrine_dlq_events",
        "vitrine_regen_triggers",
        "vitrine_sessions",
        "vitrine_session_state_bytes",
        "vitrine_consumer_lag",
        "vitrine_ready",
    ):
        assert f"# TYPE {family}" in text, family
    assert worker.endpoint.metric("vitrine_ready") == 1


def _malformed_lines(max_bytes: int) -> list[tuple[bytes, DlqReason]]:
    good = {"event_id": "x1", "session_id": "bad-1", "event_type": "view", "product_id": "1", "ts": 1569888000000}
    return [
        (b'{"event_id": "x0", "session_id": "bad-0", ', DlqReason.INVALID_JSON),
        (b'["view", "1"]', DlqReason.NOT_AN_OBJECT),
        (orjson.dumps({k: v for k, v in good.items() if k != "ts"}), DlqReason.MISSING_FIELD),
        (orjson.dumps({**good, "event_type": "wishlist"}), DlqReason.UNKNOWN_EVENT_TYPE),
        (orjson.dumps({**good, "price": -3.5}), DlqReason.INVALID_FIELD),
        (orjson.dumps({**good, "event_type": "search"}), DlqReason.INCONSISTENT),
        (orjson.dumps({**good, "brand": "x" * 100, "pad": "y" * max_bytes}), DlqReason.OVERSIZED),
    ]


def test_malformed_events_reach_the_dlq_and_valid_neighbours_are_processed(
    settings_factory: Callable[..., Settings], worker_factory: Callable[[Settings], WorkerProcess], tmp_path: Path
) -> None:
    settings = settings_factory(max_event_bytes=2048)
    valid = read_source(REES46, limit=600).records
    bad = _malformed_lines(settings.worker.max_event_bytes)
    lines: list[bytes] = []
    for i, rec in enumerate(valid):
        lines.append(rec.value)
        if i % 80 == 40:
            lines.append(bad[(i // 80) % len(bad)][0])
    jsonl = tmp_path / "crafted.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    records = read_source(jsonl).records
    expected_bad = [line for line in lines if line not in {r.value for r in valid}]
    assert len(expected_bad) == len(bad)  # each crafted line, so each reason, once

    worker = worker_factory(settings)
    worker.wait_ready()
    asyncio.run(replay(records, settings, progress=False))
    asyncio.run(_send_with_wrong_key(settings, valid[0].value))
    worker.wait_processed(len(records) + 1)

    n_expected = len(expected_bad) + 1
    deadline = time.monotonic() + 60
    dlq = asyncio.run(read_topic(settings, settings.topics.dlq_topic))
    while len(dlq) < n_expected and time.monotonic() < deadline:  # processed counts before the DLQ send lands
        time.sleep(0.5)
        dlq = asyncio.run(read_topic(settings, settings.topics.dlq_topic))
    source = {
        (r.partition, r.offset): r.value for r in asyncio.run(read_topic(settings, settings.topics.clickstream_topic))
    }
    reasons = {bad_line: reason for bad_line, reason in bad}
    got = []
    for rec in dlq:
        headers = dict(rec.headers)
        reason = headers["vitrine.dlq.reason"].decode()
        origin = (int(headers["vitrine.dlq.partition"]), int(headers["vitrine.dlq.offset"]))
        assert headers["vitrine.dlq.topic"].decode() == settings.topics.clickstream_topic
        assert source[origin] == rec.value, "DLQ value must be the original bytes at the recorded offset"
        assert headers["vitrine.dlq.detail"], "a reason without detail is not actionable"
        got.append((rec.value, reason))
    expected = [(line, reasons[line].value) for line in expected_bad] + [(valid[0].value, DlqReason.KEY_MISMATCH.value)]
    assert sorted(got) == sorted(expected)
    assert worker.endpoint.metric("vitrine_dlq_events_total") == len(expected)
    assert worker.endpoint.metric("vitrine_events_total") == len(valid)
    wait_for_changelog(settings, reference(valid, settings))


async def _send_with_wrong_key(settings: Settings, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.connection.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.clickstream_topic, value, key=b"someone-else")
    finally:
        await producer.stop()


def test_restarted_worker_restores_state_from_changelog_and_continues(
    settings_factory: Callable[..., Settings], worker_factory: Callable[[Settings], WorkerProcess]
) -> None:
    settings = settings_factory()
    records = read_source(REES46).records
    half = len(records) // 2
    first = worker_factory(settings)
    first.wait_ready()
    asyncio.run(replay(records[:half], settings, progress=False))
    first.wait_processed(half)
    wait_for_changelog(settings, reference(records[:half], settings))
    assert first.stop() == 0

    second = worker_factory(settings)  # new data dir, memory store: all state must come from the changelog
    assert second.settings.worker.data_dir != first.settings.worker.data_dir
    second.wait_ready()
    asyncio.run(replay(records[half:], settings, progress=False))
    second.wait_processed(len(records) - half)

    wait_for_changelog(settings, reference(records, settings))
    assert (
        second.endpoint.metric("vitrine_events_total") + second.endpoint.metric("vitrine_duplicate_events_total")
        >= len(records) - half
    )


@pytest.mark.parametrize("store", [StoreKind.MEMORY, StoreKind.ROCKSDB])
def test_idle_sessions_expire_with_a_changelog_tombstone(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
    store: StoreKind,
) -> None:
    """Expiry walks the table in chunks (``streams.worker.scan``): on RocksDB a live iterator, in memory a copy."""
    settings = settings_factory(session_ttl_s=60.0, expiry_interval_s=0.5, store=store)
    t0 = 1569888000000
    events = [
        {"event_id": "e1", "session_id": "idle", "event_type": "view", "product_id": "1", "ts": t0},
        {"event_id": "e2", "session_id": "idle", "event_type": "view", "product_id": "2", "ts": t0 + 1000},
        {"event_id": "e3", "session_id": "active", "event_type": "view", "product_id": "3", "ts": t0 + 600_000},
        # The watermark is a median of recent event times: one event alone does not move it.
        {"event_id": "e4", "session_id": "active", "event_type": "view", "product_id": "4", "ts": t0 + 600_001},
        {"event_id": "e5", "session_id": "active", "event_type": "view", "product_id": "5", "ts": t0 + 600_002},
    ]
    log = tmp_path / "two-sessions.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    worker = worker_factory(settings)
    worker.wait_ready()
    asyncio.run(replay(read_source(log).records, settings, progress=False))
    worker.wait_processed(len(events))

    deadline = time.monotonic() + 30
    while worker.endpoint.metric("vitrine_expired_sessions_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.endpoint.metric("vitrine_expired_sessions_total") == 1
    worker.endpoint.wait_until(lambda: worker.endpoint.metric("vitrine_sessions") == 1, 15, "the gauge counts one")
    time.sleep(settings.worker.flush_interval_s * 3)
    records = asyncio.run(read_topic(settings, f"{settings.topics.app_id}-sessions-changelog"))
    assert [r.value for r in records if r.key == b"idle"][-1] is None, "expiry must leave a tombstone"
    assert set(latest_by_key(records)) == {b"active"}


def test_rocksdb_store_survives_a_restart_on_the_same_volume(
    settings_factory: Callable[..., Settings], worker_factory: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """The production store: state on disk, restart on the same data dir (a StatefulSet pod's volume)."""
    settings = settings_factory(
        store=StoreKind.ROCKSDB,
        rocksdb_write_buffer_bytes=3 * 1024**2,
        rocksdb_write_buffers=3,
        rocksdb_max_open_files=99,
    )
    records = read_source(REES46, limit=6000).records
    volume = tmp_path / "volume"
    first = worker_factory(settings, volume)
    first.wait_ready()
    asyncio.run(replay(records[:3000], settings, progress=False))
    first.wait_processed(3000)
    wait_for_changelog(settings, reference(records[:3000], settings))
    assert first.stop() == 0
    assert any(volume.rglob("*.sst")) or any(volume.rglob("CURRENT")), "RocksDB wrote nothing to the volume"
    # The worker process opened every partition of both tables with the configured memory bounds.
    databases = sorted(volume.rglob("*.db"))
    assert {db.name.split("-")[-2] for db in databases} >= {"sessions", "ranker"}, databases
    for db in databases:
        opts = options_file(db)
        assert (opts["write_buffer_size"], opts["max_write_buffer_number"], opts["max_open_files"]) == (
            str(3 * 1024**2),
            "3",
            "99",
        ), db

    second = worker_factory(settings, volume)
    second.wait_ready()
    asyncio.run(replay(records[3000:], settings, progress=False))
    second.wait_processed(3000)
    wait_for_changelog(settings, reference(records, settings))
