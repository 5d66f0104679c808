"""The manifests' probe paths, ports and scrape target are what a real worker serves.

Renders each overlay, starts ``vitrine worker`` on the real broker, and requests every path the
StatefulSet and its scrape annotations name, on the port the manifest's environment implies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from streams.settings import Settings
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.kafka

Manifest = dict[str, Any]


def _port(container: dict[str, Any], ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == ref]
    return int(port)


def test_probe_and_metrics_paths_are_served_on_the_manifest_port(
    docs: list[Manifest],
    get: Callable[[list[Manifest], str, str], Manifest],
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    template = get(docs, "StatefulSet", "vitrine-worker")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    served_port = int(env.get("VITRINE_WEB_PORT") or Settings.model_fields["web_port"].default)
    checks = {
        "readiness": container["readinessProbe"]["httpGet"],
        "liveness": container["livenessProbe"]["httpGet"],
        "scrape": {
            "path": template["metadata"]["annotations"]["prometheus.io/path"],
            "port": int(template["metadata"]["annotations"]["prometheus.io/port"]),
        },
    }
    for what, probe in checks.items():
        assert _port(container, probe["port"]) == served_port, f"{what} probe targets another port"

    worker = worker_factory(settings_factory())
    worker.wait_ready()
    for what, probe in checks.items():
        status, body = worker.endpoint.get(probe["path"])
        assert status == 200, f"{what} path {probe['path']} answered {status}"
        assert body
    assert b"vitrine_events" in worker.endpoint.get(checks["scrape"]["path"])[1]
