"""Retrieval latency per placement (cold vs cached), storefront assembly latency, generator throughput.

    .venv/bin/python -m benchmarks.storefront --catalog var/catalog-rees46 [--model-dir models/student] [--runs 5]

Requests are the REES46 sample folded through the worker's own code (``streams.worker.fold.fold`` with the
ranker), so pages carry real ranker candidates. The catalog is copied first (Qdrant local mode locks
its directory). Baselines in the same run: the cached path against the cold one, and the control arm
(traditional strategies only) against the planned arms.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from models.context import PLACEMENTS
from streams.contracts.regen import RegenRequest
from streams.contracts.storefront import Arm
from streams.datasets.readers import read_source
from streams.generator.pipeline import StorefrontGenerator
from streams.generator.setup import load_generator_parts
from streams.runtime.settings import Settings
from streams.worker.fold import regeneration_requests

REES46 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rees46" / "2019-Oct-head.csv"


def folded_requests(log: Path) -> list[RegenRequest]:
    return regeneration_requests(read_source(log).records, Settings())


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--model-dir", type=Path, default=None, help="student model; without it the catalog teacher plans")
    ap.add_argument("--log", type=Path, default=REES46)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=256, help="requests per throughput run")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    requests = folded_requests(args.log)[-args.pages * 2 :]  # late requests: the ranker has warmed up
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "catalog"
        shutil.copytree(args.catalog, copy)
        settings = Settings(catalog_dir=copy, model_dir=args.model_dir)
        t0 = time.perf_counter()
        parts = load_generator_parts(settings)
        load_s = time.perf_counter() - t0
        assert parts.retriever is not None and parts.planner is not None, parts.problems
        planner, retriever, assembler = parts.planner, parts.retriever, parts.assembler
        plans = planner.plan(requests[: args.pages])
        keyword_lists = [[p.keywords for p in plan.placements] for plan in plans]

        # Retrieval per placement: cold = the cache dropped before each page, cached = warm cache.
        cold: list[float] = []
        cached: list[float] = []
        for _ in range(args.runs):
            for kws in keyword_lists[:64]:
                retriever.clear_cache()
                t = time.perf_counter()
                retriever.search(kws)
                cold.append((time.perf_counter() - t) * 1000 / len(PLACEMENTS))
            retriever.warm()
            for kws in keyword_lists:
                t = time.perf_counter()
                retriever.search(kws)
                cached.append((time.perf_counter() - t) * 1000 / len(PLACEMENTS))

        # Assembly (retrieval from the warm cache + fusion + schema), control vs planned page.
        planned_ms: list[float] = []
        control_ms: list[float] = []
        for _ in range(args.runs):
            for request, plan in zip(requests, plans, strict=False):
                t = time.perf_counter()
                assembler.assemble(request, arm=planner.arm, plans=plan.placements)
                planned_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                assembler.assemble(request, arm=Arm.CONTROL)
                control_ms.append((time.perf_counter() - t) * 1000)

        # End-to-end generator throughput (plan + retrieval + fusion), batches as the agent takes them.
        generator = StorefrontGenerator(assembler=assembler, planner=planner, control_share=0.0)
        control = StorefrontGenerator(assembler=assembler, planner=None)
        rates: dict[str, list[float]] = {"planned": [], "control": []}
        batch = args.batch
        for _ in range(args.runs):
            for name, gen in (("planned", generator), ("control", control)):
                t = time.perf_counter()
                for start in range(0, args.pages, batch):
                    gen.generate(requests[start : start + batch])
                rates[name].append(args.pages / (time.perf_counter() - t))

    arm = planner.arm.value
    print(f"catalog {args.catalog}, planner {arm} ({planner.version}), {len(requests)} folded requests")
    print(f"generator start (catalog, Qdrant, cache warm-up, model): {load_s:.1f} s\n")
    print("| measure | median | p99 | baseline (same run) | ratio |")
    print("|---|---:|---:|---|---:|")
    cached_ms, cold_ms = statistics.median(cached), statistics.median(cold)
    print(
        f"| retrieval per placement, cached | {cached_ms:.3f} ms | {pct(cached, 99):.3f} ms "
        f"| cold: {cold_ms:.1f} ms (p99 {pct(cold, 99):.1f}) | {cold_ms / cached_ms:.0f}x faster |"
    )
    page_ms, control_page_ms = statistics.median(planned_ms), statistics.median(control_ms)
    print(
        f"| assembly per page ({arm}) | {page_ms:.2f} ms | {pct(planned_ms, 99):.2f} ms "
        f"| control: {control_page_ms:.2f} ms (p99 {pct(control_ms, 99):.2f}) | {page_ms / control_page_ms:.2f} |"
    )
    planned_rate, control_rate = statistics.median(rates["planned"]), statistics.median(rates["control"])
    print(
        f"| generator, pages/s (batch {batch}, {arm}) | {planned_rate:.1f} | - | control: {control_rate:.1f} "
        f"| {planned_rate / control_rate:.2f} |"
    )
    print(
        f"\nruns: planned {[round(r, 1) for r in rates['planned']]}, control {[round(r, 1) for r in rates['control']]}"
    )


if __name__ == "__main__":
    main()
