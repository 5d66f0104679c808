"""Serving processes import without the train extra: the layering contract, checked by running it."""

from __future__ import annotations

import subprocess
import sys

# Blocks the train extra's packages as if they were not installed, then imports every serving entry point.
PROBE = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "optimum", "sentence_transformers", "onnx_export"}:
            raise ModuleNotFoundError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
import streams.worker.app, streams.generator.app, streams.generator.setup, streams.catalog.build, streams.api.app
print(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "onnx_export"}))
"""


def test_serving_imports_without_the_train_extra() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_probe_catches_a_serving_import_of_the_train_extra() -> None:
    """Control: the same probe fails when a serving module is made to import the offline package."""
    probe = PROBE.replace("import streams.worker.app,", "import onnx_export.pipeline, streams.worker.app,")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "blocked: onnx_export" in done.stderr
