"""Tuning the fusion weights on the replay: a grid on the earlier events of a log, the choice scored on the rest.

The grid scales the hand-set weights (``BASE``) per signal, the same factor for every placement kind, so
the shape across kinds (``because_you_viewed`` leans on co-visitation, ``explore`` on retrieval and
diversity) is kept and only the balance between signals is searched. Points are ranked by hit@k on the
main target (next novel product), NDCG breaking ties; the best is then scored, next to ``BASE`` and the
traditional baselines, on the later part of the log, which no choice saw.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.context import PlacementKind
from models.embedder import Embed
from models.quality import QualityFilter
from streams.catalog.artifacts import Catalog
from streams.datasets.readers import SourceFormat, read_source
from streams.evaluation.cascade import Cascade, Planning, Weights, catalog_teacher, exact_retriever
from streams.evaluation.history import History
from streams.evaluation.protocol import (
    NOVEL,
    EvalConfig,
    EvalRun,
    EventLog,
    evaluate,
    iso_time,
    load_events,
    replay,
)
from streams.evaluation.report import Row, summarise, table
from streams.evaluation.strategies import Strategy
from streams.generator.fusion import FusionWeights

# The hand-set weights before tuning (what streams/generator/assembly.py shipped with): the grid's origin.
BASE: dict[PlacementKind, FusionWeights] = {
    PlacementKind.HERO: FusionWeights(retrieval=1.0, covisitation=0.8, category=0.4, popularity=0.1, diversity=0.1),
    PlacementKind.BECAUSE_YOU_VIEWED: FusionWeights(
        retrieval=0.5, covisitation=1.0, category=0.3, popularity=0.0, diversity=0.0
    ),
    PlacementKind.EXPLORE: FusionWeights(retrieval=1.0, covisitation=0.2, category=0.5, popularity=0.3, diversity=0.5),
    PlacementKind.DEALS: FusionWeights(retrieval=0.6, covisitation=0.2, category=0.5, popularity=1.0, diversity=0.3),
}
GRID: dict[str, tuple[float, ...]] = {
    "retrieval": (0.5, 1.0, 2.0),
    "covisitation": (0.5, 1.0, 2.0),
    "category": (0.5, 1.0),
    "popularity": (0.0, 1.0),
    "diversity": (0.0, 1.0),
}
CONTROL = {"retrieval": 0.0, "covisitation": 1.0, "category": 1.0, "popularity": 1.0, "diversity": 1.0}
MAX_DIVERSITY = 0.9  # MMR lambda must stay below 1


@dataclass(frozen=True, slots=True)
class Point:
    scale: dict[str, float]
    hit: float
    ndcg: float
    n: int

    @property
    def label(self) -> str:
        return " ".join(f"{k[:3]} x{v:g}" for k, v in self.scale.items())


def scaled(scale: dict[str, float]) -> dict[PlacementKind, FusionWeights]:
    """``BASE`` with every signal's weight multiplied by its factor (diversity capped below 1)."""
    out = {}
    for kind, w in BASE.items():
        values = {f: round(getattr(w, f) * scale[f], 4) for f in GRID}
        values["diversity"] = min(values["diversity"], MAX_DIVERSITY)
        out[kind] = FusionWeights(**values)
    return out


def grid_points() -> list[dict[str, float]]:
    points = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    return [CONTROL, *points]


@dataclass(slots=True)
class TuneResult:
    split_ms: int
    points: list[Point]
    best: Point
    holdout: EvalRun
    rows: list[Row]
    seconds: dict[str, float]


def tune(
    path: Path,
    fmt: SourceFormat,
    catalog: Catalog,
    *,
    config: EvalConfig,
    fraction: float,
    sample: float,
    quality: QualityFilter | None = None,
    embed: Embed | None = None,
) -> TuneResult:
    """Grid on positions among the earliest ``fraction`` of the log's events (a ``sample`` share of sessions),
    then ``BASE`` and the best point on every position after them."""
    started = time.perf_counter()
    log = load_events(read_source(path, fmt).records, catalog.product_ids)
    # A share of the events, not of the time span: the REES46 head file is two dense bursts around a quiet
    # gap, so 60% of its span holds only 5% of its positions.
    split = log.events[min(len(log.events) - 1, int(fraction * len(log.events)))].ts
    points = grid_points()

    def teacher_planning(history: History, events: EventLog) -> Planning:
        """The serving cascade with the catalog teacher writing, as the main report's teacher row plans."""
        return Planning(
            history=history,
            catalog=catalog,
            writer=catalog_teacher(catalog, events, None),
            retriever=exact_retriever(catalog, history),
            quality=quality,
            embed=embed,
        )

    def grid(history: History, events: EventLog) -> list[Strategy]:
        planning = teacher_planning(history, events)
        return [
            Cascade(history, planning, name=f"grid {i}", description="", weights=scaled(p), sample=sample)
            for i, p in enumerate(points)
        ]

    early = dataclasses.replace(config, cutoff_ms=None, until_ms=split)
    _, outcomes, _, _ = replay(log, fmt=fmt, config=early, extra=grid, traditional=False, targets=frozenset({NOVEL}))
    scored = []
    for i, p in enumerate(points):
        o = outcomes[(NOVEL, f"grid {i}")]
        scored.append(Point(p, float(np.mean(o.hits)), float(np.mean(o.ndcgs)), len(o.hits)))
    gridded = time.perf_counter()
    best = max(scored[1:], key=lambda p: (p.hit, p.ndcg))

    def compare(history: History, events: EventLog) -> list[Strategy]:
        planning = teacher_planning(history, events)
        return [
            Cascade(history, planning, name="teacher cascade, hand-set weights", description="", weights=BASE),
            Cascade(history, planning, name="teacher cascade, tuned weights", description="", weights=best_weights),
        ]

    best_weights: Weights = scaled(best.scale)
    late = dataclasses.replace(config, cutoff_ms=split, until_ms=None)
    holdout = evaluate(path, fmt, config=late, extra=compare, known_items=catalog.product_ids)
    rows = summarise(holdout)
    return TuneResult(
        split_ms=split,
        points=scored,
        best=best,
        holdout=holdout,
        rows=rows,
        seconds={"grid": gridded - started, "holdout": time.perf_counter() - gridded},
    )


def tuning_markdown(result: TuneResult, *, command: str, k: int, sample: float, fraction: float) -> str:
    ranked = sorted(result.points[1:], key=lambda p: (-p.hit, -p.ndcg))
    control = result.points[0]
    best = scaled(result.best.scale)
    lines = [
        "# Fusion weights tuned on the REES46 replay",
        "",
        f"- Command: `{command}`",
        f"- Runtime: grid {result.seconds['grid']:.0f} s, hold-out scoring {result.seconds['holdout']:.0f} s",
        f"- Split: the earliest {fraction:.0%} of the events (positions before {iso_time(result.split_ms)}) tune (the "
        "grid); later positions are the hold-out, replayed on top of the whole past. A share of events, not of the "
        "time span: this file is two dense bursts around a quiet gap.",
        f"- Grid: {len(result.points) - 1} points, every combination of per-signal factors {GRID} applied to the "
        "hand-set weights of every placement kind (diversity capped at 0.9), plus a control without retrieval. "
        f"Scored on the next-novel-product target, a {sample:.0%} hash sample of sessions; ranked by hit@{k}, "
        f"NDCG@{k} breaking ties. Writer: the catalog teacher (no co-occurrence events, as served); quality "
        "filter and retrieval as in the main report.",
        "",
        "## Grid (tuning part)",
        "",
        f"| factors | hit@{k} | NDCG@{k} | n |",
        "|---|---:|---:|---:|",
        *[f"| {p.label} | {p.hit:.4f} | {p.ndcg:.4f} | {p.n} |" for p in ranked[:10]],
        f"| ... {len(ranked) - 10} more, worst: {ranked[-1].label} | {ranked[-1].hit:.4f} | {ranked[-1].ndcg:.4f} "
        f"| {ranked[-1].n} |",
        f"| control, no retrieval: {control.label} | {control.hit:.4f} | {control.ndcg:.4f} | {control.n} |",
        "",
        f"Chosen: **{result.best.label}**.",
        "",
        "| placement | retrieval | covisitation | category | popularity | diversity |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {kind.value} | {w.retrieval:g} | {w.covisitation:g} | {w.category:g} | {w.popularity:g} "
            f"| {w.diversity:g} |"
            for kind, w in best.items()
        ],
        "",
        "## Hold-out (later part, every session)",
        "",
        table(result.rows, k, markdown=True),
        "",
    ]
    return "\n".join(lines)
