"""Student decoding speed: our numpy greedy loop over ONNX Runtime vs PyTorch eager and ``generate()``.

    .venv/bin/python -m benchmarks.student_decode [--model-dir models/student] [--torch-dir var/student/torch]
    .venv/bin/python -m benchmarks.student_decode --tiny     # a tiny random T5 built on the spot

Same inputs for every method: real theme-task contexts from the dataset (``<work>/data/test.jsonl``)
when it exists, else synthetic ones. Each cell is the median of ``--runs`` timed runs after one warm-up,
strings in, token ids out (tokenisation included everywhere). "agree" is the share of rows whose ids
equal the PyTorch eager loop's. Needs the train extra (torch, transformers, optimum-onnx).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.student import Student

BATCHES = (1, 8, 32, 64)
Method = Callable[[list[str]], list[list[int]]]


def load_inputs(data: Path | None, n: int, seed: int = 0) -> tuple[list[str], str]:
    if data is not None and data.is_file():
        rows = [json.loads(line) for line in data.open() if line.strip()]
        texts = [r["input"] for r in rows if r.get("task") == "theme"]
        if texts:
            rng = np.random.default_rng(seed)
            picked = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
            return [texts[i] for i in picked], f"{len(picked)} theme contexts from {data}"
    from tests.student_fixtures import corpus

    return corpus(n=n, seed=seed)[:n], "synthetic shop-word sentences"


def timed(fn: Method, texts: list[str], runs: int) -> tuple[float, list[list[int]]]:
    out = fn(texts)  # warm-up (and the ids to compare)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(texts)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, out


def torch_methods(torch_dir: Path, tokenizer_path: Path, max_new: int) -> dict[str, Method]:
    import torch
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    from tests.student_fixtures import torch_greedy_ids

    model = T5ForConditionalGeneration.from_pretrained(torch_dir).eval()
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    config = model.config

    def tensors(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encs = tok.encode_batch(texts)
        width = max(len(e.ids) for e in encs)
        ids = torch.full((len(texts), width), config.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, e in enumerate(encs):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask[row, : len(e.ids)] = 1
        return ids, mask

    def eager(texts: list[str]) -> list[list[int]]:
        ids, mask = tensors(texts)
        return torch_greedy_ids(model, ids, mask, max_new)

    def generate(texts: list[str]) -> list[list[int]]:
        ids, mask = tensors(texts)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False, num_beams=1
            )
        return [_strip(row.tolist()[1:], config.eos_token_id, config.pad_token_id) for row in out]

    return {"pytorch eager loop": eager, "transformers generate()": generate}


def optimum_method(model_dir: Path, max_new: int) -> Method:
    import torch
    from onnxruntime import SessionOptions
    from optimum.onnxruntime import ORTModelForSeq2SeqLM
    from tokenizers import Tokenizer

    options = SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    model = ORTModelForSeq2SeqLM.from_pretrained(model_dir, session_options=options, use_cache=True)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_padding(pad_id=model.config.pad_token_id)
    config = model.config

    def run(texts: list[str]) -> list[list[int]]:
        encs = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encs])
        mask = torch.tensor([e.attention_mask for e in encs])
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False, num_beams=1)
        return [_strip(row.tolist()[1:], config.eos_token_id, config.pad_token_id) for row in out]

    return run


def _strip(ids: list[int], eos: int, pad: int) -> list[int]:
    out = []
    for token in ids:
        if token in (eos, pad):
            break
        out.append(token)
    return out


def int8_dir(model_dir: Path, scratch: Path) -> Path:
    """The export's own int8 variant when it has one, else dynamic int8 quantisation of every graph."""
    if (model_dir / "int8" / "encoder_model.onnx").is_file():
        return model_dir / "int8"
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = scratch / "int8"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"):
        quantize_dynamic(model_dir / name, out / name, weight_type=QuantType.QInt8)
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(model_dir / name, out / name)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models/student"))
    parser.add_argument("--torch-dir", type=Path, default=Path("var/student/torch"))
    parser.add_argument("--data", type=Path, default=Path("var/student/data/test.jsonl"))
    parser.add_argument("--tiny", action="store_true", help="benchmark a tiny random T5 built on the spot")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--no-optimum", action="store_true", help="skip ORTModelForSeq2SeqLM.generate()")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=DIR", help="another ONNX dir for the ORT loop"
    )
    args = parser.parse_args(argv)

    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    scratch = Path(tempfile.mkdtemp(prefix="vitrine-bench-"))
    model_dir, torch_dir = args.model_dir, args.torch_dir
    if args.tiny:
        from tests.student_fixtures import build_tiny_student

        tiny = build_tiny_student(scratch / "tiny")
        model_dir, torch_dir = tiny.onnx_dir, tiny.torch_dir
    batches = [int(b) for b in args.batches.split(",")]
    texts, source = load_inputs(None if args.tiny else args.data, max(batches))
    max_new = args.max_new_tokens

    methods: dict[str, Method] = {}
    variants = {"fp32": model_dir}
    if not args.no_int8:
        variants["int8"] = int8_dir(model_dir, scratch)
    for spec in args.variant:
        name, _, folder = spec.partition("=")
        variants[name] = Path(folder)
    for name, folder in variants.items():
        student = Student.load(folder, providers="CPUExecutionProvider", intra_op_threads=threads)

        def ort(texts: list[str], student: Student = student) -> list[list[int]]:
            return student.generate_ids(texts, max_new_tokens=max_new, batch_size=len(texts))

        methods[f"ORT numpy loop ({name})"] = ort
    methods.update(torch_methods(torch_dir, model_dir / "tokenizer.json", max_new))
    if not args.no_optimum:
        methods["optimum ORTModelForSeq2SeqLM.generate() (fp32)"] = optimum_method(model_dir, max_new)

    results: dict[tuple[str, int], tuple[float, float]] = {}
    for batch in batches:
        chunk = texts[:batch]
        reference_ms, reference = timed(methods["pytorch eager loop"], chunk, args.runs)
        for name, fn in methods.items():
            ms, ids = (reference_ms, reference) if name == "pytorch eager loop" else timed(fn, chunk, args.runs)
            agree = sum(a == b for a, b in zip(ids, reference, strict=True)) / len(chunk)
            results[(name, batch)] = (ms, agree)
            print(f"  batch {batch:>3} {name:<48} {ms:9.1f} ms  agree {agree:.0%}", flush=True)

    lengths = [len(t.split()) for t in texts]
    print()
    print(f"- date: {dt.date.today().isoformat()}; machine: {platform.machine()}, {threads} CPU threads, no GPU")
    print(f"- model: {model_dir} (torch weights: {torch_dir}); inputs: {source}, {np.mean(lengths):.0f} words mean")
    print(f"- greedy, max {max_new} new tokens, median of {args.runs} runs after a warm-up; tokenisation included")
    print()
    print("| method | batch | ms / batch | contexts/s | vs PyTorch eager | ids equal to eager |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in methods:
        for batch in batches:
            ms, agree = results[(name, batch)]
            ratio = results[("pytorch eager loop", batch)][0] / ms
            print(f"| {name} | {batch} | {ms:.1f} | {batch / ms * 1000:.0f} | {ratio:.2f}x | {agree:.0%} |")


if __name__ == "__main__":
    main()
