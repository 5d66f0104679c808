"""Product-embedding throughput: the runtime ONNX Runtime embedder beside sentence-transformers (PyTorch).

    python -m benchmarks.embedding --texts 2000 --runs 5

The texts are real catalog texts (REES46 product texts and Online Retail titles, half each, as the
catalog job embeds them). Both embed the same texts at the same batch size on the same threads (all
cores); runs alternate between the two after one warm-up each, and the median is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from models.embedder import Embedder
from onnx_export.embedder_export import ensure_embedder, source_model_dir
from streams.catalog.products import read_online_retail, read_rees46
from streams.cli import DEFAULT_DATA, REES46_HEAD
from streams.runtime.settings import Settings


def catalog_texts(n: int) -> list[str]:
    rees46 = read_rees46(REES46_HEAD, limit=n - n // 2)
    retail = read_online_retail(DEFAULT_DATA / "online-retail-ii" / "2009-2010.csv.gz", limit=n // 2)
    return [p.embedding_text() for p in rees46 + retail]


def timed(embed: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str]) -> float:
    start = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (default all cores)")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    threads = args.threads
    torch.set_num_threads(threads)
    settings = Settings()
    ensure_embedder(settings.catalog.embedder_dir)
    texts = catalog_texts(args.texts)
    onnx = Embedder.load(settings.catalog.embedder_dir, "CPUExecutionProvider", intra_op_threads=threads)
    model = SentenceTransformer(str(source_model_dir()), device="cpu")

    candidates: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
        "sentence-transformers (PyTorch eager)": lambda t: model.encode(
            list(t), batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False
        ),
        "ONNX Runtime `Embedder` (models/embedder.py)": lambda t: onnx.embed(t, args.batch_size),
    }
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for embed in candidates.values():
            embed(texts[:256])  # warm-up
        for _ in range(args.runs):
            for name, embed in candidates.items():
                rates[name].append(timed(embed, texts))

    baseline = statistics.median(next(iter(rates.values())))
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{len(texts):,} texts, batch {args.batch_size}, {threads} threads, median of {args.runs} alternated runs")
    print(f"load average at the end (1/5/15 min): {load} (other processes on the same cores skew both rows)\n")
    print("| embedder | texts/s | vs PyTorch |")
    print("|---|---:|---:|")
    for name, seen in rates.items():
        median = statistics.median(seen)
        print(f"| {name} | {median:,.0f} | {median / baseline:.2f} |")
    print(
        "\nRuns (texts/s): " + "; ".join(f"{n}: {' / '.join(f'{r:,.0f}' for r in seen)}" for n, seen in rates.items())
    )


if __name__ == "__main__":
    main()
