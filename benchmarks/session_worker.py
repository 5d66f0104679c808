"""Session-worker throughput on the real broker, beside a raw aiokafka consume-and-produce passthrough.

    python -m benchmarks.session_worker --repeat 12 --runs 3

Loads the REES46 log ``--repeat`` times (distinct session ids per pass, >= 200k events) into a
fresh topic once, then alternates four consumers, each reading the whole topic from the start with
a new consumer group: the raw aiokafka passthrough (consume every message, produce it to another
topic, flush), a Faust agent that only forwards (the framework's floor), and the real
``vitrine worker`` process (Faust agent, sessions table with changelog, regeneration requests).
The worker's rate is read from its own /metrics counter, from the first poll that saw progress
to the poll that saw every event. The worker runs three times per round: on the direct path (the default:
the drain loop hands each clickstream message to the worker, ``streams/runtime/faust_fastpath.py``), through
the agent's stream with the fast delivery (``direct_path=False``, the default before the direct path), and
through the agent's stream with Faust's own delivery (``fast_delivery=False``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.broker import bench_broker
from streams.cli import REES46_HEAD
from streams.datasets.readers import read_source
from streams.devtools.local_kafka import free_port
from streams.devtools.processes import WorkerEndpoint, start_worker
from streams.devtools.replay import replay
from streams.runtime.settings import Settings, StoreKind


@dataclass
class Run:
    kind: str
    events: int
    seconds: float
    peak_rss_mb: float = 0.0
    state_bytes: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def passthrough(bootstrap: str, topic: str, n: int, partitions: int) -> Run:
    out = f"{topic}-passthrough-{uuid.uuid4().hex[:6]}"
    await _create_topic(bootstrap, out, partitions)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"pt-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    seen = 0
    start = 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batches.values():
                if not start:
                    start = time.perf_counter()
                for rec in records:
                    await producer.send(out, rec.value, key=rec.key)
                seen += len(records)
        await producer.flush()
        return Run("passthrough", seen, time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# The worker's delivery variants: kind -> (fast_delivery, direct_path).
DELIVERIES = {"worker": (True, True), "worker-agent-fast": (True, False), "worker-agent-faust": (False, False)}


def worker_run(
    bootstrap: str, topic: str, n: int, workdir: Path, *, kind: str = "worker", store: StoreKind = StoreKind.MEMORY
) -> Run:
    fast_delivery, direct_path = DELIVERIES[kind]
    port = free_port()
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        app_id=f"bench-{uuid.uuid4().hex[:8]}",
        clickstream_topic=topic,
        regen_topic=f"{topic}-regen",
        dlq_topic=f"{topic}-dlq",
        web_port=port,
        data_dir=workdir / uuid.uuid4().hex[:8],
        log_level="WARNING",
        fast_delivery=fast_delivery,
        direct_path=direct_path,
        store=store,
    )
    proc = start_worker(settings, workdir / "worker.log")
    endpoint = WorkerEndpoint(port, proc)
    try:
        endpoint.wait_ready()
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.05)
            done = endpoint.processed()
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= n and first is not None:
                state = endpoint.metric("vitrine_session_state_bytes")
                return Run(kind, int(n - first[1]), now - first[0], _peak_rss_mb(proc.pid), state)
        raise TimeoutError("worker did not finish")
    finally:
        proc.terminate()
        proc.wait(60)


def faust_floor_run(bootstrap: str, topic: str, n: int, partitions: int, workdir: Path) -> Run:
    sink = f"{topic}-faust-{uuid.uuid4().hex[:6]}"
    asyncio.run(_create_topic(bootstrap, sink, partitions))
    result = workdir / f"{sink}.result"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.faust_floor",
        "--bootstrap",
        bootstrap,
        "--source",
        topic,
        "--sink",
        sink,
        "--events",
        str(n),
        "--result",
        str(result),
        "--app-id",
        sink,
        "--data-dir",
        str(workdir / sink),
    ]
    with (workdir / "faust-floor.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 900
        while not result.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"faust floor run failed; see {workdir / 'faust-floor.log'}")
            time.sleep(0.2)
        events, seconds = result.read_text().split()
        return Run("faust-forward", int(events), float(seconds), _peak_rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REES46_HEAD)
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--store", type=StoreKind, default=StoreKind.MEMORY, help="the workers' table store")
    args = ap.parse_args()

    log = read_source(args.data, repeat=args.repeat)
    n = len(log.records)
    with ExitStack() as stack:
        workdir, settings = bench_broker(stack, "bench", args.partitions)
        bootstrap, topic = settings.connection.kafka_bootstrap_servers, settings.topics.clickstream_topic
        loaded = asyncio.run(replay(log.records, settings, progress=False))
        print(f"loaded {n:,} events into {topic} ({args.partitions} partitions) at {loaded.rate:,.0f}/s", flush=True)
        runs: list[Run] = []
        for i in range(args.runs):
            runs.append(asyncio.run(passthrough(bootstrap, topic, n, args.partitions)))
            runs.append(faust_floor_run(bootstrap, topic, n, args.partitions, workdir))
            for kind in DELIVERIES:
                runs.append(worker_run(bootstrap, topic, n, workdir, kind=kind, store=args.store))
            print(f"run {i + 1}: " + "  ".join(f"{r.kind} {r.rate:,.0f} ev/s" for r in runs[-5:]), flush=True)

    pt = statistics.median(r.rate for r in runs if r.kind == "passthrough")
    wk = [r for r in runs if r.kind == "worker"]
    wr = statistics.median(r.rate for r in wk)
    ff = statistics.median(r.rate for r in runs if r.kind == "faust-forward")
    wa = statistics.median(r.rate for r in runs if r.kind == "worker-agent-fast")
    wf = statistics.median(r.rate for r in runs if r.kind == "worker-agent-faust")
    print(f"\nevents: {n:,}; runs: {args.runs}; worker store: {args.store.value}; medians")
    print(f"raw aiokafka passthrough   {pt:>8,.0f} events/s  (baseline)")
    print(f"faust forward-only agent   {ff:>8,.0f} events/s  (ratio {ff / pt:.2f})")
    print(f"vitrine session worker     {wr:>8,.0f} events/s  (ratio {wr / pt:.2f}, {wr / ff:.2f} of faust forward)")
    print(f"  through the agent        {wa:>8,.0f} events/s  (ratio {wa / pt:.2f}; VITRINE_DIRECT_PATH=false)")
    print(f"  agent, Faust's delivery  {wf:>8,.0f} events/s  (ratio {wf / pt:.2f}; VITRINE_FAST_DELIVERY=false)")
    print(f"direct path vs the agent with fast delivery: {wr / wa:.2f}x")
    print(
        f"worker peak RSS median {statistics.median(r.peak_rss_mb for r in wk):.0f} MB; "
        f"mean state {statistics.median(r.state_bytes for r in wk):.0f} bytes/session"
    )


if __name__ == "__main__":
    main()
