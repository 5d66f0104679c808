"""``vitrine eval``: run the protocol on a log, print the table, write the Markdown report."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import time
from datetime import UTC, datetime
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
        for flag in ("format", "limit", "cutoff", "catalog", "model_dir", "student_sample"):
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
    from streams.generator.planners import build_embed
    from streams.runtime.settings import Settings

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
