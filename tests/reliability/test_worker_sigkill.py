"""A worker SIGKILLed before its changelog flush loses nothing, on either store and whatever volume it restarts on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.datasets.readers import read_source
from streams.devtools.replay import replay
from streams.runtime.settings import Settings, StoreKind
from tests.conftest import REES46, WorkerProcess
from tests.worker.test_app import reference, wait_for_changelog

pytestmark = pytest.mark.kafka

# No flush before the kill: the first worker's states exist only in its store (its volume, for RocksDB).
NEVER = {"flush_interval_s": 3600.0, "flush_max_events": 1_000_000}


@pytest.mark.parametrize("store", [StoreKind.ROCKSDB, StoreKind.MEMORY])
def test_sigkill_before_the_first_flush_loses_no_session(
    store: StoreKind,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = settings_factory(store=store)
    records = read_source(REES46, limit=300).records
    volume = tmp_path / "volume"
    first = worker_factory(settings.replace(**NEVER), volume)
    first.wait_ready()
    asyncio.run(replay(records, settings, progress=False))
    first.wait_processed(len(records))
    first.proc.kill()
    first.proc.wait()

    expected = reference(records, settings)
    second = worker_factory(settings, volume)  # same volume: RocksDB holds states the changelog never got
    second.wait_ready()
    second.wait_processed(len(records))  # every event redelivered (none was committed)
    wait_for_changelog(settings, expected)
    redelivered = second.endpoint.metric("vitrine_duplicate_events_total")
    assert second.stop() == 0

    third = worker_factory(settings)  # fresh volume: everything must come back from the changelog
    third.wait_ready()
    wait_for_changelog(settings, expected)
    third.endpoint.wait_until(lambda: third.endpoint.metric("vitrine_sessions") == len(expected), 30, "restored")
    print(
        f"RELIABILITY sigkill-before-first-flush-{store}: {len(records)} events, {len(expected)} sessions equal "
        f"to the reference (same volume, then a fresh one), 0 lost, {redelivered:.0f} redelivered events re-flushed"
    )
