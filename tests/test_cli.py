"""The command line turns our own errors into one readable line and an exit code, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main


def test_missing_log_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "/definitely/not/here.csv"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "vitrine: error: /definitely/not/here.csv: no such file\n"


def test_invalid_setting_names_the_field(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "zero")
    with pytest.raises(SystemExit) as exit_info:
        main(["topics"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "vitrine: invalid settings: VITRINE_TOPIC_PARTITIONS='zero': "
        "Input should be a valid integer, unable to parse string as an integer\n"
    )


def test_train_student_pairs_each_log_with_a_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train-student", "--data", "a.csv", "--data", "b.csv", "--catalog", "c", "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "vitrine: error: train-student: 2 --data but 1 --catalog; give one each\n"


def test_speed_argument_rejects_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "x.csv", "--speed", "-2"])
    assert exit_info.value.code == 2
    assert "speed factor must be positive" in capsys.readouterr().err


def test_simulate_reports_the_configured_policy_first(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import REES46

    assert main(["simulate", str(REES46)]) == 0
    out = capsys.readouterr().out
    assert "17,434 events, 5,066 sessions" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| configured TriggerPolicy(min_events=3")
    assert len(rows) == 9  # header + configured + 7 neighbours


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog", "--out", "/proc/vitrine-catalog"],
        ["train-student", "--out", "/proc/vitrine-model"],
        ["export-embedder", "--out", "/etc/hostname/embedder"],
        ["eval", "x.csv", "--out", "/proc/vitrine/report.md"],
    ],
)
def test_unwritable_output_is_refused_before_any_work(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--out" in err and ("cannot write under" in err or "is not a directory" in err)


def test_writable_output_is_accepted_and_not_created(tmp_path: Path) -> None:
    from streams.cli import output_dir, output_file

    assert output_dir(str(tmp_path / "a" / "b")) == tmp_path / "a" / "b"
    assert output_file(str(tmp_path / "r.md")) == tmp_path / "r.md"
    assert not (tmp_path / "a").exists()
