"""``vitrine eval``: run the protocol on a log, print the table, write the Markdown report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from streams.datasets.exceptions import ReplayError
from streams.datasets.readers import SourceFormat, detect_format
from streams.evaluation.plots import plot_rows
from streams.evaluation.protocol import CLICKSTREAM_CONFIG, TRANSACTION_CONFIG, EvalConfig, evaluate
from streams.evaluation.report import markdown, summarise, table

if TYPE_CHECKING:
    from streams.evaluation.cascade import CascadeSetup

TITLES = {
    SourceFormat.REES46: "REES46 clickstream",
    SourceFormat.ONLINE_RETAIL: "UCI Online Retail II",
    SourceFormat.JSONL: "JSONL clickstream",
}


def run_eval(args: argparse.Namespace) -> str:
    started = time.perf_counter()
    if not args.path.exists():
        raise ReplayError(f"{args.path}: no such file")
    fmt = SourceFormat(args.format) if args.format else detect_format(args.path)
    config = TRANSACTION_CONFIG if fmt is SourceFormat.ONLINE_RETAIL else CLICKSTREAM_CONFIG
    config = dataclasses.replace(config, k=args.k, resamples=args.resamples)
    if args.cutoff:
        try:
            day = datetime.strptime(args.cutoff, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ReplayError(f"--cutoff must be YYYY-MM-DD, not {args.cutoff!r}") from None
        config = dataclasses.replace(config, cutoff_ms=int(day.timestamp() * 1000))
    if getattr(args, "tune", None):
        return _tune(args, fmt, config, started)
    extra = _cascade(args, fmt, config) if getattr(args, "catalog", None) else None
    if getattr(args, "ranker", None):
        if extra is None:
            raise ReplayError("--ranker needs --catalog")
        extra, split_ms = _learned(args.ranker, extra)
        # Never report what the ranker trained on: every row is scored from its split on.
        config = _scored_from(config, split_ms)
    if extra is not None and extra.student is not None:
        student_ms = student_trained_before(args.model_dir, args.path)
        if student_ms is not None:  # nor what the student trained on, when it trained on this log
            config = _scored_from(config, student_ms)
    run = evaluate(
        args.path,
        fmt,
        config=config,
        limit=args.limit,
        show_progress=True,
        extra=extra,
        known_items=extra.catalog.product_ids if extra is not None else (),
    )
    rows = summarise(run)
    text = table(rows, config.k, markdown=False)
    seconds = time.perf_counter() - started
    if args.out is not None:
        command = ["vitrine", "eval", str(args.path), "--k", str(args.k)]
        for flag in ("format", "limit", "cutoff", "catalog", "model_dir", "student_sample", "ranker"):
            if getattr(args, flag, None):
                command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        if args.resamples != 1000:
            command += ["--resamples", str(args.resamples)]
        command += ["--out", str(args.out)]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure = args.out.with_suffix(".png")
        plot_rows(rows, config.k, figure, title=f"{TITLES[fmt]}: k = {config.k}, 95% intervals")
        args.out.write_text(
            markdown(
                run, rows, command=_env() + shlex.join(command), title=TITLES[fmt], seconds=seconds, figure=figure.name
            )
        )
        text += f"\n\nreport: {args.out} (figure {figure})"
    return text + f"\n({seconds:.1f} s)"


def _cascade(args: argparse.Namespace, fmt: SourceFormat, config: EvalConfig) -> CascadeSetup:
    """The cascade rows: the catalog teacher, and the student when ``--model-dir`` is given."""
    from models.quality import QualityFilter
    from models.student import Student
    from streams.catalog.artifacts import Catalog
    from streams.evaluation.cascade import CascadeSetup
    from streams.generator.layout import PAGE_PLACEMENTS
    from streams.generator.planners import build_embed
    from streams.runtime.settings import Settings

    if config.k % PAGE_PLACEMENTS:
        raise ReplayError(
            f"--k {config.k} with --catalog: the cascade's page is {PAGE_PLACEMENTS} placements of k/{PAGE_PLACEMENTS} "
            "products, so k must be a multiple of it"
        )

    catalog = Catalog.load(args.catalog)
    student = Student.load(args.model_dir) if getattr(args, "model_dir", None) else None
    problems: list[str] = []
    embed = build_embed(Settings(), catalog, problems)  # the generator's own embedder, filter and candidates
    if problems or embed is None:
        raise ReplayError("; ".join(problems))
    return CascadeSetup(
        catalog=catalog,
        # Transactions: the teacher learns co-occurrence from the training months only. Clickstreams: every
        # position is scored, so the teacher counts no events at all, as serving builds it.
        teacher_before_ms=config.cutoff_ms if fmt is SourceFormat.ONLINE_RETAIL else None,
        student=student,
        student_sample=getattr(args, "student_sample", None) or 1.0,
        quality=QualityFilter(embed),
        embed=embed,
        rebuy=fmt is SourceFormat.ONLINE_RETAIL,
        per_placement=config.k // PAGE_PLACEMENTS,
    )


def _scored_from(config: EvalConfig, ms: int) -> EvalConfig:
    """``config`` scoring nothing before ``ms`` (nor before its own cutoff, if later)."""
    return dataclasses.replace(config, cutoff_ms=max(ms, config.cutoff_ms or ms))


def student_trained_before(model_dir: Path, log: Path) -> int | None:
    """Where the student's training on ``log`` stopped (its model card's ``test_from_ts`` for that log), or None
    when it never trained on it. A log is recognised by its folder and file name (``rees46/2019-Oct-head.csv``)."""
    try:
        data = json.loads((model_dir / "model_card.json").read_text())["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise ReplayError(f"--model-dir {model_dir}: no readable model card ({exc})") from None
    for source in data.get("sources", [data]):  # cards before multi-shop training name one log
        trained = Path(source["log"])
        if (trained.parent.name, trained.name) == (log.parent.name, log.name):
            return int(source["test_from_ts"])
    return None


def _learned(path: Path, setup: CascadeSetup) -> tuple[CascadeSetup, int]:
    """The cascade setup with the learned ranker's row, and the ranker's training split (epoch ms)."""
    from streams.generator.ranking import CARD_FILE, LearnedRanker, RankerError

    try:
        ranker = LearnedRanker.load(path)
        card = json.loads((path / CARD_FILE).read_text())
        split_ms = int(card["data"]["split_ms"])
    except (RankerError, OSError, ValueError, KeyError) as exc:
        raise ReplayError(f"--ranker {path}: {exc}") from None
    metrics = card.get("metrics", {})
    text = (
        f"model {card['version']} ({path}), trained on {card['examples']['groups']} placement groups from "
        f"{card['examples']['positions']} positions before {card['data']['split']} ({card['data']['rule']}), "
        f"orders the shelves {', '.join(card['shelves'])}; validation NDCG@12 per placement "
        f"{metrics.get('valid_ndcg@12_model')} vs weighted RRF {metrics.get('valid_ndcg@12_weighted_rrf')}"
    )
    return dataclasses.replace(setup, learned=ranker, learned_card=text), split_ms


def run_train_ranker(args: argparse.Namespace) -> str:
    """``vitrine train-ranker``: examples from the replay before the split, LambdaMART, model and card."""
    from tqdm import tqdm

    from streams.datasets.readers import read_source
    from streams.evaluation.protocol import load_events
    from streams.evaluation.ranker_training import collect, describe, split_for, train

    started = time.perf_counter()
    if not args.path.exists():
        raise ReplayError(f"{args.path}: no such file")
    if not 0 < args.fraction < 1 or not 0 < args.sample <= 1:
        raise ReplayError("--fraction must be in (0, 1) and --sample in (0, 1]")
    fmt = SourceFormat(args.format) if args.format else detect_format(args.path)
    config = TRANSACTION_CONFIG if fmt is SourceFormat.ONLINE_RETAIL else CLICKSTREAM_CONFIG
    setup = _cascade(argparse.Namespace(catalog=args.catalog), fmt, config)
    log = load_events(read_source(args.path, fmt).records, setup.catalog.product_ids)
    split_ms = split_for(log, fmt, config, args.fraction)
    with tqdm(total=len(log.events), unit="ev", desc="examples", leave=False, mininterval=1.0) as bar:
        examples = collect(
            log,
            fmt,
            config,
            catalog=setup.catalog,
            split_ms=split_ms,
            sample=args.sample,
            quality=setup.quality,
            embed=setup.embed,
            progress=bar.update,
        )
    collected = time.perf_counter() - started
    data = describe(args.path, fmt, log, split_ms, args.fraction, args.sample)
    trained = train(examples, args.out, data=data)
    card = trained.card
    return (
        f"{args.out}: {card['version']}, {card['bytes']} bytes; {json.dumps(card['examples'])}\n"
        f"metrics: {json.dumps(card['metrics'])}\nshelves: {card['shelves']}\n"
        f"examples {collected:.0f} s, training {trained.seconds:.1f} s"
    )


TUNE_SAMPLE = 0.5


def _tune(args: argparse.Namespace, fmt: SourceFormat, config: EvalConfig, started: float) -> str:
    """``--tune FRACTION``: the fusion-weight grid on the early part, the choice scored on the rest."""
    from streams.evaluation.tuning import tune, tuning_markdown

    if not args.catalog or args.out is None:
        raise ReplayError("--tune needs --catalog and --out")
    if not 0 < args.tune < 1:
        raise ReplayError("--tune is the share of the log's time span to tune on, between 0 and 1")
    setup = _cascade(args, fmt, config)
    result = tune(
        args.path,
        fmt,
        setup.catalog,
        config=config,
        fraction=args.tune,
        sample=TUNE_SAMPLE,
        quality=setup.quality,
        embed=setup.embed,
    )
    command = ["vitrine", "eval", str(args.path), "--catalog", str(args.catalog), "--tune", str(args.tune)]
    command += ["--out", str(args.out)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        tuning_markdown(
            result, command=_env() + shlex.join(command), k=config.k, sample=TUNE_SAMPLE, fraction=args.tune
        )
    )
    seconds = time.perf_counter() - started
    return f"best: {result.best.label}\n{table(result.rows, config.k, markdown=False)}\n({seconds:.1f} s)"


def _env() -> str:
    """BLAS threads matter on a shared 2-core box (2.5x CPU time with the default pool): say what ran."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return f"OMP_NUM_THREADS={threads} " if threads else ""
