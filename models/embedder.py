"""Sentence embeddings (all-MiniLM-L6-v2) from the exported ONNX graph, without torch.

The graph (``onnx_export/embedder_export.py``) carries mean pooling and L2 normalisation, so its
``sentence_embedding`` output is the final vector. Texts are tokenised once, sorted by token length and
padded per batch to the batch's longest, so a batch of short titles never pays for one long text.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

from models.providers import create_session, ort
from streams.contracts.errors import VitrineError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
OUTPUT = "sentence_embedding"
MAX_TOKENS = 128

Vectors = npt.NDArray[np.float32]
Embed = Callable[[list[str]], Vectors]  # texts -> L2-normalised rows; Embedder.embed or CachedEmbed


class EmbedderError(VitrineError):
    """The embedder directory is missing or incomplete."""


class Embedder:
    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, *, max_tokens: int = MAX_TOKENS) -> None:
        outputs = {o.name: o for o in session.get_outputs()}
        if OUTPUT not in outputs:
            raise EmbedderError(f"the ONNX graph has no {OUTPUT!r} output (outputs: {', '.join(outputs)})")
        tokenizer.no_padding()  # padding happens per length-sorted batch in embed()
        tokenizer.enable_truncation(max_tokens)
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        self.dim: int = int(outputs[OUTPUT].shape[-1])

    @classmethod
    def load(cls, embedder_dir: Path, providers: str = "auto", *, intra_op_threads: int | None = None) -> Embedder:
        """``intra_op_threads`` defaults to all cores."""
        model, tokenizer = embedder_dir / MODEL_FILE, embedder_dir / TOKENIZER_FILE
        missing = [p.name for p in (model, tokenizer) if not p.is_file()]
        if missing:
            raise EmbedderError(
                f"{embedder_dir}: missing {', '.join(missing)}; run `vitrine export-embedder --out {embedder_dir}`"
            )
        return cls(create_session(model, providers, intra_op_threads), Tokenizer.from_file(str(tokenizer)))

    @property
    def provider(self) -> str:
        """The execution provider the session actually runs on."""
        return str(self._session.get_providers()[0])

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> Vectors:
        """L2-normalised float32 vectors ``[len(texts), dim]``, row i for ``texts[i]``."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, batch: list[Encoding]) -> Vectors:
        width = max(len(e.ids) for e in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, encoding in enumerate(batch):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (vectors,) = self._session.run([OUTPUT], feeds)
        return np.asarray(vectors, dtype=np.float32)


class CachedEmbed:
    """Embeds through an LRU cache seeded with vectors already known (the keyword vocabulary's).

    At serving time keywords always come from the vocabulary and generated themes repeat a lot, so
    most texts the quality filter asks for are never run through the model twice.
    """

    def __init__(self, embedder: Embedder, known: dict[str, Vectors] | None = None, size: int = 50_000) -> None:
        self._embedder = embedder
        self._known = known or {}
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._size = size

    def __call__(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self._known and t not in self._cache]
        if missing:
            for text, vector in zip(missing, self._embedder.embed(missing), strict=True):
                self._cache[text] = vector
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        out = np.empty((len(texts), self._embedder.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            known = self._known.get(text)
            if known is None:
                known = self._cache[text]
                self._cache.move_to_end(text)
            out[row] = known
        return out


def file_sha256(path: Path) -> str:
    """Identity of an exported model file, recorded in the embedder card and the catalog manifest."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
