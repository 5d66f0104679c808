"""The optimum-onnx export of a quickly trained student decodes exactly like PyTorch (fp32, greedy)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum.exporters.onnx")

from models.context import PLACEMENTS, format_keywords, keywords_input, theme_input
from models.student import Student
from onnx_export.export import INT8_DIR, ONNX_FILES, export_onnx, parity, quantize_int8
from onnx_export.tokenizer import EOS_ID, PAD_ID, UNK_ID, to_transformers, train_tokenizer
from onnx_export.train import QUICK_SHAPE, TrainConfig, train_student

CATEGORIES = ["electronics.smartphone", "audio.headphone", "kitchen.washer", "computers.notebook", "living_room.sofa"]
BRANDS = ["samsung", "apple", "sony", "lenovo", "bosch"]


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        cat, brand, place = rng.choice(CATEGORIES), rng.choice(BRANDS), rng.choice(PLACEMENTS)
        context = f"{place.value} | view {cat} {brand} {rng.choice(['64-128', '128-256'])}"
        theme = f"{brand.title()} {cat.split('.')[-1]}s"
        out.append((theme_input(context), theme))
        out.append((keywords_input(context, theme), format_keywords([brand, cat.split(".")[-1]])))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("student")
    train = _pairs(300, seed=0)
    tok = train_tokenizer([t for pair in train for t in pair], vocab_size=200)
    torch_dir, onnx_dir = root / "torch", root / "onnx"
    train_student(
        train, to_transformers(tok), torch_dir, shape=QUICK_SHAPE, cfg=TrainConfig(steps=30, warmup=5, lr=1e-2)
    )
    export_onnx(torch_dir, onnx_dir)
    held_out = [inp for inp, _ in _pairs(24, seed=1)]
    return torch_dir, onnx_dir, held_out


def test_tokenizer_uses_t5_special_ids() -> None:
    tok = train_tokenizer(["hero | view electronics.smartphone samsung 128-256"] * 20, vocab_size=60)
    assert (tok.token_to_id("<pad>"), tok.token_to_id("</s>"), tok.token_to_id("<unk>")) == (PAD_ID, EOS_ID, UNK_ID)
    assert tok.encode("hero").ids[-1] == EOS_ID


def test_export_layout(exported: tuple[Path, Path, list[str]]) -> None:
    _, onnx_dir, _ = exported
    for name in (*ONNX_FILES, "config.json", "generation_config.json", "tokenizer.json"):
        assert (onnx_dir / name).is_file(), name
    # The runtime truncates as tokenizer.json says: that must be the input length training used.
    truncation = json.loads((onnx_dir / "tokenizer.json").read_text())["truncation"]
    assert truncation["max_length"] == TrainConfig().max_input_tokens


def test_onnx_fp32_greedy_equals_pytorch(exported: tuple[Path, Path, list[str]]) -> None:
    torch_dir, onnx_dir, held_out = exported
    result = parity(torch_dir, onnx_dir, held_out, max_new_tokens=12)
    assert result.n == len(held_out)
    assert result.identical == result.n, result.mismatches


def test_int8_variant_loads_from_its_subdirectory(exported: tuple[Path, Path, list[str]]) -> None:
    _, onnx_dir, held_out = exported
    quantize_int8(onnx_dir, onnx_dir / INT8_DIR)
    assert sorted(p.name for p in (onnx_dir / INT8_DIR).iterdir()) == sorted(ONNX_FILES)
    out = Student.load(onnx_dir / INT8_DIR, "CPUExecutionProvider").generate(held_out[:4], max_new_tokens=8)
    assert len(out) == 4
