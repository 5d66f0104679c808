"""Session workers under faults on a real broker: SIGKILL mid-replay (both stores, same and fresh volume,
with recovery time) and a rebalance 1 -> 2 -> 1. Every session must equal the offline reference and
every request version must be sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.datasets.readers import ReplayRecord, read_source
from streams.devtools.local_kafka import free_port
from streams.devtools.replay import replay
from streams.runtime.settings import Settings, StoreKind
from tests.conftest import REES46, WorkerProcess
from tests.reliability.checks import Figures, assert_no_request_version_lost, assert_sessions_equal, wait_for
from tests.worker.test_app import reference

pytestmark = pytest.mark.kafka

RECOVERY_LIMIT_S = 15.0


def replay_in_background(records: list[ReplayRecord], settings: Settings) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(replay(records, settings, progress=False)))
    thread.start()
    return thread


@pytest.mark.parametrize("store", [StoreKind.ROCKSDB, StoreKind.MEMORY])
def test_sigkill_mid_replay_recovers_within_15s_and_loses_nothing(
    store: StoreKind,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    # Static membership, as the StatefulSet sets it: the restarted pod takes its partitions back at once.
    settings = settings_factory(store=store, group_instance_id=f"worker-{uuid.uuid4().hex[:6]}")
    records = read_source(REES46, limit=3000).records
    volume = tmp_path / "volume"
    first = worker_factory(settings, volume)
    first.wait_ready()
    sender = replay_in_background(records, settings)
    wait_for(lambda: first.endpoint.processed() >= 1000, 120, "1,000 events in")
    first.proc.kill()
    killed = time.monotonic()
    first.proc.wait()

    # The same pod again: same volume, same web address (Faust's assignment carries it; a StatefulSet
    # pod keeps its hostname and port), same instance id.
    second = WorkerProcess(first.settings, tmp_path / "worker-restarted.log").start()
    try:
        wait_for(lambda: _processed(second) > 0, 60, "processing again")
        recovery_s = time.monotonic() - killed
        sender.join()
        expected = reference(records, settings)
        assert_sessions_equal(settings, expected, workers=[first, second])
        requests, copies = assert_no_request_version_lost(settings, expected)
        assert second.endpoint.metric("vitrine_agent_crashes_total") == 0
    finally:
        assert second.stop() == 0

    # A fresh volume on another address: a new member (a static id is bound to its address).
    third = worker_factory(settings.replace(group_instance_id=None))
    third.wait_ready()
    wait_for(lambda: third.endpoint.metric("vitrine_sessions") == len(expected), 30, "restored")
    print(Figures(len(records), len(expected), requests, copies, recovery_s).line(f"sigkill-mid-replay-{store}"))
    assert recovery_s <= RECOVERY_LIMIT_S, f"processing again after {recovery_s:.1f}s"


def test_sigkill_with_several_versions_in_the_producer_buffer_loses_none(
    settings_factory: Callable[..., Settings], worker_factory: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """RocksDB keeps the state of a session's last event while the requests of its versions since the commit sit
    in the producer's buffer: a kill takes several of them at once (seen once in CI, rarely: a session got [2] of
    [1, 2]). A long linger keeps requests buffered until Faust's commit flushes them, and no cooldown makes
    sessions produce many versions between commits: every kill then loses several versions of some session."""
    settings = settings_factory(
        store=StoreKind.ROCKSDB,
        group_instance_id=f"worker-{uuid.uuid4().hex[:6]}",
        producer_linger_s=30.0,
        trigger_cooldown_s=0.0,
        trigger_min_events=1,
    )
    records = read_source(REES46, limit=3000).records
    first = worker_factory(settings, tmp_path / "volume")
    first.wait_ready()
    sender = replay_in_background(records, settings)
    wait_for(lambda: first.endpoint.processed() >= 1500, 120, "1,500 events in")
    first.proc.kill()
    first.proc.wait()
    sender.join()

    second = WorkerProcess(first.settings, tmp_path / "worker-restarted.log").start()
    try:
        expected = reference(records, settings)
        assert_sessions_equal(settings, expected, workers=[first, second])
        requests, copies = assert_no_request_version_lost(settings, expected)
        resent = second.endpoint.metric("vitrine_regen_requests_resent_total")
    finally:
        assert second.stop() == 0
    print(Figures(len(records), len(expected), requests, copies).line(f"sigkill-buffered-versions resent={resent}"))
    assert resent > 1, "the kill lost no buffered request: the test no longer makes the case it is about"


def _processed(worker: WorkerProcess) -> float:
    try:
        return worker.endpoint.processed()
    except OSError:
        return 0.0  # not listening yet


@pytest.mark.parametrize("store", [StoreKind.ROCKSDB, StoreKind.MEMORY])
def test_rebalance_one_two_one_loses_nothing(
    store: StoreKind, settings_factory: Callable[..., Settings], worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings = settings_factory(store=store)
    records = read_source(REES46, limit=3000).records
    a = worker_factory(settings)
    a.wait_ready()
    asyncio.run(replay(records[:1000], settings, progress=False))
    a.wait_processed(1000)

    b = worker_factory(settings)  # 1 -> 2: partitions move to b with their changelog
    b.wait_ready()
    asyncio.run(replay(records[1000:2000], settings, progress=False))
    assert_sessions_equal(settings, reference(records[:2000], settings), workers=[a, b])
    assert b.endpoint.metric("vitrine_events_total") > 0, "b never got a partition"
    # a reports lag only for what it still owns (it once kept exporting the partitions it gave away).
    wait_for(lambda: 0 < _lag_partitions(a) < settings.topics.topic_partitions, 30, "dropping lag of moved partitions")

    assert b.stop() == 0  # 2 -> 1: a takes everything back
    asyncio.run(replay(records[2000:], settings, progress=False))
    expected = reference(records, settings)
    assert_sessions_equal(settings, expected, workers=[a, b])
    requests, copies = assert_no_request_version_lost(settings, expected)
    assert a.endpoint.metric("vitrine_agent_crashes_total") == 0
    wait_for(lambda: _lag_partitions(a) == settings.topics.topic_partitions, 30, "exporting lag of every partition")
    print(Figures(len(records), len(expected), requests, copies).line(f"rebalance-1-2-1-{store.value}"))


def _lag_partitions(worker: WorkerProcess) -> int:
    _, body = worker.endpoint.get("/metrics")
    return sum(1 for line in body.decode().splitlines() if line.startswith("vitrine_consumer_lag{"))


# A worker whose step raises at one event: any exception the step lets out (bad input never does: it is
# dead-lettered) is a bug, and on the direct path it stops the process rather than skip the event.
_FAILING_WORKER = """
from streams.runtime.settings import Settings
from streams.worker import sessions
from streams.worker.app import run_worker

apply = sessions.SessionTracker.apply

def failing(self, state, event, *, partition, offset, **kwargs):
    if (partition, offset) == ({partition}, {offset}):
        raise RuntimeError("planted step failure")
    return apply(self, state, event, partition=partition, offset=offset, **kwargs)

sessions.SessionTracker.apply = failing
run_worker(Settings())
"""


def test_a_failing_step_stops_the_worker_before_it_commits_past_the_event(
    settings_factory: Callable[..., Settings], worker_factory: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """The step raises at partition 0, offset 300: the process exits non-zero with nothing committed past that
    event, and a restarted worker ends with every session equal to the reference and no request version lost."""
    settings = settings_factory(web_port=free_port(), data_dir=tmp_path / "failing")
    records = read_source(REES46, limit=3000).records
    asyncio.run(replay(records, settings, progress=False))
    log_path = tmp_path / "failing.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _FAILING_WORKER.format(partition=0, offset=300)],
            env={**os.environ, **settings.to_env()},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        code = proc.wait(120)
    finally:
        proc.kill()
    output = log_path.read_text()
    assert code != 0, output[-3000:]
    assert "planted step failure" in output
    committed = asyncio.run(_committed(settings))
    assert committed.get(0, 0) <= 300, committed

    restarted = worker_factory(settings)
    restarted.wait_ready()
    expected = reference(records, settings)
    assert_sessions_equal(settings, expected, workers=[restarted])
    assert_no_request_version_lost(settings, expected)
    assert restarted.endpoint.metric("vitrine_agent_crashes_total") == 0


async def _committed(settings: Settings) -> dict[int, int]:
    """The worker group's committed offsets on the clickstream, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.connection.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.topics.app_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.topics.clickstream_topic}
