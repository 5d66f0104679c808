"""One ONNX Runtime per environment, and a one-line answer when there is none or two."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from models import providers

NO_RUNTIME = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "onnxruntime":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.exit(__import__("streams.cli", fromlist=["main"]).main(["generator"]))
"""


def test_without_a_runtime_the_cli_names_the_extras_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", NO_RUNTIME], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vitrine: error: no ONNX Runtime installed")
    for extra in ("vitrine[cpu]", "vitrine[cuda12]", "vitrine[cuda13]"):
        assert extra in lines[0]


def test_two_runtimes_in_one_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: "1.0")
    assert providers.installed_runtimes() == ["onnxruntime", "onnxruntime-gpu"]
    with pytest.raises(providers.RuntimeMissing, match="both onnxruntime and onnxruntime-gpu are installed"):
        providers._check_one_runtime()


def test_this_environment_has_exactly_one_runtime() -> None:
    assert len(providers.installed_runtimes()) == 1
