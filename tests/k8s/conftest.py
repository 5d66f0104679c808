"""Fixtures for the offline Kubernetes checks: render the overlays with a pinned kustomize, validate objects.

Why here and not in a helper module: fixtures work under every pytest import mode, so the helpers
below reach the tests as fixtures (``render``, ``schema_errors``) rather than through imports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VALIDATE_SH = REPO / "k8s" / "validate.sh"
OVERLAYS = ("cpu", "gpu")
KEDA_SCHEMA_DIR = Path(__file__).resolve().parent / "schemas" / "keda-v2.18.0"
PROMETHEUS_OPERATOR_SCHEMA_DIR = Path(__file__).resolve().parent / "schemas" / "prometheus-operator-v0.86.1"
CRD_SCHEMA_DIRS = (KEDA_SCHEMA_DIR, PROMETHEUS_OPERATOR_SCHEMA_DIR)

Manifest = dict[str, Any]


class RenderError(RuntimeError):
    """kustomize refused the kustomization (missing file, bad patch, invalid YAML...)."""


def _kustomize_available() -> bool:
    cached = list((REPO / ".cache" / "bin").glob("kustomize-*"))
    return bool(cached) or shutil.which("go") is not None


def render(directory: Path) -> list[Manifest]:
    """``kustomize build directory`` via k8s/validate.sh (which installs the pinned kustomize if missing)."""
    if not _kustomize_available():
        pytest.skip("neither a cached kustomize (.cache/bin) nor Go to install it")
    proc = subprocess.run(
        ["bash", str(VALIDATE_SH), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip() or f"kustomize exited with {proc.returncode}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@cache
def _crd_schema(kind: str, api_version: str) -> dict[str, Any]:
    group, _, version = api_version.partition("/")
    name = f"{kind.lower()}-{group.split('.')[0]}-{version}.json"
    path = next((d / name for d in CRD_SCHEMA_DIRS if (d / name).exists()), None)
    if path is None:
        raise FileNotFoundError(f"no schema for {api_version} {kind} (looked for {name})")
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def _describe(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "<root>"
    return f"{where}: {err.message}"


def schema_errors(obj: Manifest, k8s_version: str) -> list[str]:
    """Schema violations of one object (empty list = valid); an object without a known schema is an error."""
    kind, api_version = obj.get("kind", "?"), obj.get("apiVersion", "?")
    name = obj.get("metadata", {}).get("name", "?")
    label = f"{kind}/{name}"
    if api_version.split("/")[0] in ("keda.sh", "monitoring.coreos.com"):
        try:
            schema = _crd_schema(kind, api_version)
        except FileNotFoundError as exc:
            return [f"{label}: {exc}"]
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{label}: {_describe(e)}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{label} (k8s {exc.version}): {_describe(exc)}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{label}: {exc.message}"]
    return []


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Both overlays rendered once per session."""
    return {name: render(REPO / "k8s" / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over the overlays."""
    return str(request.param)


@pytest.fixture
def docs(rendered: dict[str, list[Manifest]], overlay: str) -> list[Manifest]:
    """The rendered objects of the current overlay."""
    return rendered[overlay]


@pytest.fixture(scope="session")
def render_dir() -> Callable[[Path], list[Manifest]]:
    """The render helper, for tests that build their own (broken) kustomizations."""
    return render


@pytest.fixture(scope="session")
def validate_schema() -> Callable[[Manifest, str], list[str]]:
    """The schema validator, for tests that feed it their own objects."""
    return schema_errors


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of ``kind`` named ``name`` (fails the test if absent)."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="session")
def get() -> Callable[[list[Manifest], str, str], Manifest]:
    """The lookup helper ``find`` as a fixture."""
    return find
