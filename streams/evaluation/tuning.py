"""Tuning on the replay: grids on the earlier events of a log, the choices scored on the rest.

First the ranker's parameters (co-visit window, popularity half-life), chosen by the best baseline's
hit@k on the main target; the chosen values are what ``streams.worker.ranker`` ships. Then the fusion
weights, with those ranker parameters. The fusion grid scales the hand-set weights (``BASE``) per
signal, the same factor for every placement kind, so the shape across kinds (``because_you_viewed``
leans on co-visitation, ``explore`` on retrieval and diversity) is kept and only the balance between
signals is searched. Points are ranked by hit@k on the main target (next novel product), NDCG breaking
ties; the best is then scored, next to ``BASE`` and the traditional baselines, on the later part of
the log, which no choice saw.
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
from streams.evaluation.report import Row, comparisons, paired_table, summarise, table
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
RANKER_GRID: dict[str, tuple[float, ...]] = {"covis_window": (3, 5, 8), "pop_half_life_s": (1800.0, 3600.0, 7200.0)}


@dataclass(frozen=True, slots=True)
class RankerPoint:
    window: int
    half_life_s: float
    hits: dict[str, float]  # baseline -> hit@k on the tuning part
    n: int

    @property
    def best(self) -> float:
        return max(self.hits.values())


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


def event_split(log: EventLog, fraction: float) -> int:
    """The time before which the earliest ``fraction`` of the log's events lie: what tunes and trains.

    A share of the events, not of the time span: the REES46 head file is two dense bursts around a quiet
    gap, so 60% of its span holds only 5% of its positions."""
    return log.events[min(len(log.events) - 1, int(fraction * len(log.events)))].ts


def grid_points() -> list[dict[str, float]]:
    points = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    return [CONTROL, *points]


@dataclass(slots=True)
class TuneResult:
    split_ms: int
    ranker: list[RankerPoint]
    chosen: RankerPoint
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
    split = event_split(log, fraction)
    points = grid_points()
    early = dataclasses.replace(config, cutoff_ms=None, until_ms=split)
    ranker: list[RankerPoint] = []
    for window, half_life in itertools.product(*RANKER_GRID.values()):
        trial = dataclasses.replace(early, covis_window=int(window), pop_half_life_s=half_life)
        _, found, _, _ = replay(log, fmt=fmt, config=trial, targets=frozenset({NOVEL}))
        hits = {name: float(np.mean(o.hits)) for (_, name), o in found.items()}
        ranker.append(RankerPoint(int(window), half_life, hits, len(next(iter(found.values())).hits)))
    chosen = max(ranker, key=lambda p: p.best)
    config = dataclasses.replace(config, covis_window=chosen.window, pop_half_life_s=chosen.half_life_s)

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
        ranker=ranker,
        chosen=chosen,
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
    names = list(result.ranker[0].hits)
    lines = [
        "# Ranker parameters and fusion weights tuned on the REES46 replay",
        "",
        f"- Command: `{command}`",
        f"- Runtime: grids {result.seconds['grid']:.0f} s, hold-out scoring {result.seconds['holdout']:.0f} s",
        "- Fair protocol: every page (baselines and cascade) ranks only products with an event strictly before it; "
        "retrieval and keyword candidates too. The baselines are the worker's served ranker signals.",
        f"- Split: the earliest {fraction:.0%} of the events (positions before {iso_time(result.split_ms)}) tune (the "
        "grid); later positions are the hold-out, replayed on top of the whole past. A share of events, not of the "
        "time span: this file is two dense bursts around a quiet gap.",
        f"- Grid: {len(result.points) - 1} points, every combination of per-signal factors {GRID} applied to the "
        "hand-set weights of every placement kind (diversity capped at 0.9), plus a control without retrieval. "
        f"Scored on the next-novel-product target, a {sample:.0%} hash sample of sessions; ranked by hit@{k}, "
        f"NDCG@{k} breaking ties. Writer: the catalog teacher (no co-occurrence events, as served); quality "
        "filter and retrieval as in the main report.",
        "",
        "## Ranker parameters (tuning part, every session)",
        "",
        f"Every combination of {RANKER_GRID}; the baselines' hit@{k} on the next novel product; the point where the "
        "best baseline is highest is chosen (and shipped in `streams/worker/ranker.py` / the evaluation defaults).",
        "",
        f"| co-visit window | popularity half-life | {' | '.join(names)} | n |",
        "|---:|---:|" + "---:|" * len(names) + "---:|",
        *[
            f"| {p.window} | {p.half_life_s:g} s | " + " | ".join(f"{p.hits[n]:.4f}" for n in names) + f" | {p.n} |"
            for p in result.ranker
        ],
        "",
        f"Chosen: **window {result.chosen.window}, half-life {result.chosen.half_life_s:g} s**.",
        "",
        "## Fusion grid (tuning part)",
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
        "Paired differences against the best baseline of each target (row minus baseline, same positions, 95% "
        "cluster-bootstrap intervals):",
        "",
        paired_table(comparisons(result.holdout, result.rows), k),
        "",
    ]
    return "\n".join(lines)
