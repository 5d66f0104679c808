"""The runtime embedder: the ONNX export agrees with sentence-transformers, and its vectors make sense."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.embedder import Embedder, EmbedderError
from models.providers import CPU, ProviderError, resolve_providers
from onnx_export.embedder_export import MIN_COSINE, check_parity


@pytest.fixture(scope="module")
def embedder(embedder_dir: Path) -> Embedder:
    return Embedder.load(embedder_dir, CPU, intra_op_threads=1)


def test_onnx_matches_sentence_transformers(embedder_dir: Path) -> None:
    texts = ["samsung smartphone, electronics", "Pink Cherry Lights", "x", "a " * 60 + "very long product text"]
    parity = check_parity(embedder_dir, texts)
    assert parity.min_cosine >= MIN_COSINE
    assert parity.dim == 384


def test_vectors_are_unit_length_in_input_order(embedder: Embedder) -> None:
    texts = ["a much longer description of a wooden garden bench with cushions", "mug", "red lamp", "mug"]
    vectors = embedder.embed(texts, batch_size=2)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(vectors, one_by_one, atol=1e-5)  # sorting by length and padding change nothing
    assert np.allclose(vectors[1], vectors[3], atol=1e-6)


def test_empty_input(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_similar_texts_are_near(embedder: Embedder) -> None:
    query, phone, kettle = embedder.embed(
        ["samsung smartphone", "samsung galaxy phone, electronics", "electric kettle"]
    )
    assert float(query @ phone) > float(query @ kettle) + 0.2


def test_provider_is_reported(embedder: Embedder) -> None:
    assert embedder.provider == CPU


def test_provider_resolution() -> None:
    assert resolve_providers(CPU) == [CPU]
    assert resolve_providers("auto")[-1] == CPU
    with pytest.raises(ProviderError, match="unknown NoSuchExecutionProvider"):
        resolve_providers("NoSuchExecutionProvider")
    with pytest.raises(ProviderError, match="empty"):
        resolve_providers(" , ")


def test_missing_embedder_dir_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="vitrine export-embedder"):
        Embedder.load(tmp_path)
