"""A tiny random T5 student, exported like the real one, for tests and the decode benchmark.

Random weights are the point: an untrained model has no preference for well-formed output, so it is the
harshest adversary a decoding constraint can face. Building it needs the ``train`` extra (torch, optimum-onnx).
"""

from __future__ import annotations

import functools
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

WORDS = [
    "wireless",
    "headphones",
    "running",
    "shoes",
    "kitchen",
    "knife",
    "set",
    "coffee",
    "grinder",
    "garden",
    "hose",
    "leather",
    "wallet",
    "yoga",
    "mat",
    "smart",
    "watch",
    "phone",
    "case",
    "gaming",
    "mouse",
    "desk",
    "lamp",
    "winter",
    "jacket",
    "baby",
    "stroller",
    "dog",
    "bed",
    "office",
    "chair",
    "water",
    "bottle",
    "electronics",
    "audio",
    "headphone",
    "apparel",
    "shoes",
    "kitchen",
    "tools",
    "home",
    "lighting",
    "sports",
    "fitness",
    "samsung",
    "apple",
    "xiaomi",
    "sony",
    "nike",
    "adidas",
    "bosch",
    "philips",
    "theme",
    "keywords",
    "session",
    "viewed",
    "carted",
    "bought",
    "placement",
    "hero",
    "related",
    "deals",
]


@dataclass(frozen=True)
class TinyStudent:
    """Paths of one tiny student: the ONNX export (``onnx_dir``) and the PyTorch weights it came from."""

    onnx_dir: Path
    torch_dir: Path


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Short pseudo-sentences from a shop vocabulary, enough to train a small tokenizer."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choices(WORDS, k=rng.randint(3, 14))) for _ in range(n)]
    lines += [" | ".join(rng.sample(WORDS, k=3)) for _ in range(n // 4)]
    return lines


def train_tokenizer(lines: list[str], vocab_size: int = 300):  # type: ignore[no-untyped-def]
    """A T5-style unigram tokenizer (Metaspace, ``</s>`` appended) with pad=0, eos=1, unk=2."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing

    tok = SentencePieceUnigramTokenizer()
    tok.train_from_iterator(
        lines, vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok


def build_tiny_student(out_dir: Path, *, seed: int = 0) -> TinyStudent:
    """Train a tokenizer, random-init a 2+2 layer T5, export it with optimum-onnx (with past) into out_dir."""
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import T5Config, T5ForConditionalGeneration

    tok = train_tokenizer(corpus(seed=seed))
    torch_dir = out_dir / "torch"
    onnx_dir = out_dir / "onnx"
    torch_dir.mkdir(parents=True, exist_ok=True)
    config = T5Config(
        vocab_size=tok.get_vocab_size(),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        feed_forward_proj="relu",
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # random init gives near-uniform logits; sharpen them so greedy ties are vanishingly rare
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(torch_dir)
    tok.save(str(torch_dir / "tokenizer.json"))
    main_export(str(torch_dir), onnx_dir, task="text2text-generation-with-past", do_validation=False)
    tok.save(str(onnx_dir / "tokenizer.json"))
    return TinyStudent(onnx_dir=onnx_dir, torch_dir=torch_dir)


@functools.cache
def tiny_student() -> TinyStudent:
    """One tiny student per test process (built in a temp dir the first time it is asked for)."""
    return build_tiny_student(Path(tempfile.mkdtemp(prefix="vitrine-tiny-student-")))


def torch_greedy_ids(model, input_ids, attention_mask, max_new_tokens: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """Greedy decoding in PyTorch eager with the model's own KV cache, written like the ONNX loop (no
    ``generate()``): encoder once, one decoder step per token, stop when every row has written EOS."""
    import torch

    config = model.config
    batch = input_ids.shape[0]
    rows: list[list[int]] = [[] for _ in range(batch)]
    with torch.inference_mode():
        encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        tokens = torch.full((batch, 1), config.decoder_start_token_id, dtype=torch.long)
        finished = torch.zeros(batch, dtype=torch.bool)
        past = None
        for _ in range(max_new_tokens):
            step = model(
                encoder_outputs=encoder_outputs,
                attention_mask=attention_mask,
                decoder_input_ids=tokens,
                past_key_values=past,
                use_cache=True,
            )
            past = step.past_key_values
            chosen = step.logits[:, -1].argmax(-1)
            for row in torch.nonzero(~finished & (chosen != config.eos_token_id)).flatten().tolist():
                rows[row].append(int(chosen[row]))
            finished |= chosen == config.eos_token_id
            if bool(finished.all()):
                break
            tokens = chosen.masked_fill(finished, config.pad_token_id)[:, None]
    return rows


def torch_greedy(model, tokenizer, inputs: list[str], max_new_tokens: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """Reference ids, one input at a time (no padding anywhere)."""
    import torch

    out: list[list[int]] = []
    for text in inputs:
        ids = torch.tensor([tokenizer.encode(text).ids])
        out.extend(torch_greedy_ids(model, ids, torch.ones_like(ids), max_new_tokens))
    return out


def require_tiny_student() -> TinyStudent:
    """The tiny student for a test; skips where the train extra (torch, optimum-onnx) is not installed."""
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("optimum.exporters.onnx")
    return tiny_student()
