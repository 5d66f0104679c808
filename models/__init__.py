"""Inference runtime: ONNX student sessions, constrained decoding, embedder, quality filter (issue 4)."""
