"""The environment the manifests give each container against what ``streams.runtime.settings.Settings`` reads.

Why: pydantic-settings ignores unknown variables (``extra="ignore"``), so a misspelt or stale
``VITRINE_*`` name in a manifest would be silently dropped and the worker would run on a default.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from pydantic import AliasChoices, AliasPath

from models.providers import ort, resolve_providers
from streams.runtime.settings import FIELDS, Settings
from streams.worker.app import rocksdb_memory_bound

REPO = Path(__file__).resolve().parents[2]
Manifest = dict[str, Any]
Get = Callable[[list[Manifest], str, str], Manifest]
PREFIX = "VITRINE_"
KAFKA_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"
SECRET_PLACEHOLDER = "from-a-secret"
# Subcommands that connect to Kafka (``vitrine catalog`` talks to Qdrant only).
KAFKA_COMMANDS = {"worker", "generator", "topics"}
# What the worker process itself may take besides RocksDB (the soak run's peak RSS is well below: BENCHMARKS.md).
PYTHON_RESERVE_BYTES = 384 * 1024**2


def settings_env_names() -> dict[str, str]:
    """Environment variable name -> Settings field, as pydantic-settings resolves them."""
    names: dict[str, str] = {}
    for field_name, field in FIELDS.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            choices: list[str] = [alias]
        elif isinstance(alias, AliasChoices):
            choices = [c for c in alias.choices if isinstance(c, str)]
        elif isinstance(alias, AliasPath) or alias is None:
            choices = [PREFIX + field_name]
        else:  # pragma: no cover - a new alias kind must be handled explicitly
            raise TypeError(f"unhandled alias {alias!r} on {field_name}")
        for choice in choices:
            names[choice.upper()] = field_name
    return names


def required_groups() -> list[set[str]]:
    """For each required setting, the names any of which satisfies it (Kafka servers: always required)."""
    names = settings_env_names()
    required = {f for f, info in FIELDS.items() if info.is_required()} | {"kafka_bootstrap_servers"}
    return [{env for env, field in names.items() if field == f} for f in sorted(required)]


def container_env(container: dict[str, Any], docs: list[Manifest]) -> dict[str, str]:
    """Every variable the container gets: envFrom ConfigMaps first, then ``env`` (which wins, as in k8s)."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        assert "configMapRef" in src, f"{container['name']}: envFrom must name ConfigMaps (auditable keys)"
        env.update({src.get("prefix", "") + k: v for k, v in configmaps[src["configMapRef"]["name"]].items()})
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", SECRET_PLACEHOLDER if "valueFrom" in var else "")
    return env


def unknown_settings(env: dict[str, str], allowed: set[str]) -> list[str]:
    """Variables that look like settings (VITRINE_*, KAFKA_BOOTSTRAP_SERVERS) but are not in ``allowed``."""
    return sorted(
        n for n in env if (n.upper().startswith(PREFIX) or n.upper() == KAFKA_SERVERS) and n.upper() not in allowed
    )


def missing_required(env: dict[str, str]) -> list[set[str]]:
    """Required settings none of whose names is set."""
    present = {n.upper() for n, v in env.items() if v != ""}
    return [group for group in required_groups() if not group & present]


def _worker(docs: list[Manifest], get: Get) -> dict[str, Any]:
    spec = get(docs, "StatefulSet", "vitrine-worker")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return container


def _pod(docs: list[Manifest], get: Get, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = get(docs, kind, name)["spec"]["template"]["spec"]
    return spec


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``Settings`` read from exactly ``env`` (the process environment's own settings removed)."""
    with monkeypatch.context() as m:
        for name in list(os.environ):
            if name.upper().startswith(PREFIX) or name.upper() == KAFKA_SERVERS:
                m.delenv(name)
        for name, value in env.items():
            m.setenv(name, value)
        return Settings()


def _image_env() -> dict[str, str]:
    """The ``VITRINE_*`` defaults the image sets (ENV), which a container's environment overrides."""
    parser = DockerfileParser(path=str(REPO / "Dockerfile"))
    env: dict[str, str] = {}
    for instr in parser.structure:
        if instr["instruction"] == "ENV":
            env.update(tok.split("=", 1) for tok in shlex.split(instr["value"]) if tok.startswith(PREFIX))
    return env


def _emptydir_mounts(spec: dict[str, Any], container: dict[str, Any]) -> set[str]:
    scratch = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    return {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in scratch}


def test_session_worker_env_is_exactly_settings(docs: list[Manifest], get: Get) -> None:
    worker = _worker(docs, get)
    env = container_env(worker, docs)
    assert unknown_settings(env, set(settings_env_names())) == []
    assert missing_required(env) == []
    refs = {src["configMapRef"]["name"].rsplit("-", 1)[0] for src in worker["envFrom"]}
    assert refs == {"vitrine-settings"}, "generator settings (Qdrant, model) do not belong on the session workers"


def test_session_worker_env_parses_and_agrees_with_the_pod(
    docs: list[Manifest], get: Get, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values must validate (enums, ranges) and match the ports, volumes and partitions around them."""
    worker = _worker(docs, get)
    settings = _settings_from(container_env(worker, docs), monkeypatch)
    assert settings.operations.web_port == next(p["containerPort"] for p in worker["ports"] if p["name"] == "web")
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert str(settings.worker.data_dir) in mounts, "the RocksDB store must be on the persistent volume"
    assert settings.worker.store.value == "rocksdb"
    scaled = get(docs, "ScaledObject", "vitrine-worker")["spec"]
    assert scaled["maxReplicaCount"] <= settings.topics.topic_partitions
    assert settings.connection.kafka_sasl_password is not None and settings.connection.kafka_sasl_username


def test_session_worker_rocksdb_fits_the_memory_limit(
    docs: list[Manifest], get: Get, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every table's database for every partition, plus the Python process, under the pod's limit with headroom."""
    worker = _worker(docs, get)
    settings = _settings_from(container_env(worker, docs), monkeypatch)
    limit = _bytes(worker["resources"]["limits"]["memory"])
    used = rocksdb_memory_bound(settings) + PYTHON_RESERVE_BYTES
    assert used <= limit * 0.75, (
        f"RocksDB {rocksdb_memory_bound(settings):,} + Python {PYTHON_RESERVE_BYTES:,} > 75% of {limit:,}"
    )


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``1Gi``, ``512Mi``) in bytes."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "vitrine-generator"), ("Job", "vitrine-setup")])
def test_generator_and_job_env_is_exactly_settings(
    docs: list[Manifest], get: Get, monkeypatch: pytest.MonkeyPatch, kind: str, name: str
) -> None:
    """Every container of the generator and the setup Job: known names, required ones set, values that parse."""
    spec = _pod(docs, get, kind, name)
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        env = container_env(container, docs)
        assert unknown_settings(env, set(settings_env_names())) == [], container["name"]
        assert missing_required(env) == [], container["name"]
        settings = _settings_from(env, monkeypatch)
        if container["command"][1] in KAFKA_COMMANDS and "SASL" in settings.connection.kafka_security_protocol:
            assert settings.connection.kafka_sasl_password is not None and settings.connection.kafka_sasl_username, (
                container["name"]
            )


def test_generator_env_agrees_with_the_pod_and_the_image(
    docs: list[Manifest], get: Get, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _pod(docs, get, "Deployment", "vitrine-generator")
    (generator,) = spec["containers"]
    settings = _settings_from({**_image_env(), **container_env(generator, docs)}, monkeypatch)
    assert settings.operations.web_port == next(p["containerPort"] for p in generator["ports"] if p["name"] == "web")
    assert any(settings.worker.data_dir.is_relative_to(m) for m in _emptydir_mounts(spec, generator)), (
        "data dir writable"
    )
    assert settings.catalog.qdrant_url and settings.catalog.qdrant_api_key is not None, (
        "server-mode Qdrant with its API key"
    )
    image = _image_env()
    assert str(settings.generator.model_dir) == image["VITRINE_MODEL_DIR"], (
        "the student the image ships (or a baked one)"
    )
    assert str(settings.catalog.catalog_dir) == image["VITRINE_CATALOG_DIR"]
    if overlay == "cpu":
        assert resolve_providers(settings.generator.onnx_providers) == ["CPUExecutionProvider"]
    else:
        # The CUDA image has the cuda12 extra's runtime; this CPU runtime can only check that the names exist.
        wanted = [name.strip() for name in settings.generator.onnx_providers.split(",")]
        assert wanted == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        assert set(wanted) <= set(ort.get_all_providers())
    scaled = get(docs, "ScaledObject", "vitrine-generator")["spec"]
    assert scaled["maxReplicaCount"] <= settings.topics.topic_partitions


def test_catalog_job_env_agrees_with_the_pod_and_the_image(
    docs: list[Manifest], get: Get, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _pod(docs, get, "Job", "vitrine-setup")
    (catalog,) = spec["containers"]
    settings = _settings_from({**_image_env(), **container_env(catalog, docs)}, monkeypatch)
    assert str(settings.catalog.embedder_dir) == _image_env()["VITRINE_EMBEDDER_DIR"], (
        "the embedder exported into the image"
    )
    assert resolve_providers(settings.generator.onnx_providers) == ["CPUExecutionProvider"], (
        "the Job runs the CPU image"
    )
    assert settings.catalog.qdrant_url and settings.catalog.qdrant_api_key is not None
    args = catalog["args"]
    out = Path(args[args.index("--out") + 1])
    assert any(out.is_relative_to(m) for m in _emptydir_mounts(spec, catalog)), "artifacts need a writable dir"
    products = Path(args[args.index("--products") + 1])
    assert settings.catalog.catalog_dir is not None and products.parent == settings.catalog.catalog_dir, (
        "the catalog the image bakes"
    )


def dockerfile_env_names(path: Path) -> set[str]:
    """Names set by ENV in any stage (``ENV a=1 b=2`` form)."""
    parser = DockerfileParser(path=str(path))
    names: set[str] = set()
    for instr in parser.structure:
        if instr["instruction"] == "ENV":
            names |= {tok.split("=", 1)[0] for tok in shlex.split(instr["value"]) if "=" in tok}
    return names


def test_dockerfile_env_is_settings() -> None:
    names = dockerfile_env_names(REPO / "Dockerfile")
    assert "VITRINE_DATA_DIR" in names
    assert unknown_settings(dict.fromkeys(names, "x"), set(settings_env_names())) == []


# --- the checker must be able to fail --------------------------------------------------------------


def test_checker_flags_typos_and_missing_servers() -> None:
    known = set(settings_env_names())
    env = {
        "VITRINE_TOPIC_PARTITONS": "4",
        "VITRINE_STORE": "rocksdb",
        "KAFKA_BOOTSTRAP_SERVER": "x:9092",
        "HOME": "/tmp",
    }
    assert unknown_settings(env, known) == ["VITRINE_TOPIC_PARTITONS"]
    assert missing_required(env) == [{"KAFKA_BOOTSTRAP_SERVERS", "VITRINE_KAFKA_BOOTSTRAP_SERVERS"}]
    assert missing_required({**env, "VITRINE_KAFKA_BOOTSTRAP_SERVERS": "x:9092"}) == []
    assert unknown_settings({"VITRINE_QDRANT_URI": "http://q"}, known) == ["VITRINE_QDRANT_URI"]
