"""PNG figure of an evaluation: hit rate and NDCG per strategy, one row of panels per target, with CIs."""

from __future__ import annotations

from pathlib import Path

from streams.evaluation.report import Row


def plot_rows(rows: list[Row], k: int, path: Path, *, title: str) -> None:
    """Horizontal bars with 95% interval whiskers, so overlapping strategies are visibly ties."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # an offline tool: the worker image need not carry matplotlib
        raise RuntimeError("plots need matplotlib: pip install 'vitrine[eval]'") from exc

    targets = list(dict.fromkeys(r.target for r in rows))
    fig, axes = plt.subplots(len(targets), 2, figsize=(13, 2.2 + 1.6 * len(targets)), squeeze=False)
    for row_axes, target in zip(axes, targets, strict=True):
        group = [r for r in rows if r.target == target]
        names = [r.strategy for r in group]
        for ax, label, pick in ((row_axes[0], f"hit@{k}", "hit"), (row_axes[1], f"NDCG@{k}", "ndcg")):
            est = [getattr(r, pick) for r in group]
            values = [e.value for e in est]
            errors = [[e.value - e.low for e in est], [e.high - e.value for e in est]]
            ax.barh(names, values, xerr=errors, color="#4c72b0", ecolor="#222222", capsize=3)
            ax.invert_yaxis()
            ax.set_title(f"{target}: {label}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
