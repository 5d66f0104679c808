"""The environment the manifests give each container against what ``streams.settings.Settings`` reads.

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

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
Manifest = dict[str, Any]
Get = Callable[[list[Manifest], str, str], Manifest]
PREFIX = "VITRINE_"
KAFKA_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"
SECRET_PLACEHOLDER = "from-a-secret"

# Settings the generator and the catalog loader will read, not yet fields of Settings. They may
# appear only in the generator Deployment and the setup Job's catalog container; each moves into
# Settings when the generator lands (then delete it here).
PENDING_GENERATOR_SETTINGS = {
    "VITRINE_QDRANT_URL",
    "VITRINE_QDRANT_API_KEY",
    "VITRINE_QDRANT_COLLECTION",
    "VITRINE_MODEL_DIR",
    "VITRINE_ONNX_PROVIDERS",
}


def settings_env_names() -> dict[str, str]:
    """Environment variable name -> Settings field, as pydantic-settings resolves them."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
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
    required = {f for f, info in Settings.model_fields.items() if info.is_required()} | {"kafka_bootstrap_servers"}
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


def test_session_worker_env_is_exactly_settings(docs: list[Manifest], get: Get) -> None:
    env = container_env(_worker(docs, get), docs)
    assert unknown_settings(env, set(settings_env_names())) == []
    assert missing_required(env) == []
    assert not set(env) & PENDING_GENERATOR_SETTINGS, "generator settings do not belong on the session workers"


def test_session_worker_env_parses_and_agrees_with_the_pod(
    docs: list[Manifest], get: Get, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values must validate (enums, ranges) and match the ports, volumes and partitions around them."""
    for name in list(os.environ):
        if name.upper().startswith(PREFIX) or name.upper() == KAFKA_SERVERS:
            monkeypatch.delenv(name)
    worker = _worker(docs, get)
    for name, value in container_env(worker, docs).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.web_port == next(p["containerPort"] for p in worker["ports"] if p["name"] == "web")
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert str(settings.data_dir) in mounts, "the RocksDB store must be on the persistent volume"
    assert settings.store.value == "rocksdb"
    scaled = get(docs, "ScaledObject", "vitrine-worker")["spec"]
    assert scaled["maxReplicaCount"] <= settings.topic_partitions
    assert settings.kafka_sasl_password is not None and settings.kafka_sasl_username


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "vitrine-generator"), ("Job", "vitrine-setup")])
def test_generator_and_job_env_known(docs: list[Manifest], get: Get, kind: str, name: str) -> None:
    spec = get(docs, kind, name)["spec"]["template"]["spec"]
    allowed = set(settings_env_names()) | PENDING_GENERATOR_SETTINGS
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        env = container_env(container, docs)
        assert unknown_settings(env, allowed) == [], container["name"]
        assert missing_required(env) == [], container["name"]


def test_pending_list_is_honest(rendered: dict[str, list[Manifest]]) -> None:
    """Each pending name is used somewhere, and none already exists in Settings (then drop it here)."""
    assert not PENDING_GENERATOR_SETTINGS & set(settings_env_names())
    used: set[str] = set()
    for docs in rendered.values():
        for d in docs:
            if d["kind"] in {"Deployment", "Job"}:
                spec = d["spec"]["template"]["spec"]
                for c in [*spec.get("initContainers", []), *spec["containers"]]:
                    used |= set(container_env(c, docs))
    assert used >= PENDING_GENERATOR_SETTINGS


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
    assert unknown_settings({"VITRINE_QDRANT_URL": "http://q"}, known) == ["VITRINE_QDRANT_URL"]
