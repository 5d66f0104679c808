"""Shared fixtures: one real Kafka broker per test session, fresh names per test, worker processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from models.student import Student
from streams.devtools.local_kafka import LocalKafka, free_port
from streams.devtools.processes import WorkerEndpoint, WorkerGone, start_worker
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from tests.student_fixtures import TinyStudent, require_tiny_student

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VITRINE_SHARED_DATA", REPO.parent / "shared" / "data"))
REES46 = SHARED_DATA / "rees46" / "2019-Oct-head.csv"
ONLINE_RETAIL = SHARED_DATA / "online-retail-ii" / "2009-2010.csv.gz"
# Exported once and kept (gitignored): a clean CI clone exports it in its first test that needs it.
EMBEDDER_DIR = REPO / "var" / "models" / "minilm"


@pytest.fixture(scope="session")
def embedder_dir() -> Path:
    """The real all-MiniLM-L6-v2, exported to ONNX with optimum-onnx (needs the train extra the first time)."""
    from onnx_export.embedder_export import ensure_embedder

    ensure_embedder(EMBEDDER_DIR)
    return EMBEDDER_DIR


@pytest.fixture(scope="session")
def rees46_catalog(tmp_path_factory: pytest.TempPathFactory, embedder_dir: Path) -> Path:
    """The catalog of every REES46 product, built once per test session (real embeddings, Qdrant local mode)."""
    from streams.catalog.build import CatalogSource, build_catalog
    from streams.catalog.products import ProductSource

    out = tmp_path_factory.mktemp("catalog-rees46")
    settings = Settings(embedder_dir=embedder_dir, catalog_dir=out)
    build_catalog([CatalogSource(ProductSource.REES46, REES46)], out, settings, progress=False)
    return out


@pytest.fixture
def catalog_dir(rees46_catalog: Path, tmp_path: Path) -> Path:
    """A private copy: Qdrant local mode locks its directory to one client (one process)."""
    copy = tmp_path / "catalog"
    shutil.copytree(rees46_catalog, copy)
    return copy


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker: the one in KAFKA_BOOTSTRAP_SERVERS, or a local KRaft node started for this session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalKafka(tmp_path_factory.mktemp("kafka")) as kafka:
        yield kafka.bootstrap


@pytest.fixture
def settings_factory(kafka_bootstrap: str) -> Callable[..., Settings]:
    """Settings with topic names and app id unique to the test, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]

    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "app_id": f"vitrine-test-{suffix}",
            "clickstream_topic": f"clickstream-{suffix}",
            "dlq_topic": f"clickstream-dlq-{suffix}",
            "catalog_dlq_topic": f"catalog-dlq-{suffix}",
            "regen_dlq_topic": f"regen-dlq-{suffix}",
            "regen_topic": f"regen-{suffix}",
            "storefront_topic": f"storefront-{suffix}",
            "catalog_updates_topic": f"catalog-updates-{suffix}",
            "merch_rules_topic": f"merch-rules-{suffix}",
            "merch_dlq_topic": f"merch-dlq-{suffix}",
            "topic_partitions": 3,
            "session_ttl_s": 10 * 24 * 3600.0,
            "log_json": True,
        }
        return Settings(**{**base, **overrides})  # type: ignore[arg-type]

    return make


async def send_messages(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """(key, value) messages to ``topic``, each acknowledged before the next."""
    producer = AIOKafkaProducer(**aiokafka_options(settings))
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@dataclass
class WorkerProcess:
    """A real ``vitrine worker`` subprocess with its web port."""

    settings: Settings
    log_path: Path
    command: str = "worker"
    proc: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> WorkerProcess:
        self.proc = start_worker(self.settings, self.log_path, self.command)
        return self

    @property
    def endpoint(self) -> WorkerEndpoint:
        return WorkerEndpoint(self.settings.operations.web_port, self.proc)

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Generous: a generator loads the catalog, warms its keyword cache and loads two models first."""
        try:
            self.endpoint.wait_ready(timeout_s)
        except (WorkerGone, TimeoutError) as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None

    def wait_processed(self, n: int) -> None:
        try:
            self.endpoint.wait_processed(n)
        except (WorkerGone, TimeoutError) as exc:
            raise AssertionError(f"{exc} (processed {self.endpoint.processed()}):\n{self.log_tail()}") from None

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, as Kubernetes does: Faust flushes, commits and leaves the group."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(settings: Settings, data_dir: Path | None = None, command: str = "worker") -> WorkerProcess:
        """A fresh data dir per worker unless one is given (a StatefulSet pod keeps its volume)."""
        run = len(started)
        data_dir = data_dir or tmp_path / f"{command}-{run}"
        settings = settings.replace(web_port=free_port(), data_dir=data_dir)
        worker = WorkerProcess(settings, tmp_path / f"{command}-{run}.log", command).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def tiny() -> TinyStudent:
    """One tiny random T5, exported once per module: the student runtime tests need a real model, not weights."""
    return require_tiny_student()


@pytest.fixture(scope="module")
def student(tiny: TinyStudent) -> Student:
    return Student.load(tiny.onnx_dir, providers="CPUExecutionProvider", intra_op_threads=1)
