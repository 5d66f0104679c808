"""``vitrine eval`` never scores a student on the part of a log it trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streams.cli import main
from streams.datasets.readers import read_source
from streams.evaluation.cli import student_trained_before
from streams.evaluation.protocol import iso_time
from tests.conftest import REES46

STUDENT = Path(__file__).resolve().parents[2] / "models" / "student"
LIMIT = 1500


def _student_with_card(tmp_path: Path, data: dict[str, object]) -> Path:
    """The shipped student with its card's training data replaced (the model itself is what serving loads)."""
    out = tmp_path / "student"
    shutil.copytree(STUDENT, out)
    card = json.loads((out / "model_card.json").read_text())
    card["data"] = data
    (out / "model_card.json").write_text(json.dumps(card))
    return out


def _scored_from(report: Path) -> str | None:
    for line in report.read_text().splitlines():
        if line.startswith("| scored from |"):
            return line.split("|")[2].strip()
    return None


@pytest.mark.parametrize("card_shape", ["one log", "several shops"])
def test_a_student_is_scored_only_after_it_stopped_training_on_the_log(
    catalog_dir: Path, tmp_path: Path, card_shape: str
) -> None:
    ts = sorted(r.ts for r in read_source(REES46, limit=LIMIT).records if r.ts)
    trained_until = ts[LIMIT * 2 // 3]
    rees46 = {"log": f"/elsewhere/{REES46.parent.name}/{REES46.name}", "test_from_ts": trained_until}
    other = {"log": "/elsewhere/online-retail-ii/2009-2010.csv.gz", "test_from_ts": ts[-1] + 1}
    data = rees46 if card_shape == "one log" else {"sources": [other, rees46]}
    student = _student_with_card(tmp_path, data)
    assert student_trained_before(student, REES46) == trained_until

    report = tmp_path / "report.md"
    args = ["eval", str(REES46), "--limit", str(LIMIT), "--catalog", str(catalog_dir), "--model-dir", str(student)]
    main([*args, "--student-sample", "0.05", "--resamples", "20", "--out", str(report)])
    assert _scored_from(report) == iso_time(trained_until)


def test_a_student_that_never_saw_the_log_moves_no_cutoff(tmp_path: Path) -> None:
    card = {"sources": [{"log": "/data/online-retail-ii/2009-2010.csv.gz", "test_from_ts": 1}]}
    assert student_trained_before(_student_with_card(tmp_path, card), REES46) is None
    # Same file name, another shop's folder: the cosmetics heads are named like the REES46 one.
    card = {"log": f"/data/rees46-cosmetics/{REES46.name}", "test_from_ts": 1}
    assert student_trained_before(_student_with_card(tmp_path / "b", card), REES46) is None


def test_a_cascade_page_size_that_is_not_whole_placements_is_refused(
    catalog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["eval", str(REES46), "--limit", "200", "--catalog", str(catalog_dir), "--k", "10"])
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--k 10" in err and "multiple" in err
