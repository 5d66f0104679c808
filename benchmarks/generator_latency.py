"""Request -> published storefront latency of a real ``vitrine generator`` on a real broker, at a fixed rate.

    .venv/bin/python -m benchmarks.generator_latency --catalog var/catalog-rees46 [--rate 25] [--seconds 40]

Requests are the REES46 sample folded through the worker's code (ranker candidates included), sent to the
request topic at ``--rate`` per second with ``requested_at_ms`` stamped at send time, as the session
worker does. Latency is the storefront record's Kafka timestamp (set by the generator's producer) minus
that stamp. Then the same requests are sent as fast as possible to measure sustained pages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from benchmarks.storefront import REES46, folded_requests
from streams.contracts.storefront import StorefrontUpdate
from streams.devtools.local_kafka import LocalKafka, free_port
from streams.devtools.processes import WorkerEndpoint, start_worker
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics, read_topic


async def send(settings: Settings, requests: list, rate: float | None) -> None:
    producer = AIOKafkaProducer(**aiokafka_options(settings), linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        for i, request in enumerate(requests):
            if rate:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            stamped = replace(request, requested_at_ms=int(time.time() * 1000))
            await producer.send(settings.topics.regen_topic, stamped.to_json(), key=request.session_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def published(endpoint: WorkerEndpoint) -> float:
    return sum(
        endpoint.metric(m)
        for m in ("vitrine_storefronts_total", "vitrine_requests_coalesced_total", "vitrine_requests_stale_total")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--model-dir", type=Path, default=Path("models/student"))
    ap.add_argument("--rate", type=float, default=25.0, help="requests/s for the latency run")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--burst", type=int, default=512, help="requests sent at once for the throughput run")
    args = ap.parse_args()

    requests = folded_requests(REES46)
    n_latency = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        shutil.copytree(args.catalog, Path(tmp) / "catalog")
        settings = Settings(
            kafka_bootstrap_servers=kafka.bootstrap,
            app_id="bench",
            catalog_dir=Path(tmp) / "catalog",
            model_dir=args.model_dir,
            web_port=free_port(),
            data_dir=Path(tmp) / "generator",
            log_level="WARNING",
        )
        asyncio.run(ensure_topics(settings))
        proc = start_worker(settings, Path(tmp) / "generator.log", "generator")
        try:
            endpoint = WorkerEndpoint(settings.operations.web_port, proc)
            endpoint.wait_ready(timeout_s=300)
            # Distinct sessions per run: every request is fresh (nothing coalesced or stale by version).
            latency_run = [replace(r, session_id=f"{r.session_id}~lat") for r in requests[:n_latency]]
            asyncio.run(send(settings, latency_run, args.rate))
            endpoint.wait_until(lambda: published(endpoint) >= len(latency_run), 300, "done with the latency run")
            records = asyncio.run(read_topic(settings, settings.topics.storefront_topic))
            lat = [
                r.timestamp - StorefrontUpdate.from_json(r.value).requested_at_ms
                for r in records
                if r.value is not None
            ]
            burst = [replace(r, session_id=f"{r.session_id}~max") for r in requests[: args.burst]]
            before = published(endpoint)
            t0 = time.perf_counter()
            asyncio.run(send(settings, burst, None))
            endpoint.wait_until(lambda: published(endpoint) >= before + len(burst), 600, "done with the throughput run")
            rate = len(burst) / (time.perf_counter() - t0)
            arm = StorefrontUpdate.from_json(records[-1].value).arm.value if records and records[-1].value else "?"
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"generator ({arm} arm, model {args.model_dir}), {len(lat)} pages at {args.rate:g} requests/s")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| request -> published p50 at {args.rate:g}/s | {statistics.median(lat):.0f} ms |")
    print(f"| request -> published p99 at {args.rate:g}/s | {float(np.percentile(lat, 99)):.0f} ms |")
    print(f"| sustained, {len(burst)} requests sent at once | {rate:.1f} pages/s |")


if __name__ == "__main__":
    main()
