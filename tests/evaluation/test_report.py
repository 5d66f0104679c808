"""`vitrine eval --out` writes a Markdown report and the PNG figure it links to."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.datasets.readers import SourceFormat
from streams.evaluation.cli import run_eval
from streams.evaluation.protocol import NOVEL, EvalConfig, EvalRun, Outcomes
from streams.evaluation.report import paired
from tests.conftest import REES46

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_links_a_real_png_figure(tmp_path: Path) -> None:
    out = tmp_path / "report" / "rees46.md"
    args = argparse.Namespace(path=REES46, format=None, k=12, out=out, limit=3000, cutoff=None, resamples=50)
    printed = run_eval(args)

    figure = out.with_suffix(".png")
    assert figure.read_bytes().startswith(PNG_MAGIC)
    assert figure.stat().st_size > 10_000, "an empty canvas is a few kB"
    report = out.read_text()
    assert f"]({figure.name})" in report
    assert "--limit 3000" in report and "--resamples 50" in report, "the report must carry its own command"
    assert "session-kNN" in printed


def test_paired_difference_counts_only_positions_both_rows_scored() -> None:
    def outcomes(hits: list[float], events: list[str]) -> Outcomes:
        n = len(hits)
        return Outcomes(hits, list(hits), [0.0] * n, [f"s-{e}" for e in events], [()] * n, events)

    run = EvalRun(
        fmt=SourceFormat.REES46,
        config=EvalConfig(resamples=50),
        strategies=[("sampled", ""), ("everywhere", "")],
        targets=[NOVEL],
        outcomes={
            (NOVEL, "sampled"): outcomes([1.0, 0.0], ["e1", "e3"]),
            (NOVEL, "everywhere"): outcomes([0.0, 1.0, 0.0], ["e1", "e2", "e3"]),
        },
        pages={},
        stats={},
        items=[],
        seconds={},
    )
    diff = paired(run, NOVEL, "sampled", "everywhere")
    assert diff.n == 2  # e2 was not scored by the sampled row
    assert diff.hit.value == 0.5  # (1 - 0 + 0 - 0) / 2
    assert diff.hit.low <= diff.hit.value <= diff.hit.high
