"""Offline path: dataset, teachers, tokenizer, student training, optimum-onnx export (issue 4)."""
