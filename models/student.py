"""The distilled seq2seq student on ONNX Runtime: greedy decoding with a KV cache, no torch.

Why our own loop rather than ``ORTModelForSeq2SeqLM.generate()``: on this workload (short outputs, many
sessions per micro-batch) a plain numpy greedy loop over the exported encoder/decoder ran about 2x
PyTorch eager and 15-25% faster than optimum's generate (which also needs torch), see BENCHMARKS.md
"Student decoding". It also lets the keyword constraint mask logits row by row without a
``LogitsProcessor`` round-trip through torch tensors.

Layout read (optimum-onnx seq2seq export with past): ``encoder_model.onnx`` plus either
``decoder_model.onnx`` + ``decoder_with_past_model.onnx`` (preferred: the first step needs no dummy
past) or ``decoder_model_merged.onnx``; ``config.json``; ``tokenizer.json``. A variant sub-directory
(``int8/``, ``fp16/``) may carry only some ONNX files: the rest come from its parent model dir.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from models.constrained import KeywordTokenizer, KeywordTrie, KeywordWalk
from models.providers import ort, resolve_providers, session_options
from streams.contracts.errors import VitrineError

log = logging.getLogger(__name__)

ENCODER = "encoder_model.onnx"
DECODER = "decoder_model.onnx"
DECODER_WITH_PAST = "decoder_with_past_model.onnx"
DECODER_MERGED = "decoder_model_merged.onnx"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
MAX_INPUT_TOKENS = 256

Ids = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]
Past = dict[str, Floats]
Constraint = KeywordTrie | None | Sequence[KeywordTrie | None]


class ModelLoadError(VitrineError):
    """The student model directory is missing a file or holds one that cannot be loaded."""


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    pad: int
    eos: int
    decoder_start: int


def _find(model_dir: Path, name: str) -> Path | None:
    for folder in (model_dir, model_dir.parent):
        if (folder / name).is_file():
            if folder != model_dir and not (folder / CONFIG).is_file():
                return None  # only a real parent model dir may fill in for a variant sub-dir
            return folder / name
    return None


def _session(path: Path, providers: list[str], intra_op_threads: int | None) -> ort.InferenceSession:
    options = session_options(intra_op_threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises bare RuntimeError/Fail subclasses
        raise ModelLoadError(f"{path}: cannot load ONNX model ({exc})") from exc


class _Decoder(Protocol):
    def first(self, start: Ids, hidden: Floats, mask: Ids) -> tuple[Floats, Past]: ...
    def next(self, tokens: Ids, hidden: Floats, mask: Ids, past: Past) -> tuple[Floats, Past]: ...


def _past_name(present: str) -> str:
    return present.replace("present.", "past_key_values.", 1)


class _SplitDecoder:
    """decoder_model for step one (it also yields the encoder's cross-attention cache), then with_past."""

    def __init__(self, first: ort.InferenceSession, with_past: ort.InferenceSession) -> None:
        self._first = first
        self._with_past = with_past
        self._first_out = [o.name for o in first.get_outputs()]
        self._past_out = [o.name for o in with_past.get_outputs()]
        self._past_needs_hidden = "encoder_hidden_states" in {i.name for i in with_past.get_inputs()}

    def first(self, start: Ids, hidden: Floats, mask: Ids) -> tuple[Floats, Past]:
        outs = self._first.run(
            self._first_out, {"input_ids": start, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        )
        return outs[0], {_past_name(n): v for n, v in zip(self._first_out[1:], outs[1:], strict=True)}

    def next(self, tokens: Ids, hidden: Floats, mask: Ids, past: Past) -> tuple[Floats, Past]:
        feed: dict[str, np.ndarray] = {"input_ids": tokens, "encoder_attention_mask": mask, **past}
        if self._past_needs_hidden:
            feed["encoder_hidden_states"] = hidden
        outs = self._with_past.run(self._past_out, feed)
        # with_past returns only the self-attention cache; the cross-attention cache stays as it was.
        updated = dict(past)
        updated.update({_past_name(n): v for n, v in zip(self._past_out[1:], outs[1:], strict=True)})
        return outs[0], updated


class _MergedDecoder:
    """decoder_model_merged: one graph, ``use_cache_branch`` picks the no-past or the with-past subgraph."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._out = [o.name for o in session.get_outputs()]
        self._past_inputs = [(i.name, i.shape) for i in session.get_inputs() if i.name.startswith("past_key_values")]

    def first(self, start: Ids, hidden: Floats, mask: Ids) -> tuple[Floats, Past]:
        batch = start.shape[0]
        empty = {name: np.zeros((batch, shape[1], 0, shape[3]), dtype=np.float32) for name, shape in self._past_inputs}
        return self._run(start, hidden, mask, empty, use_cache=False)

    def next(self, tokens: Ids, hidden: Floats, mask: Ids, past: Past) -> tuple[Floats, Past]:
        logits, present = self._run(tokens, hidden, mask, past, use_cache=True)
        updated = dict(past)
        updated.update({k: v for k, v in present.items() if ".decoder." in k})
        return logits, updated

    def _run(self, tokens: Ids, hidden: Floats, mask: Ids, past: Past, *, use_cache: bool) -> tuple[Floats, Past]:
        feed: dict[str, np.ndarray] = {
            "input_ids": tokens,
            "encoder_hidden_states": hidden,
            "encoder_attention_mask": mask,
            "use_cache_branch": np.array([use_cache]),
            **past,
        }
        outs = self._session.run(self._out, feed)
        return outs[0], {_past_name(n): v for n, v in zip(self._out[1:], outs[1:], strict=True)}


class Student:
    """Greedy seq2seq generation over ONNX sessions; batches inputs of similar length together."""

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: _Decoder,
        tokenizer: Tokenizer,
        special: SpecialTokens,
        *,
        max_input_tokens: int = MAX_INPUT_TOKENS,
    ) -> None:
        tokenizer.no_padding()  # rows are padded per length-sorted batch in _decode_batch
        if tokenizer.truncation is None:  # the export's own truncation is what training saw: keep it
            tokenizer.enable_truncation(max_input_tokens)
        self._encoder = encoder
        self._decoder = decoder
        self._tokenizer = tokenizer
        self.special = special
        self.keyword_tokens = KeywordTokenizer(tokenizer, special.eos)

    @classmethod
    def load(cls, model_dir: Path, providers: str = "auto", intra_op_threads: int | None = None) -> Student:
        """Open the export in ``model_dir``; raises ``ModelLoadError`` naming the missing or broken file."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelLoadError(f"{model_dir}: student model directory does not exist")

        def need(name: str) -> Path:
            path = _find(model_dir, name)
            if path is None:
                raise ModelLoadError(f"{model_dir}: missing {name}")
            return path

        config_path, tokenizer_path, encoder_path = need(CONFIG), need(TOKENIZER), need(ENCODER)
        try:
            config = json.loads(config_path.read_text())
            special = SpecialTokens(
                pad=int(config["pad_token_id"]),
                eos=int(config["eos_token_id"]),
                decoder_start=int(config.get("decoder_start_token_id", config["pad_token_id"])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{config_path}: not a seq2seq config with pad/eos token ids ({exc})") from exc
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"{tokenizer_path}: cannot load tokenizer ({exc})") from exc
        wanted = resolve_providers(providers)
        encoder = _session(encoder_path, wanted, intra_op_threads)
        first, with_past = _find(model_dir, DECODER), _find(model_dir, DECODER_WITH_PAST)
        merged = _find(model_dir, DECODER_MERGED)
        decoder: _Decoder
        if first is not None and with_past is not None:
            decoder = _SplitDecoder(
                _session(first, wanted, intra_op_threads), _session(with_past, wanted, intra_op_threads)
            )
        elif merged is not None:
            decoder = _MergedDecoder(_session(merged, wanted, intra_op_threads))
        else:
            raise ModelLoadError(f"{model_dir}: missing {DECODER} + {DECODER_WITH_PAST} (or {DECODER_MERGED})")
        student = cls(encoder, decoder, tokenizer, special)
        log.info("student %s loaded on %s", model_dir, student.provider)
        return student

    @property
    def provider(self) -> str:
        """The execution provider the encoder actually runs on (CPU when CUDA could not start)."""
        return str(self._encoder.get_providers()[0])

    # --- keyword constraint ------------------------------------------------------------

    def keyword_trie(self, candidates: Sequence[str], max_keywords: int = 3) -> KeywordTrie:
        """The constraint for one placement: its candidates, tokenised with this model's tokenizer."""
        return KeywordTrie.build(candidates, self.keyword_tokens, max_keywords)

    # --- generation --------------------------------------------------------------------

    def generate(
        self, inputs: Sequence[str], *, max_new_tokens: int = 24, constraint: Constraint = None, batch_size: int = 32
    ) -> list[str]:
        """One output text per input. Rows with a ``KeywordTrie`` give ``kw1 | kw2`` from their candidates."""
        walks = self._walks(constraint, len(inputs))
        ids = self._generate(inputs, max_new_tokens, walks, batch_size)
        return [
            walk.text() if walk is not None else self._tokenizer.decode(row, skip_special_tokens=True)
            for row, walk in zip(ids, walks, strict=True)
        ]

    def generate_ids(
        self, inputs: Sequence[str], *, max_new_tokens: int = 24, constraint: Constraint = None, batch_size: int = 32
    ) -> list[list[int]]:
        """Generated token ids per input, without the start token, EOS or padding."""
        return self._generate(inputs, max_new_tokens, self._walks(constraint, len(inputs)), batch_size)

    @staticmethod
    def _walks(constraint: Constraint, n: int) -> list[KeywordWalk | None]:
        if constraint is None or isinstance(constraint, KeywordTrie):
            return [None if constraint is None else constraint.start() for _ in range(n)]
        if len(constraint) != n:
            raise ValueError(f"{len(constraint)} constraints for {n} inputs")
        return [None if trie is None else trie.start() for trie in constraint]

    def _generate(
        self, inputs: Sequence[str], max_new_tokens: int, walks: list[KeywordWalk | None], batch_size: int
    ) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(inputs))
        # Sorting by token length keeps padding (which the encoder pays for in full) to a minimum.
        order = sorted(range(len(inputs)), key=lambda i: len(encodings[i].ids))
        out: list[list[int]] = [[] for _ in inputs]
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            results = self._decode_batch([encodings[i].ids for i in rows], [walks[i] for i in rows], max_new_tokens)
            for i, result in zip(rows, results, strict=True):
                out[i] = result
        return out

    def _decode_batch(
        self, token_ids: list[list[int]], walks: list[KeywordWalk | None], max_new_tokens: int
    ) -> list[list[int]]:
        batch, width = len(token_ids), max(len(t) for t in token_ids)
        ids = np.full((batch, width), self.special.pad, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        for row, row_ids in enumerate(token_ids):
            ids[row, : len(row_ids)] = row_ids
            mask[row, : len(row_ids)] = 1
        (hidden,) = self._encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        tokens = np.full((batch, 1), self.special.decoder_start, dtype=np.int64)
        generated: list[list[int]] = [[] for _ in range(batch)]
        live = np.arange(batch)  # the batch rows still decoding, in the order of the arrays below
        logits, past = self._decoder.first(tokens, hidden, mask)
        for step in range(max_new_tokens):
            scores = logits[:, -1, :]
            chosen = scores.argmax(axis=-1)
            for at, row in enumerate(live.tolist()):
                walk = walks[row]
                if walk is not None:
                    allowed = walk.allowed()
                    chosen[at] = allowed[int(scores[at, allowed].argmax())]
                    walk.advance(int(chosen[at]))
            going = chosen != self.special.eos
            for at in np.flatnonzero(going).tolist():
                generated[live[at]].append(int(chosen[at]))
            if not going.any() or step == max_new_tokens - 1:
                break
            if not going.all():
                # Finished rows leave the batch: every later step runs (and copies its cache) for live rows only.
                live, chosen, hidden, mask = live[going], chosen[going], hidden[going], mask[going]
                past = {name: value[going] for name, value in past.items()}
            tokens = chosen.reshape(len(live), 1).astype(np.int64)
            logits, past = self._decoder.next(tokens, hidden, mask, past)
        return generated
