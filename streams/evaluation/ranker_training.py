"""``vitrine train-ranker``: the learned fusion (LightGBM LambdaMART) trained on the replay's earlier part only.

Examples are the serving code's own: the log is replayed under the evaluation's protocol (``History`` folds a
timestamp group only after its positions are used, so no feature counts the event it predicts, anything in the same
second, or later), each main-target position's request is planned by the teacher cascade (``Planning``, as the
report's teacher row) and assembled by the generator's ``StorefrontAssembler`` with a recording scorer: every
placement's candidates and their ``streams.generator.ranking.feature_rows`` are kept, labelled 1 where the candidate
is the position's next product (an item of the next invoice on transactions). The recording scorer orders the page
by weighted reciprocal rank meanwhile, so later placements see the candidates the served page leaves them.

The split is the evaluation's: on a clickstream the earliest ``fraction`` of the events (``tuning.event_split``,
as the fusion weights were tuned), on transactions the report's cutoff (earlier months only train there). Nothing
at or after the split is replayed; ``vitrine eval --ranker`` scores only positions at or after it. The last fifth
of the training groups (by time) stops the boosting early and gives the card's metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.context import PlacementKind
from models.embedder import Embed
from models.quality import QualityFilter
from streams.catalog.artifacts import Catalog
from streams.contracts.storefront import Arm
from streams.datasets.readers import SourceFormat
from streams.evaluation.cascade import Planning, catalog_teacher, exact_retriever, in_sample
from streams.evaluation.metrics import dcg_hit
from streams.evaluation.protocol import (
    INVOICE,
    NOVEL,
    EvalConfig,
    EventLog,
    clickstream_positions,
    iso_time,
    new_history,
    transaction_positions,
)
from streams.evaluation.tuning import event_split
from streams.generator.assembly import DEFAULT_WEIGHTS
from streams.generator.fusion import RRF_C
from streams.generator.layout import Shelf
from streams.generator.ranking import (
    CARD_FILE,
    CATEGORICAL,
    FEATURES,
    MISSING_RANK,
    MODEL_FILE,
    SHELF_INDEX,
    Candidates,
)

K = 12
VALID_SHARE = 0.2
MIN_GROUPS = 20  # a shelf with fewer positive groups than this keeps its served order (too little to learn from)
PARAMS: dict[str, object] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [K],
    "lambdarank_truncation_level": K,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "seed": 7,
    "verbose": -1,
}
ROUNDS = 300
PATIENCE = 30
_COLUMN = {name: i for i, name in enumerate(FEATURES)}
_SHELF_OF = {index: shelf for shelf, index in SHELF_INDEX.items()}


def logging_order(rows: np.ndarray) -> np.ndarray:
    """The served order the examples are collected under: weighted reciprocal rank (``DEFAULT_WEIGHTS`` of the
    row's placement kind) on generated placements, the context's own order on own shelves."""
    out = np.zeros(len(rows))
    for i, row in enumerate(rows):
        shelf = _SHELF_OF[int(row[_COLUMN["shelf"]])]
        if not isinstance(shelf, PlacementKind):
            own = min(row[_COLUMN["purchased_rank"]], row[_COLUMN["recent_rank"]])
            out[i] = 1.0 / (1.0 + own)
            continue
        weights = DEFAULT_WEIGHTS[shelf]
        for column, w in (
            ("retrieval_rank", weights.retrieval),
            ("covis_rank", weights.covisitation),
            ("category_rank", weights.category),
            ("popular_rank", weights.popularity),
        ):
            rank = row[_COLUMN[column]]
            if rank < MISSING_RANK:
                out[i] += w * RRF_C / (RRF_C + rank)
    return out


@dataclass(slots=True)
class Recorder:
    """A scorer for the assembler that keeps what it is asked to score and answers in the logging order."""

    groups: list[tuple[Candidates, np.ndarray]] = field(default_factory=list)

    @property
    def shelves(self) -> frozenset[Shelf]:
        return frozenset(SHELF_INDEX)

    def scores(self, candidates: Candidates, rows: np.ndarray) -> np.ndarray:
        self.groups.append((candidates, rows))
        return logging_order(rows)


@dataclass(slots=True)
class Examples:
    rows: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (position's event id, shelf) per group
    shelves: Counter[str] = field(default_factory=Counter)  # positive groups per shelf
    positions: int = 0

    def add(self, candidates: Candidates, rows: np.ndarray, relevant: frozenset[str], event_id: str) -> None:
        labels = np.array([p in relevant for p in candidates.products], dtype=np.float32)
        if len(labels) > 1 and labels.any():  # a group without a positive, or of one row, teaches nothing
            self.rows.append(rows)
            self.labels.append(labels)
            self.keys.append((event_id, str(candidates.shelf)))
            self.shelves[str(candidates.shelf)] += 1


def collect(
    log: EventLog,
    fmt: SourceFormat,
    config: EvalConfig,
    *,
    catalog: Catalog,
    split_ms: int,
    sample: float,
    quality: QualityFilter | None,
    embed: Embed | None,
    progress: Callable[[int], None] | None = None,
) -> Examples:
    """Groups (one placement's candidates at one main-target position before ``split_ms``) from the serving code."""
    clickstream = fmt is not SourceFormat.ONLINE_RETAIL
    config = dataclasses.replace(config, cutoff_ms=None)  # every position before the split is an example
    history = new_history(log, fmt, config)
    planning = Planning(
        history=history,
        catalog=catalog,
        writer=catalog_teacher(catalog, log, None),  # as served: no co-occurrence events (none from the future)
        retriever=exact_retriever(catalog, history),
        quality=quality,
        embed=embed,
    )
    recorder = Recorder()
    assembler = planning.assembler(DEFAULT_WEIGHTS, learned=recorder)
    target = NOVEL if clickstream else INVOICE
    positions_of = clickstream_positions if clickstream else transaction_positions
    examples = Examples()
    for ts, grouped in itertools.groupby(log.events, key=lambda e: e.ts):
        if ts >= split_ms:
            break
        group = list(grouped)
        for position in positions_of(group, history, config):
            if target not in position.targets or not in_sample(position.cluster, sample):
                continue
            planned = planning.plan(position.context)
            if planned is None:
                continue
            request, plan = planned
            recorder.groups.clear()
            assembler.assemble(request, arm=Arm.TEACHER, plans=plan.placements, hide=position.exclude)
            examples.positions += 1
            for candidates, rows in recorder.groups:
                examples.add(candidates, rows, position.relevant, position.event_id)
        for e in group:  # only now does the group become the past
            history.observe(e.click)
        if progress is not None:
            progress(len(group))
    return examples


def _ndcg(groups: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean NDCG@K of ordering each group's labels by its scores (ties: proposal order)."""
    values = []
    for scores, labels in groups:
        order = np.argsort(-scores, kind="stable")
        relevant = frozenset(np.flatnonzero(labels).tolist())
        values.append(dcg_hit(order.tolist(), relevant, K)[1])
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True, slots=True)
class Trained:
    card: dict[str, object]
    seconds: float


def train(examples: Examples, out: Path, *, data: dict[str, object]) -> Trained:
    """Fit LambdaMART on all but the last ``VALID_SHARE`` of the groups, stop on that part, write model and card."""
    import lightgbm

    started = time.perf_counter()
    n = len(examples.rows)
    if n < 2 * MIN_GROUPS:
        raise ValueError(f"only {n} training groups with a positive: too few to train a ranker")
    cut = int(n * (1 - VALID_SHARE))

    def dataset(part: slice, reference: lightgbm.Dataset | None = None) -> lightgbm.Dataset:
        rows = examples.rows[part]
        return lightgbm.Dataset(
            np.concatenate(rows),
            label=np.concatenate(examples.labels[part]),
            group=[len(r) for r in rows],
            feature_name=list(FEATURES),
            categorical_feature=list(CATEGORICAL),
            reference=reference,
            free_raw_data=False,
        )

    fit = dataset(slice(0, cut))
    valid = dataset(slice(cut, n), fit)
    booster = lightgbm.train(
        PARAMS,
        fit,
        num_boost_round=ROUNDS,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lightgbm.early_stopping(PATIENCE, verbose=False)],
    )
    held = list(zip(examples.rows[cut:], examples.labels[cut:], strict=True))
    model_ndcg = _ndcg([(np.asarray(booster.predict(r, num_iteration=booster.best_iteration)), y) for r, y in held])
    served_ndcg = _ndcg([(logging_order(r), y) for r, y in held])
    out.mkdir(parents=True, exist_ok=True)
    text = booster.model_to_string(num_iteration=booster.best_iteration)
    (out / MODEL_FILE).write_text(text)
    importance = booster.feature_importance(importance_type="gain", iteration=booster.best_iteration)
    total = float(importance.sum()) or 1.0
    card: dict[str, object] = {
        "version": "ranker-" + hashlib.sha256(text.encode()).hexdigest()[:12],
        "model": MODEL_FILE,
        "objective": "lambdarank (LightGBM LambdaMART), binary labels: the position's next product",
        "data": data,
        "examples": {
            "positions": examples.positions,
            "groups": n,
            "rows": int(sum(len(r) for r in examples.rows)),
            "train_groups": cut,
            "valid_groups": n - cut,
            "positive_groups_per_shelf": dict(examples.shelves),
        },
        "shelves": sorted(s for s, c in examples.shelves.items() if c >= MIN_GROUPS),
        "features": list(FEATURES),
        "params": {**PARAMS, "rounds": booster.best_iteration, "early_stopping": PATIENCE},
        "metrics": {
            f"valid_ndcg@{K}_model": round(model_ndcg, 4),
            f"valid_ndcg@{K}_weighted_rrf": round(served_ndcg, 4),
            "note": "per placement group with a positive, last fifth of the training period by time",
        },
        "gain_share": {name: round(float(g) / total, 4) for name, g in zip(FEATURES, importance, strict=True)},
        "bytes": len(text.encode()),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return Trained(card, time.perf_counter() - started)


def split_for(log: EventLog, fmt: SourceFormat, config: EvalConfig, fraction: float) -> int:
    """Where training stops and reported positions start: the report's cutoff on transactions, else the earliest
    ``fraction`` of the events."""
    if fmt is SourceFormat.ONLINE_RETAIL and config.cutoff_ms is not None:
        return config.cutoff_ms
    return event_split(log, fraction)


def describe(path: Path, fmt: SourceFormat, log: EventLog, split_ms: int, fraction: float, sample: float) -> dict:
    """The card's ``data`` entry."""
    return {
        "log": path.name,
        "format": fmt.value,
        "events": len(log.events),
        "split_ms": split_ms,
        "split": iso_time(split_ms),
        "rule": "transactions: the report's cutoff"
        if fmt is SourceFormat.ONLINE_RETAIL
        else f"the earliest {fraction:.0%} of the events",
        "trained_on": "positions strictly before the split only; vitrine eval --ranker scores from the split on",
        "sample": sample,
    }
