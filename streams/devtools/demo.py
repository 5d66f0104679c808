"""``vitrine demo``: local broker, catalog, session worker, generator, a replay of real data, and the storefronts.

Each run uses fresh topic names, so running it twice shows the same thing twice. The catalog (and the
exported embedding model) are built on the first run and reused after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from onnx_export.embedder_export import ensure_embedder
from streams.catalog.artifacts import MANIFEST_FILE, Catalog
from streams.catalog.build import CatalogSource, build_catalog
from streams.catalog.products import ProductSource
from streams.contracts.storefront import StorefrontUpdate
from streams.datasets.readers import read_source
from streams.devtools.local_kafka import LocalKafka, free_port
from streams.devtools.processes import WorkerEndpoint, start_worker
from streams.devtools.replay import replay
from streams.runtime.settings import Settings
from streams.runtime.topics import read_topic

DEMO_DIR = Path("var/demo")
# The learned fusion trained on this log's first 60% (models/ranker/README.md): the page `vitrine eval` scores.
DEMO_RANKER = Path("models/ranker/rees46")
HANDLED = ("vitrine_storefronts_total", "vitrine_requests_coalesced_total", "vitrine_requests_stale_total")


def ensure_catalog(settings: Settings, data: Path) -> Path:
    """The demo's catalog, built from the replayed log on the first run (with progress bars)."""
    built = DEMO_DIR / "catalog-built"
    if not (built / MANIFEST_FILE).exists():
        print("building the catalog from the REES46 log (first run only) ...", flush=True)
        build_catalog(
            [CatalogSource(ProductSource.REES46, data)],
            built,
            settings,
            progress=True,
            prepare_embedder=ensure_embedder,
        )
    # Qdrant local mode locks its directory: each run gets its own copy for the generator process.
    run_copy = DEMO_DIR / "catalog"
    shutil.rmtree(run_copy, ignore_errors=True)
    shutil.copytree(built, run_copy)
    return run_copy


def describe(update: StorefrontUpdate, catalog: Catalog) -> str:
    def title(product_id: str) -> str:
        product = catalog.product(product_id)
        if product is None:
            return product_id
        price = f" ${product.price:,.0f}" if product.price else ""
        return f"{product.title[:28]}{price}"

    head = (
        f"session {update.session_id[:13]} v{update.version}  trigger {update.trigger}  arm {update.arm.value}"
        f"  model {update.model_version or '-'}  {update.latency_ms.total:.0f} ms"
        + ("  DEGRADED: " + "; ".join(update.degraded_reasons) if update.degraded else "")
    )
    lines = [head]
    for p in update.placements:
        keywords = f"  [{', '.join(p.keywords)}]" if p.keywords else ""
        mark = " (fallback)" if p.fallback else ""
        lines.append(f"  {p.kind:<19} {p.theme}{keywords}{mark}")
        lines.append("      " + " | ".join(f"{title(i.product_id)} <{i.source.value[:4]}>" for i in p.items[:4]))
    return "\n".join(lines)


def run_demo(settings: Settings, *, data: Path, speed: float, show: int) -> int:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    catalog_dir = ensure_catalog(settings, data)
    catalog = Catalog.load(catalog_dir)
    records = read_source(data).records
    run = f"demo-{int(time.time())}"
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            print("starting a local Kafka broker (first run fetches it from Maven Central) ...", flush=True)
            bootstrap = stack.enter_context(LocalKafka(DEMO_DIR / "kafka")).bootstrap
        demo = settings.replace(
            kafka_bootstrap_servers=bootstrap,
            app_id=run,
            clickstream_topic=f"{run}-clickstream",
            regen_topic=f"{run}-regen",
            dlq_topic=f"{run}-dlq",
            storefront_topic=f"{run}-storefronts",
            catalog_updates_topic=f"{run}-catalog-updates",
            merch_rules_topic=f"{run}-merch-rules",
            catalog_dir=catalog_dir,
            ranker_model=settings.generator.ranker_model or DEMO_RANKER,
            log_level="WARNING",
        )
        endpoints = {}
        for command in ("worker", "generator"):
            port = free_port()
            proc = start_worker(
                demo.replace(web_port=port, data_dir=DEMO_DIR / command),
                DEMO_DIR / f"{command}.log",
                command,
            )
            stack.callback(proc.wait, 60)
            stack.callback(proc.terminate)
            endpoints[command] = WorkerEndpoint(port, proc)
            print(f"{command} starting (metrics on http://127.0.0.1:{port}/metrics) ...", flush=True)
        for endpoint in endpoints.values():
            endpoint.wait_ready(timeout_s=300)
        summary = asyncio.run(replay(records, demo, speed=speed))
        worker, generator = endpoints["worker"], endpoints["generator"]
        with tqdm(total=summary.sent, desc="session worker", unit="ev") as bar:
            worker.wait_processed(summary.sent, on_progress=lambda n: bar.update(int(n) - bar.n))
        requests = _settled(worker, "vitrine_regen_triggers_total")
        with tqdm(total=int(requests), desc="generator", unit="page") as bar:

            def done() -> bool:
                handled = _handled(generator)
                bar.update(int(handled) - bar.n)
                return handled >= requests

            generator.wait_until(done, 600, "done with every request")
        updates = [
            StorefrontUpdate.from_json(r.value) for r in asyncio.run(read_topic(demo, demo.topics.storefront_topic))
        ]

        print(f"\n{len(updates):,} storefronts from {int(requests):,} requests ({summary.sent:,} events); a sample:\n")
        for update in _sample(updates, show):
            print(describe(update, catalog) + "\n")
        arms: dict[str, int] = {}
        for u in updates:
            arms[u.arm.value] = arms.get(u.arm.value, 0) + 1
        latencies = sorted(u.latency_ms.request_to_publish for u in updates)
        print("by arm: " + ", ".join(f"{k} {v:,}" for k, v in sorted(arms.items())))
        print(f"degraded: {sum(u.degraded for u in updates):,}")
        if latencies:
            p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
            print(
                f"request -> published: p50 {p50:.0f} ms, p99 {p99:.0f} ms (replayed at full speed, so mostly queueing)"
            )
    return 0


def _handled(endpoint: WorkerEndpoint) -> float:
    return sum(endpoint.metric(m) for m in HANDLED)


def _settled(endpoint: WorkerEndpoint, metric: str) -> float:
    """A counter's value once it stops moving (requests are sent as the last events are handled)."""
    value = -1.0
    while (current := endpoint.metric(metric)) != value:
        value = current
        time.sleep(1.0)
    return value


def _sample(updates: list[StorefrontUpdate], n: int) -> list[StorefrontUpdate]:
    """Pages of each arm and trigger in turn, later versions preferred, so every kind is on screen."""
    by_kind: dict[tuple[str, str], list[StorefrontUpdate]] = {}
    for u in sorted(updates, key=lambda u: (-u.version, u.event_ts)):
        by_kind.setdefault((u.arm.value, u.trigger), []).append(u)
    picked: list[StorefrontUpdate] = []
    while len(picked) < n and any(by_kind.values()):
        for queue in by_kind.values():
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked
