"""A real single-node Apache Kafka (KRaft) broker on loopback, for tests, benchmarks and the demo.

The jars come from Maven Central through ``broker/pom.xml`` (copied once to ``broker/lib``), so no
Docker and no download outside the package registries is needed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient

from streams.devtools.exceptions import BrokerError

log = logging.getLogger(__name__)

BROKER_HOME = Path(__file__).resolve().parents[2] / "broker"
KAFKA_JAR_GLOB = "kafka_2.13-*.jar"

_LOG4J = """\
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_jars(home: Path = BROKER_HOME) -> Path:
    """Resolve the Kafka jars with Maven unless a previous run already copied them."""
    lib = home / "lib"
    if not any(lib.glob(KAFKA_JAR_GLOB)):
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is needed once to fetch Kafka from Maven Central")
        log.info("fetching Apache Kafka jars from Maven Central into %s", lib)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not any(lib.glob(KAFKA_JAR_GLOB)):
            raise BrokerError(f"mvn could not fetch the Kafka jars:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return lib


async def wait_for_metadata(bootstrap: str, timeout_s: float) -> None:
    """Return once the broker answers a metadata request; the only trustworthy 'ready'."""
    deadline = time.monotonic() + timeout_s
    client_log = logging.getLogger("aiokafka")
    level, client_log.level = client_log.level, logging.CRITICAL  # refused connections are expected here
    try:
        await _poll_metadata(bootstrap, deadline)
    finally:
        client_log.setLevel(level)


async def _poll_metadata(bootstrap: str, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
            await asyncio.sleep(0.3)
        finally:
            await admin.close()
    raise BrokerError(f"no metadata from {bootstrap} before the deadline: {last!r}")


class LocalKafka:
    """``with LocalKafka(data_dir) as kafka: kafka.bootstrap`` starts, waits for and stops a broker."""

    def __init__(
        self, data_dir: Path, *, heap: str = "512m", home: Path = BROKER_HOME, startup_timeout_s: float = 90.0
    ) -> None:
        self.data_dir = data_dir
        self.heap = heap
        self.home = home
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    def start(self) -> str:
        classpath = f"{ensure_jars(self.home)}/*"
        self.port, controller = free_port(), free_port()
        # A throwaway broker: a log dir left by an earlier run carries another cluster id and would
        # make formatting fail, so start from an empty one.
        shutil.rmtree(self.data_dir / "logs", ignore_errors=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(self._properties(controller))
        (self.data_dir / "log4j.properties").write_text(_LOG4J.format(log_file=self.log_file))
        java = shutil.which("java") or "java"
        base = [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            "-cp",
            classpath,
        ]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        fmt = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],  # "=": ids may start with "-",
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting the Kafka log dir failed: {fmt.stderr[-2000:] or fmt.stdout[-2000:]}")
        out = (self.data_dir / "stdout.log").open("wb")
        self._proc = subprocess.Popen(
            [*base, "kafka.Kafka", str(props)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            asyncio.run(wait_for_metadata(self.bootstrap, self.startup_timeout_s))
        except BrokerError:
            self.stop()
            raise
        log.info("Kafka broker ready on %s (pid %s)", self.bootstrap, self._proc.pid)
        return self.bootstrap

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("Kafka did not stop within %.0fs; killing it", timeout_s)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def wait(self) -> None:
        """Block until the broker process exits."""
        if self._proc is not None:
            self._proc.wait()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _properties(self, controller_port: int) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data_dir / 'logs'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "",
            ]
        )
