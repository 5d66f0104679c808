"""`vitrine eval --out` writes a Markdown report and the PNG figure it links to."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.evaluation.cli import run_eval
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
