"""The manifests' probe paths, ports, scrape target and KEDA consumer group are what real processes serve.

Renders each overlay, starts ``vitrine worker`` and ``vitrine generator`` on the real broker, and
requests every path the StatefulSet / Deployment and their scrape annotations name, on the port the
manifest's environment implies. The generator runs with the overlay's own environment (ConfigMaps and
container env), changed only where the cluster's addresses cannot work here: the local broker
(plaintext, one replica, names unique to the test) and no catalog (so it serves the control arm and
never needs Qdrant or the model).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.runtime.kafka_config import aiokafka_options
from streams.runtime.settings import FIELDS, Settings
from streams.runtime.topics import ensure_topics
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.kafka

Manifest = dict[str, Any]
Get = Callable[[list[Manifest], str, str], Manifest]
REPO = Path(__file__).resolve().parents[2]


def _port(container: dict[str, Any], ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == ref]
    return int(port)


def _checks(template: dict[str, Any], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every HTTP request Kubernetes and Prometheus will make to the pod."""
    checks = {
        what: container[f"{what}Probe"]["httpGet"]
        for what in ("startup", "readiness", "liveness")
        if f"{what}Probe" in container
    }
    checks["scrape"] = {
        "path": template["metadata"]["annotations"]["prometheus.io/path"],
        "port": int(template["metadata"]["annotations"]["prometheus.io/port"]),
    }
    return checks


def _manifest_env(container: dict[str, Any], docs: list[Manifest]) -> dict[str, str]:
    """The container's plain environment (ConfigMaps, then literal env); Secret references are left out."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        env.update(configmaps[src["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _documented_metrics() -> set[str]:
    """Metric names the Metrics section of k8s/README.md tells operators to read."""
    text = (REPO / "k8s" / "README.md").read_text()
    section = text[text.index("## Metrics") :]
    section = section[: section.index("\n## ", 1)]
    return set(re.findall(r"\bvitrine_[a-z_]+\b", section))


async def _consumer_groups(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        return {group for group, *_ in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def test_probe_and_metrics_paths_are_served_on_the_manifest_port(
    docs: list[Manifest],
    get: Get,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    template = get(docs, "StatefulSet", "vitrine-worker")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    served_port = int(env.get("VITRINE_WEB_PORT") or FIELDS["web_port"].default)
    checks = _checks(template, container)
    for what, probe in checks.items():
        assert _port(container, probe["port"]) == served_port, f"{what} probe targets another port"

    worker = worker_factory(settings_factory())
    worker.wait_ready()
    for what, probe in checks.items():
        status, body = worker.endpoint.get(probe["path"])
        assert status == 200, f"{what} path {probe['path']} answered {status}"
        assert body
    assert b"vitrine_events" in worker.endpoint.get(checks["scrape"]["path"])[1]


def test_generator_serves_the_deployment_probes_and_joins_the_keda_group(
    docs: list[Manifest],
    get: Get,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    template = get(docs, "Deployment", "vitrine-generator")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["vitrine", "generator"]
    env = _manifest_env(container, docs)
    with monkeypatch.context() as m:  # the overlay's settings, nothing from this process's environment
        for name in list(os.environ):
            if name.upper().startswith("VITRINE_") or name.upper() == "KAFKA_BOOTSTRAP_SERVERS":
                m.delenv(name)
        for name, value in env.items():
            m.setenv(name, value)
        settings = settings_factory(
            kafka_security_protocol="PLAINTEXT",
            topic_replication_factor=1,
            catalog_dir=tmp_path / "no-catalog",
        )
    assert settings.generator.onnx_providers == env["VITRINE_ONNX_PROVIDERS"], (
        "the overlay's providers reach the process"
    )
    checks = _checks(template, container)
    for what, probe in checks.items():
        assert _port(container, probe["port"]) == settings.operations.web_port, f"{what} probe targets another port"

    asyncio.run(ensure_topics(settings))
    generator = worker_factory(settings, command="generator")
    generator.wait_ready()
    for what, probe in checks.items():
        status, body = generator.endpoint.get(probe["path"])
        assert status == 200, f"{what} path {probe['path']} answered {status}:\n{generator.log_tail()}"
        assert body
    scraped = generator.endpoint.get(checks["scrape"]["path"])[1].decode()
    missing = sorted(name for name in _documented_metrics() if name not in scraped)
    assert not missing, f"k8s/README.md documents metrics the generator does not serve: {missing}"

    trigger = get(docs, "ScaledObject", "vitrine-generator")["spec"]["triggers"][0]["metadata"]
    manifest_app_id = env["VITRINE_APP_ID"]
    assert trigger["consumerGroup"].startswith(manifest_app_id)
    group = settings.topics.app_id + trigger["consumerGroup"][len(manifest_app_id) :]
    groups: set[str] = set()
    deadline = time.monotonic() + 30
    while group not in groups and time.monotonic() < deadline:  # the join is reported by the coordinator
        groups = asyncio.run(_consumer_groups(settings))
        time.sleep(0.5)
    assert group in groups, f"KEDA would watch {group!r}; the generator joined {sorted(groups)}"
