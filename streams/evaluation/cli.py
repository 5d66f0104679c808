"""``vitrine eval``: run the protocol on a log, print the table, write the Markdown report."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import time
from datetime import UTC, datetime

from streams.evaluation.plots import plot_rows
from streams.evaluation.protocol import CLICKSTREAM_CONFIG, TRANSACTION_CONFIG, evaluate
from streams.evaluation.report import markdown, summarise, table
from streams.exceptions import ReplayError
from streams.replay_sources import SourceFormat, detect_format

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
    run = evaluate(args.path, fmt, config=config, limit=args.limit, show_progress=True)
    rows = summarise(run)
    text = table(rows, config.k, markdown=False)
    seconds = time.perf_counter() - started
    if args.out is not None:
        command = ["vitrine", "eval", str(args.path), "--k", str(args.k)]
        for flag in ("format", "limit", "cutoff"):
            if getattr(args, flag):
                command += [f"--{flag}", str(getattr(args, flag))]
        if args.resamples != 1000:
            command += ["--resamples", str(args.resamples)]
        command += ["--out", str(args.out)]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure = args.out.with_suffix(".png")
        plot_rows(rows, config.k, figure, title=f"{TITLES[fmt]}: k = {config.k}, 95% intervals")
        args.out.write_text(
            markdown(run, rows, command=shlex.join(command), title=TITLES[fmt], seconds=seconds, figure=figure.name)
        )
        text += f"\n\nreport: {args.out} (figure {figure})"
    return text + f"\n({seconds:.1f} s)"
