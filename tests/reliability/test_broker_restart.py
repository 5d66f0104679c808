"""A broker restart on the same log directory mid-replay: nothing lost, no crash, and the client's
reconnect errors rate-limited in the logs (a 15 s outage once wrote 236,197 ERROR lines)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.datasets.readers import read_source
from streams.devtools.local_kafka import LocalKafka, ensure_jars, wait_for_metadata
from streams.devtools.replay import replay
from streams.runtime.settings import Settings, StoreKind
from tests.conftest import REES46, WorkerProcess
from tests.reliability.checks import Figures, assert_no_request_version_lost, assert_sessions_equal
from tests.worker.test_app import reference

pytestmark = pytest.mark.kafka

OUTAGE_S = 15.0
MAX_CLIENT_ERROR_LINES = 200


class RestartableKafka(LocalKafka):
    """LocalKafka that can come back on the same ports and log directory (start() always formats anew)."""

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        java = shutil.which("java") or "java"
        command = [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            "-cp",
            f"{ensure_jars(self.home)}/*",
            "kafka.Kafka",
            str(self.data_dir / "server.properties"),
        ]
        out = (self.data_dir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        asyncio.run(wait_for_metadata(self.bootstrap, self.startup_timeout_s))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[RestartableKafka]:
    with RestartableKafka(tmp_path / "kafka") as kafka:
        yield kafka


@pytest.mark.parametrize("store", [StoreKind.ROCKSDB, StoreKind.MEMORY])
def test_broker_restart_on_the_same_log_dir_loses_nothing(
    store: StoreKind,
    own_broker: RestartableKafka,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    settings = settings_factory(store=store, kafka_bootstrap_servers=own_broker.bootstrap)
    records = read_source(REES46, limit=2000).records
    worker = worker_factory(settings)
    worker.wait_ready()
    asyncio.run(replay(records[:1000], settings, progress=False))
    worker.wait_processed(1000)

    own_broker.restart(down_s=OUTAGE_S)
    asyncio.run(replay(records[1000:], settings, progress=False))
    expected = reference(records, settings)
    assert_sessions_equal(settings, expected, timeout_s=120)
    requests, copies = assert_no_request_version_lost(settings, expected)
    assert worker.endpoint.metric("vitrine_agent_crashes_total") == 0
    assert worker.proc.poll() is None

    client_errors = [
        line
        for line in worker.log_tail(10**9).splitlines()
        if '"level":"ERROR"' in line and '"logger":"aiokafka' in line
    ]
    assert len(client_errors) <= MAX_CLIENT_ERROR_LINES, f"{len(client_errors)} aiokafka ERROR lines in a 15 s outage"
    print(
        Figures(len(records), len(expected), requests, copies).line(f"broker-restart-{store.value}")
        + f", {len(client_errors)} client ERROR lines"
    )
