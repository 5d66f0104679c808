"""Train the small T5 student from scratch (or continue a local checkpoint) on teacher labels.

Both tasks are mixed in one stream of (input, target) pairs; the task prefix tells them apart.
Batches are built from inputs of similar length (padding is most of the cost on CPU), the
budget is a fixed number of steps so a run takes the same time every time, and seeds are fixed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import GenerationConfig, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from onnx_export.tokenizer import EOS_ID, PAD_ID

MAX_NEW_TOKENS = 32


@dataclass(frozen=True, slots=True)
class StudentShape:
    d_model: int = 160
    d_ff: int = 640
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    d_kv: int = 40
    dropout_rate: float = 0.1


QUICK_SHAPE = StudentShape(d_model=64, d_ff=128, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=32)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 60
    weight_decay: float = 0.01
    max_input_tokens: int = 96
    max_target_tokens: int = 32
    seed: int = 13
    # One thread: on a CPU shared with other jobs, two threads ran a step 5x slower than one (sync stalls).
    threads: int = 1


@dataclass(frozen=True, slots=True)
class TrainResult:
    params: int
    steps: int
    seconds: float
    final_loss: float
    shape: dict[str, float]
    config: dict[str, float]


def t5_config(shape: StudentShape, vocab_size: int) -> T5Config:
    return T5Config(
        vocab_size=vocab_size,
        d_model=shape.d_model,
        d_ff=shape.d_ff,
        d_kv=shape.d_kv,
        num_layers=shape.num_layers,
        num_decoder_layers=shape.num_decoder_layers,
        num_heads=shape.num_heads,
        dropout_rate=shape.dropout_rate,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=PAD_ID,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Endless epochs of length-bucketed batches: shuffle, sort within windows of 50 batches, shuffle batches."""
    window = batch_size * 50
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        rng.shuffle(batches)
        yield from batches


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_student(
    pairs: Sequence[tuple[str, str]],
    tokenizer: PreTrainedTokenizerFast,
    out_dir: Path,
    *,
    shape: StudentShape = StudentShape(),
    cfg: TrainConfig = TrainConfig(),
    init_from: Path | None = None,
) -> TrainResult:
    """Train and save safetensors, config, generation config and tokenizer to ``out_dir``."""
    if not pairs:
        raise ValueError("no training pairs")
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    if init_from is not None:
        model = T5ForConditionalGeneration.from_pretrained(init_from)
    else:
        model = T5ForConditionalGeneration(t5_config(shape, len(tokenizer)))
    model.train()
    enc = tokenizer([p[0] for p in pairs], truncation=True, max_length=cfg.max_input_tokens)["input_ids"]
    dec = tokenizer([p[1] for p in pairs], truncation=True, max_length=cfg.max_target_tokens)["input_ids"]
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: _lr_factor(s, cfg))
    batches = _batches([len(x) for x in enc], cfg.batch_size, random.Random(cfg.seed))
    started = time.perf_counter()
    ema = float("nan")
    bar = tqdm(range(cfg.steps), desc="train", unit="step", mininterval=5.0)
    for _ in bar:
        idx = next(batches)
        inputs = tokenizer.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
        labels = tokenizer.pad({"input_ids": [dec[i] for i in idx]}, return_tensors="pt")["input_ids"]
        labels[labels == PAD_ID] = -100
        loss = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        value = float(loss.detach())
        ema = value if math.isnan(ema) else 0.98 * ema + 0.02 * value
        bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
    seconds = time.perf_counter() - started
    model.eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=PAD_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, max_new_tokens=MAX_NEW_TOKENS
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    # Tokenising above left the target length as the backend's truncation, and tokenizer.json keeps it (the
    # serving Student honours it): save the input length training used instead.
    tokenizer.backend_tokenizer.enable_truncation(cfg.max_input_tokens)
    tokenizer.save_pretrained(out_dir)
    return TrainResult(
        params=sum(p.numel() for p in model.parameters()),
        steps=cfg.steps,
        seconds=round(seconds, 1),
        final_loss=round(ema, 4),
        shape=asdict(shape),
        config=asdict(cfg),
    )
