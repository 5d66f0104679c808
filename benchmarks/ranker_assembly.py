"""Page assembly with the learned ranker against weighted reciprocal-rank fusion, in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.ranker_assembly --catalog var/catalog-rees46 \
        --ranker models/ranker/rees46 [--runs 5] [--pages 256]

Requests are the REES46 sample folded through the worker's own code (ranker candidates included); the catalog
teacher plans them once; the generator's parts load as serving loads them (``load_generator_parts``: Qdrant local
mode, the keyword cache warmed, the ranker from ``VITRINE_RANKER_MODEL``). Each page is assembled by both
assemblers, which share the retriever, alternately first, so drift on a shared machine hits both alike. The bar
(issue 12): p99 at most 5 ms per page with the learned ranker.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.storefront import REES46, folded_requests
from streams.generator.assembly import StorefrontAssembler
from streams.generator.setup import load_generator_parts
from streams.runtime.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--ranker", type=Path, required=True)
    ap.add_argument("--log", type=Path, default=REES46)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=256)
    args = ap.parse_args()

    requests = folded_requests(args.log)[-args.pages :]  # late requests: the ranker lists have warmed up
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "catalog"
        shutil.copytree(args.catalog, copy)
        settings = Settings(catalog_dir=copy, model_dir=None, ranker_model=args.ranker)
        parts = load_generator_parts(settings)
        assert parts.planner is not None and parts.catalog is not None and parts.assembler.learned is not None, (
            parts.problems
        )
        learned = parts.assembler
        fused = StorefrontAssembler(
            retriever=parts.retriever,
            products=parts.catalog.product,
            items_per_placement=settings.generator.items_per_placement,
            diversity_floor=settings.generator.diversity_floor,
        )
        plans = parts.planner.plan(requests)
        arm = parts.planner.arm
        runs: dict[str, list[list[float]]] = {"learned": [], "fused": []}
        for _ in range(args.runs):
            times: dict[str, list[float]] = {"learned": [], "fused": []}
            for i, (request, plan) in enumerate(zip(requests, plans, strict=True)):
                order = [("learned", learned), ("fused", fused)]
                for name, assembler in order if i % 2 else order[::-1]:
                    t = time.perf_counter()
                    assembler.assemble(request, arm=arm, plans=plan.placements)
                    times[name].append((time.perf_counter() - t) * 1000)
            for name, values in times.items():
                runs[name].append(values)

    def p(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    print(f"catalog {args.catalog}, ranker {args.ranker}, planner {arm.value}, {len(requests)} pages x {args.runs}")
    print("| assembly per page | median | p99 (median of runs) | p99 per run |")
    print("|---|---:|---:|---|")
    for name in ("learned", "fused"):
        medians = [statistics.median(r) for r in runs[name]]
        p99s = [p(r, 99) for r in runs[name]]
        print(
            f"| {name} | {statistics.median(medians):.2f} ms | {statistics.median(p99s):.2f} ms "
            f"| {' / '.join(f'{x:.2f}' for x in p99s)} |"
        )
    ratio = statistics.median(p(r, 99) for r in runs["learned"]) / statistics.median(p(r, 99) for r in runs["fused"])
    med = statistics.median(statistics.median(r) for r in runs["learned"]) / statistics.median(
        statistics.median(r) for r in runs["fused"]
    )
    print(f"\nlearned / fused: p99 {ratio:.2f}x, median {med:.2f}x")


if __name__ == "__main__":
    main()
