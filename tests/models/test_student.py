"""The ONNX student's decode loop against PyTorch, batching, both decoder layouts, and load errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.context import parse_keywords
from models.student import DECODER, DECODER_MERGED, DECODER_WITH_PAST, ENCODER, ModelLoadError, Student
from streams.contracts.errors import VitrineError
from tests.student_fixtures import TinyStudent, corpus, torch_greedy

MAX_NEW = 16


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus(n=24, seed=7)


def test_greedy_ids_match_pytorch(tiny: TinyStudent, student: Student, texts: list[str]) -> None:
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(tiny.torch_dir).eval()
    reference = torch_greedy(model, Tokenizer.from_file(str(tiny.torch_dir / "tokenizer.json")), texts, MAX_NEW)
    assert student.generate_ids(texts, max_new_tokens=MAX_NEW, batch_size=1) == reference


def test_length_batches_give_batch_one_outputs(student: Student, texts: list[str]) -> None:
    one = student.generate_ids(texts, max_new_tokens=MAX_NEW, batch_size=1)
    assert student.generate_ids(texts, max_new_tokens=MAX_NEW, batch_size=8) == one
    assert student.generate_ids(texts, max_new_tokens=MAX_NEW, batch_size=64) == one
    assert student.generate(texts, max_new_tokens=MAX_NEW, batch_size=5) == student.generate(
        texts, max_new_tokens=MAX_NEW, batch_size=1
    )


def test_tokenizer_truncation_of_the_export_is_kept(tiny: TinyStudent, student: Student, tmp_path: Path) -> None:
    """The export's tokenizer.json says how long an input the model saw in training; serving must agree."""
    import json

    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    shutil.copytree(tiny.onnx_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "tokenizer.json").read_text())
    config["truncation"] = {"direction": "Right", "max_length": 6, "strategy": "LongestFirst", "stride": 0}
    (tmp_path / "m" / "tokenizer.json").write_text(json.dumps(config))
    short = Student.load(tmp_path / "m", providers="CPUExecutionProvider", intra_op_threads=1)
    texts = corpus(n=8, seed=11)
    model = T5ForConditionalGeneration.from_pretrained(tiny.torch_dir).eval()
    reference = torch_greedy(model, Tokenizer.from_file(str(tmp_path / "m" / "tokenizer.json")), texts, MAX_NEW)
    assert short.generate_ids(texts, max_new_tokens=MAX_NEW) == reference
    assert reference != student.generate_ids(texts, max_new_tokens=MAX_NEW)  # the cut did change the inputs


def test_output_length_is_bounded(student: Student, texts: list[str]) -> None:
    assert all(len(row) <= 3 for row in student.generate_ids(texts, max_new_tokens=3))
    assert student.generate([], max_new_tokens=3) == []


def test_merged_decoder_gives_the_same_ids(
    tiny: TinyStudent, student: Student, texts: list[str], tmp_path: Path
) -> None:
    merged_dir = tmp_path / "merged"
    shutil.copytree(tiny.onnx_dir, merged_dir)
    (merged_dir / DECODER).unlink()
    (merged_dir / DECODER_WITH_PAST).unlink()
    merged = Student.load(merged_dir, providers="CPUExecutionProvider", intra_op_threads=1)
    assert merged.generate_ids(texts, max_new_tokens=MAX_NEW) == student.generate_ids(texts, max_new_tokens=MAX_NEW)
    # Constrained rows end early and leave the batch, so the merged layout's cache is cut down as well.
    trie = merged.keyword_trie(["running shoes", "yoga mat", "sony"], max_keywords=1)
    constraint = [trie if i % 2 else None for i in range(len(texts))]
    assert merged.generate_ids(texts, max_new_tokens=MAX_NEW, constraint=constraint) == student.generate_ids(
        texts, max_new_tokens=MAX_NEW, constraint=constraint
    )


def test_variant_dir_takes_missing_files_from_parent(tiny: TinyStudent, student: Student, tmp_path: Path) -> None:
    model_dir = tmp_path / "student"
    shutil.copytree(tiny.onnx_dir, model_dir)
    (model_dir / "int8").mkdir()
    shutil.copy(model_dir / ENCODER, model_dir / "int8" / ENCODER)
    variant = Student.load(model_dir / "int8", providers="CPUExecutionProvider")
    texts = corpus(n=4, seed=1)
    assert variant.generate_ids(texts, max_new_tokens=8) == student.generate_ids(texts, max_new_tokens=8)


def test_constrained_rows_mix_with_free_rows(student: Student, texts: list[str]) -> None:
    candidates = ["running shoes", "yoga mat", "desk lamp", "sony", "smart watch", "coffee grinder"]
    trie = student.keyword_trie(candidates, max_keywords=2)
    constraint = [trie if i % 2 else None for i in range(len(texts))]
    out = student.generate(texts, max_new_tokens=MAX_NEW, constraint=constraint)
    free = student.generate(texts, max_new_tokens=MAX_NEW)
    # Constrained rows finish first and leave the batch: the rows left decode as they would alone.
    assert out == student.generate(texts, max_new_tokens=MAX_NEW, constraint=constraint, batch_size=1)
    for i, text in enumerate(out):
        if i % 2:
            keywords = parse_keywords(text)
            assert 1 <= len(keywords) <= 2 and set(keywords) <= set(candidates)
        else:
            assert text == free[i]
    with pytest.raises(ValueError, match="constraints"):
        student.generate(texts, constraint=[trie])


def test_provider_reported(student: Student) -> None:
    assert student.provider == "CPUExecutionProvider"


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Student.load(tmp_path / "nope")


@pytest.mark.parametrize("name", [ENCODER, "tokenizer.json", "config.json"])
def test_missing_file_is_named(tiny: TinyStudent, tmp_path: Path, name: str) -> None:
    shutil.copytree(tiny.onnx_dir, tmp_path / "m")
    (tmp_path / "m" / name).unlink()
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        Student.load(tmp_path / "m", providers="CPUExecutionProvider")


def test_missing_decoders_are_named(tiny: TinyStudent, tmp_path: Path) -> None:
    shutil.copytree(tiny.onnx_dir, tmp_path / "m")
    for name in (DECODER_WITH_PAST, DECODER_MERGED):
        (tmp_path / "m" / name).unlink()
    with pytest.raises(ModelLoadError, match=DECODER_MERGED):
        Student.load(tmp_path / "m", providers="CPUExecutionProvider")


@pytest.mark.parametrize("name", [ENCODER, DECODER, "tokenizer.json", "config.json"])
def test_corrupt_file_is_named(tiny: TinyStudent, tmp_path: Path, name: str) -> None:
    shutil.copytree(tiny.onnx_dir, tmp_path / "m")
    (tmp_path / "m" / name).write_bytes(b"\x00not a model{")
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")) as info:
        Student.load(tmp_path / "m", providers="CPUExecutionProvider")
    assert isinstance(info.value, VitrineError)
