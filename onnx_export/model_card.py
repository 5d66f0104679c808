"""model_card.json + MODEL_CARD.md: what the student is, how it was made, how good it is, file hashes.

Written last, over the final directory, so every hash is of the file that ships.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from models.context import FORMAT_VERSION, KEYWORDS_PREFIX, THEME_PREFIX
from models.embedder import file_sha256

CARD_JSON, CARD_MD = "model_card.json", "MODEL_CARD.md"
PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime-gpu", "onnx", "tokenizers", "numpy")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def file_table(model_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(model_dir)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name not in (CARD_JSON, CARD_MD)
    }


def write_model_card(model_dir: Path, **sections: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "model": "vitrine-student (T5 encoder-decoder, trained from scratch on teacher labels)",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "context_format": {"version": FORMAT_VERSION, "theme_prefix": THEME_PREFIX, "keywords_prefix": KEYWORDS_PREFIX},
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        **sections,
        "files": file_table(model_dir),
    }
    (model_dir / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    (model_dir / CARD_MD).write_text(_markdown(card))
    return card


def _markdown(card: dict[str, Any]) -> str:
    train, data = card.get("train", {}), card.get("data", {})
    lines = [
        "# Vitrine student model",
        "",
        f"{card['model']}. Context format v{card['context_format']['version']} (`models/context.py`).",
        "",
        "## How it was made",
        "",
        f"    {card.get('command', '')}",
        "",
        f"- parameters: {train.get('params', '?'):,}; shape: {json.dumps(train.get('shape', {}))}",
        f"- training: {train.get('steps')} steps, {train.get('seconds')} s on CPU, "
        f"final loss {train.get('final_loss')}",
        f"- data: {data.get('requests')} regeneration requests, {data.get('train_examples')} train / "
        f"{data.get('test_examples')} test examples; per shop, test = the latest {data.get('test_fraction')} of its "
        "events (`vitrine eval` scores a shop only from there on):",
        *[
            f"  - {s['log']} (catalog {s['catalog']}): {s['requests']} requests kept (train and test; "
            f"{s['train_requests_available']} training requests available, "
            f"{s.get('train_requests_with_outcomes', 0)} kept with outcomes), {s['train_examples']} train / "
            f"{s['test_examples']} test "
            f"examples, test from ts {s['test_from_ts']}; teacher {s['teacher']}"
            for s in data.get("sources", [])
        ],
        f"- median context length: {data.get('median_context_tokens')} tokens",
        "",
        "## Quality on held-out contexts (student vs catalog teacher)",
        "",
        "| variant | theme exact | theme token F1 | keyword Jaccard (free) | in vocabulary (free) "
        "| keyword Jaccard (constrained) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in card.get("metrics", {}).items():
        s = m["summary"]
        lines.append(
            f"| {name} | {s['theme_exact']:.3f} | {s['theme_token_f1']:.3f} | {s['keywords_jaccard_free']:.3f} "
            f"| {s['keywords_in_vocabulary_free']:.3f} | {s['keywords_jaccard_constrained']:.3f} |"
        )
    par = card.get("parity", {})
    lines += [
        "",
        f"Parity: PyTorch greedy vs ONNX fp32 greedy token-identical on {par.get('identical')}/{par.get('n')} "
        "fixed held-out inputs.",
        "",
        "## Versions",
        "",
        *[f"- {k}: {v}" for k, v in card["versions"].items()],
        "",
        "## Files",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        *[f"| {name} | {f['bytes']:,} | `{f['sha256']}` |" for name, f in card["files"].items()],
        "",
    ]
    return "\n".join(lines)
