"""Soak: a RocksDB-store session worker fed REES46 pass after pass, its resident memory sampled over time.

    python -m benchmarks.soak --minutes 10

One ``vitrine worker`` process (store=rocksdb, the RocksDB bounds of ``k8s/base/worker-statefulset.yaml``,
4 partitions, so it holds every table's database for every partition: the most a pod holds) on a real
broker. Each pass is the REES46 log with its own session and event ids, later in event time than the one
before; the next pass is sent once the worker has caught up to within one pass, so the input never runs far
ahead. Sessions never expire by default (``--session-ttl-s``), so the store only grows: the worst case for
memory. Every ``--sample-s`` the worker's RSS (``/proc/<pid>/status``), events processed, sessions held and the
store's size on disk are recorded; the report gives the peak RSS (VmHWM) against ``--limit-mib``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks.broker import bench_broker
from streams.cli import REES46_HEAD
from streams.datasets.readers import ReplayRecord, read_source
from streams.devtools.local_kafka import free_port
from streams.devtools.processes import WorkerEndpoint, start_worker
from streams.devtools.replay import replay
from streams.runtime.settings import StoreKind
from streams.worker.app import rocksdb_memory_bound

MiB = 1024**2


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    rss_mib: float
    events: int
    sessions: int
    store_mib: float


def relabel(records: list[ReplayRecord], r: int, span_ms: int) -> list[ReplayRecord]:
    """Pass ``r`` of the log: its own session and event ids, ``r`` spans later in event time."""
    if r == 0:
        return records
    out = []
    for rec in records:
        event = orjson.loads(rec.value)
        event["session_id"] += f"~s{r}"
        event["event_id"] += f"~s{r}"
        event["ts"] += r * span_ms
        out.append(ReplayRecord(event["session_id"].encode(), orjson.dumps(event), event["ts"]))
    return out


def proc_status(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REES46_HEAD)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--limit-mib", type=float, default=1024.0, help="the pod's memory limit (k8s: 1Gi)")
    ap.add_argument("--session-ttl-s", type=float, default=365 * 24 * 3600.0)
    args = ap.parse_args()

    base = read_source(args.data).records
    span_ms = int((base[-1].ts or 0) - (base[0].ts or 0)) + 1000
    samples: list[Sample] = []
    with ExitStack() as stack:
        workdir, settings = bench_broker(stack, "soak", args.partitions)
        settings = settings.replace(
            store=StoreKind.ROCKSDB,
            data_dir=workdir / "store",
            session_ttl_s=args.session_ttl_s,
            web_port=free_port(),
            log_level="WARNING",
        )
        bound = rocksdb_memory_bound(settings) / MiB
        print(f"RocksDB bound (block caches + memtables, every database): {bound:.0f} MiB", flush=True)
        proc = start_worker(settings, workdir / "worker.log")
        endpoint = WorkerEndpoint(settings.operations.web_port, proc)
        stop = threading.Event()

        def sample(start: float) -> None:
            events, sessions = 0, 0
            while not stop.wait(args.sample_s):
                with suppress(OSError):  # /metrics slow to answer on a loaded machine: RSS is what counts
                    events, sessions = int(endpoint.processed()), int(endpoint.metric("vitrine_sessions"))
                s = Sample(
                    time.monotonic() - start,
                    proc_status(proc.pid, "VmRSS"),
                    events,
                    sessions,
                    du_mib(settings.worker.data_dir),
                )
                samples.append(s)
                print(
                    f"{s.seconds:7.0f} s  rss {s.rss_mib:6.0f} MiB  events {s.events:>10,}  "
                    f"sessions {s.sessions:>9,}  store {s.store_mib:7.1f} MiB",
                    flush=True,
                )

        try:
            endpoint.wait_ready()
            start = time.monotonic()
            sampler = threading.Thread(target=sample, args=(start,), daemon=True)
            sampler.start()
            sent, r = 0, 0
            while time.monotonic() - start < args.minutes * 60:
                try:
                    caught_up = endpoint.processed() >= sent - len(base)
                except OSError:
                    caught_up = False
                if caught_up:
                    asyncio.run(replay(relabel(base, r, span_ms), settings, progress=False))
                    sent += len(base)
                    r += 1
                else:
                    time.sleep(0.5)
            stop.set()
            sampler.join()
            peak = proc_status(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(60)

    last = samples[-1]
    print(
        f"\n{args.minutes:.0f} min, {r} passes sent, {last.events:,} events processed, {last.sessions:,} sessions, "
        f"store {last.store_mib:.0f} MiB on disk"
    )
    print(f"peak RSS (VmHWM) {peak:.0f} MiB = {peak / args.limit_mib:.0%} of the {args.limit_mib:.0f} MiB limit")
    quarters = [samples[i * len(samples) // 4 : (i + 1) * len(samples) // 4] for i in range(4)]
    print(
        "RSS max by quarter of the run (MiB): " + " / ".join(f"{max(s.rss_mib for s in q):.0f}" for q in quarters if q)
    )


if __name__ == "__main__":
    main()
