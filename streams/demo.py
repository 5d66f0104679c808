"""``vitrine demo``: a local broker, the session worker, a replay of real data, and what the worker asked for.

Each run uses fresh topic names, so running it twice shows the same thing twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from streams.local_kafka import LocalKafka, free_port
from streams.regen import RegenRequest
from streams.replay import replay
from streams.replay_sources import read_source
from streams.settings import Settings
from streams.topics import read_topic
from streams.worker_client import WorkerEndpoint, start_worker

DEMO_DIR = Path("var/demo")


def describe(req: RegenRequest) -> str:
    ctx = req.context
    recent = ", ".join(f"{i.event_type} {i.product_id}" for i in ctx.recent[-4:])
    parts = [
        f"[{req.reason:<17}] session {req.session_id[:13]:<13} v{req.version}",
        f"recent: {recent}",
        f"categories: {', '.join(ctx.categories[:3]) or '-'}",
        f"brands: {', '.join(ctx.brands[:3]) or '-'}",
        f"price: {', '.join(ctx.price_bands[:2]) or '-'}",
    ]
    if ctx.drift:
        parts.append(f"drift {ctx.drift:.2f}")
    return "  ".join(parts)


def run_demo(settings: Settings, *, data: Path, speed: float, show: int) -> int:
    records = read_source(data).records
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    run = f"demo-{int(time.time())}"
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            print("starting a local Kafka broker (first run fetches it from Maven Central) ...", flush=True)
            bootstrap = stack.enter_context(LocalKafka(DEMO_DIR / "kafka")).bootstrap
        port = free_port()
        demo = settings.model_copy(
            update={
                "kafka_bootstrap_servers": bootstrap,
                "app_id": run,
                "clickstream_topic": f"{run}-clickstream",
                "regen_topic": f"{run}-regen",
                "dlq_topic": f"{run}-dlq",
                "web_port": port,
                "data_dir": DEMO_DIR / "worker",
                "log_level": "WARNING",
            }
        )
        proc = start_worker(demo, DEMO_DIR / "worker.log")
        stack.callback(proc.wait, 60)
        stack.callback(proc.terminate)
        print(f"session worker starting (metrics on http://127.0.0.1:{port}/metrics) ...", flush=True)
        endpoint = WorkerEndpoint(port, proc)
        endpoint.wait_ready()
        summary = asyncio.run(replay(records, demo, speed=speed))
        with tqdm(total=summary.sent, desc="worker", unit="ev") as bar:
            endpoint.wait_processed(summary.sent, on_progress=lambda n: bar.update(int(n) - bar.n))
        time.sleep(demo.flush_interval_s * 3)
        requests = [RegenRequest.from_json(r.value) for r in asyncio.run(read_topic(demo, demo.regen_topic)) if r.value]

        print(
            f"\n{len(requests):,} regeneration requests for {summary.sessions:,} sessions "
            f"from {summary.sent:,} events; the first {min(show, len(requests))}:\n"
        )
        reasons = Counter(r.reason for r in requests)
        for req in _sample(requests, show):
            print(describe(req))
        print("\nby reason: " + ", ".join(f"{k} {v:,}" for k, v in reasons.most_common()))
        print(
            f"requests per event: {len(requests) / max(1, summary.sent):.3f}; "
            f"mean session state: {endpoint.metric('vitrine_session_state_bytes'):.0f} bytes"
        )
        print("(storefronts are generated from these requests by the generator; see README.md)")
    return 0


def _sample(requests: list[RegenRequest], n: int) -> list[RegenRequest]:
    """The earliest requests of each reason in turn, so every kind of trigger is on screen."""
    by_reason: dict[str, list[RegenRequest]] = {}
    for req in sorted(requests, key=lambda r: r.event_ts):
        by_reason.setdefault(req.reason, []).append(req)
    picked: list[RegenRequest] = []
    while len(picked) < n and any(by_reason.values()):
        for queue in by_reason.values():
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked
