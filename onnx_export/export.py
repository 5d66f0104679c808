"""Export the trained student with optimum-onnx (encoder + decoder + decoder-with-past), then derive the
int8 (dynamic quantisation, CPU) and fp16 (GPU) variants, and check ONNX against PyTorch token for token.

Layout (notes/contracts.md): ``<dir>/encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx,
config.json, generation_config.json, tokenizer.json``; ``<dir>/int8/`` and ``<dir>/fp16/`` hold only their
ONNX files, the runtime takes config and tokenizer from the parent. The merged decoder is not written:
the runtime prefers the split pair, and the merged graph would add the decoder's weights a third time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.float16 import convert_float_to_float16
from optimum.exporters.onnx import main_export
from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration

from models.student import DECODER, DECODER_WITH_PAST, ENCODER, Student
from onnx_export.tokenizer import TOKENIZER_FILE

ONNX_FILES = (ENCODER, DECODER, DECODER_WITH_PAST)
KEEP_FILES = ("config.json", "generation_config.json", TOKENIZER_FILE)
TASK = "text2text-generation-with-past"
INT8_DIR, FP16_DIR = "int8", "fp16"


def export_onnx(torch_dir: Path, out_dir: Path) -> list[Path]:
    """optimum-onnx export of ``torch_dir`` into ``out_dir`` (replacing the ONNX files and configs there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="student-export-") as tmp:
        main_export(
            str(torch_dir),
            tmp,
            task=TASK,
            do_validation=False,  # parity() below checks whole greedy outputs, a stricter test
            no_post_process=True,  # no merged decoder (see module docstring)
            local_files_only=True,
        )
        written = []
        for name in (*ONNX_FILES, *KEEP_FILES):
            src = Path(tmp) / name
            if not src.is_file():
                src = torch_dir / name
            shutil.copyfile(src, out_dir / name)
            written.append(out_dir / name)
    return written


def quantize_int8(model_dir: Path, out_dir: Path, files: Sequence[str] = ONNX_FILES) -> list[Path]:
    """Dynamic int8 (weights int8, activations quantised at run time): no calibration data needed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in files:
        quantize_dynamic(model_dir / name, out_dir / name, weight_type=QuantType.QInt8)
        written.append(out_dir / name)
    return written


def convert_fp16(model_dir: Path, out_dir: Path, files: Sequence[str] = ONNX_FILES) -> list[Path]:
    """fp16 weights and compute for GPUs; inputs and outputs stay float32 so the runtime feeds both alike."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in files:
        model = convert_float_to_float16(onnx.load(str(model_dir / name)), keep_io_types=True)
        onnx.save(model, str(out_dir / name))
        written.append(out_dir / name)
    return written


@torch.inference_mode()
def torch_greedy_ids(
    torch_dir: Path, inputs: Sequence[str], max_new_tokens: int, batch_size: int = 32
) -> list[list[int]]:
    """PyTorch greedy token ids per input, without the start token, EOS or padding."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(torch_dir)
    model = T5ForConditionalGeneration.from_pretrained(torch_dir).eval()
    special = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    truncation = tokenizer.backend_tokenizer.truncation  # what tokenizer.json says, as the ONNX runtime applies it
    limit = {"truncation": True, "max_length": truncation["max_length"]} if truncation else {}
    out: list[list[int]] = []
    for start in range(0, len(inputs), batch_size):
        batch = tokenizer(list(inputs[start : start + batch_size]), return_tensors="pt", padding=True, **limit)
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        for row in ids.tolist():
            tokens = row[1:]
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
            out.append([t for t in tokens if t not in special])
    return out


@dataclass(frozen=True, slots=True)
class Mismatch:
    input: str
    torch: list[int]
    onnx: list[int]


@dataclass(frozen=True, slots=True)
class Parity:
    n: int
    identical: int
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.identical / self.n if self.n else 1.0


def parity(torch_dir: Path, onnx_dir: Path, inputs: Sequence[str], max_new_tokens: int = 24) -> Parity:
    """Greedy decoding in PyTorch and in ONNX Runtime (the serving ``Student``) must give the same tokens."""
    reference = torch_greedy_ids(torch_dir, inputs, max_new_tokens)
    student = Student.load(onnx_dir, "CPUExecutionProvider")
    got = student.generate_ids(inputs, max_new_tokens=max_new_tokens)
    bad = [Mismatch(text, ref, ids) for text, ref, ids in zip(inputs, reference, got, strict=True) if ref != ids]
    return Parity(len(inputs), len(inputs) - len(bad), bad[:5])
