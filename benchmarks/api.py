"""Latency and throughput of ``GET /storefronts/{session_id}`` on a real ``vitrine api``, loaded by wrk.

    apt-get install wrk
    .venv/bin/python -m benchmarks.api [--sessions 10000] [--seconds 20] [--connections 32]

A local broker (or KAFKA_BOOTSTRAP_SERVERS) gets ``--sessions`` storefront updates, each a full page
(4 placements x 6 items, about 2 KB of JSON). Once the API has them all in its table, wrk (a separate
process, on loopback) requests random sessions for ``--seconds``: first plain GETs (200 with the page),
then conditional GETs with the current ETag (304, no body).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streams.contracts.storefront import Arm, Item, ItemSource, Placement, Quality, StorefrontUpdate
from streams.devtools.local_kafka import LocalKafka, free_port
from streams.devtools.processes import WorkerEndpoint, start_worker
from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics

KINDS = ("hero", "because_you_viewed", "explore", "deals")
VERSION = 3

WRK_SCRIPT = """
math.randomseed(os.time())
request = function()
  local path = "/storefronts/bench-" .. math.random(0, {n} - 1)
  return wrk.format("GET", path, {{{headers}}})
end
"""


def page(i: int) -> StorefrontUpdate:
    placements = [
        Placement(
            kind=kind,
            theme=f"Theme {kind} {i}",
            keywords=["samsung smartphone", "smartphone"],
            items=[
                Item(product_id=str(1_000_000 + 37 * i + j), score=1.0 / (j + 1), source=ItemSource.RETRIEVAL)
                for j in range(6)
            ],
            quality=Quality(ok=True),
            fallback=False,
        )
        for kind in KINDS
    ]
    now = int(time.time() * 1000)
    return StorefrontUpdate(
        session_id=f"bench-{i}", user_id=str(i), version=VERSION, event_ts=now, requested_at_ms=now,
        published_at_ms=now, trigger="intent_drift", arm=Arm.TEACHER, experiment_id="exp-1",
        placements=placements, degraded=False,
    )  # fmt: skip


async def publish(settings: Settings, n: int) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**aiokafka_options(settings), linger_ms=5)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(settings.topics.storefront_topic, page(i).to_json(), key=f"bench-{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def wrk(url: str, n: int, seconds: int, connections: int, work: Path, *, conditional: bool) -> dict[str, str]:
    headers = f'["If-None-Match"] = \'"v{VERSION}"\'' if conditional else ""
    script = work / ("conditional.lua" if conditional else "plain.lua")
    script.write_text(WRK_SCRIPT.format(n=n, headers=headers))
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = {
        "p50": re.search(r"^\s+50%\s+(\S+)", out, re.M),
        "p99": re.search(r"^\s+99%\s+(\S+)", out, re.M),
        "rps": re.search(r"^Requests/sec:\s+(\S+)", out, re.M),
        "non2xx": re.search(r"Non-2xx or 3xx responses: (\d+)", out),
        "errors": re.search(r"Socket errors: (.*)", out),
    }
    return {k: (m.group(1) if m else "0") for k, m in found.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        work = Path(tmp)
        suffix = uuid.uuid4().hex[:8]
        settings = Settings(
            kafka_bootstrap_servers=kafka.bootstrap, app_id=f"bench-api-{suffix}", storefront_topic=f"sf-{suffix}",
            web_port=free_port(), data_dir=work / "api", log_level="WARNING",
        )  # fmt: skip
        asyncio.run(publish(settings, args.sessions))
        proc = start_worker(settings, work / "api.log", "api")
        try:
            endpoint = WorkerEndpoint(settings.operations.web_port, proc)
            endpoint.wait_ready(180)
            endpoint.wait_until(
                lambda: endpoint.metric("vitrine_api_updates_total") >= args.sessions, 300, "through the topic"
            )
            url = endpoint.base_url
            assert endpoint.get("/storefronts/bench-0")[0] == 200
            rows = [
                ("GET, 200 with the page", wrk(url, args.sessions, args.seconds, args.connections, work,
                                               conditional=False)),
                ("GET If-None-Match, 304", wrk(url, args.sessions, args.seconds, args.connections, work,
                                               conditional=True)),
            ]  # fmt: skip
            body = len(endpoint.get("/storefronts/bench-0")[1])
            _, scraped = endpoint.get("/metrics")
            answers = re.findall(r'^vitrine_api_requests_total\{answer="(\w+)"\} (\S+)', scraped.decode(), re.M)
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"{args.sessions} sessions in the table, {body} B per page, wrk -t2 -c{args.connections} -d{args.seconds}s")
    print("answers counted by the API: " + ", ".join(f"{a} {float(n):,.0f}" for a, n in answers))
    print("| request | p50 | p99 | requests/s | non-2xx/3xx | socket errors |")
    print("|---|---:|---:|---:|---:|---|")
    for name, r in rows:
        print(f"| {name} | {r['p50']} | {r['p99']} | {r['rps']} | {r['non2xx']} | {r['errors'] or '-'} |")


if __name__ == "__main__":
    main()
