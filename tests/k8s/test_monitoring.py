"""Monitoring objects (PodMonitor, PrometheusRule, Grafana dashboard) and the setup Job's independence
from generator settings, checked on the rendered overlays."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.runtime.metrics import REGISTRY

REPO = Path(__file__).resolve().parents[2]
Manifest = dict[str, Any]
Get = Callable[[list[Manifest], str, str], Manifest]
# What operators must be told about (issue 10), by alert name.
REQUIRED_ALERTS = {
    "VitrineDeadLetterRate": "vitrine_dlq_events_total",
    "VitrineConsumerLagGrowing": "vitrine_consumer_lag",
    "VitrineAgentRestarts": "vitrine_agent_crashes_total",
    "VitrineDegradedPages": "vitrine_storefronts_degraded_total",
    "VitrineNotReady": "vitrine_ready",
    "VitrinePartitionStalled": "vitrine_partition_stalled_seconds",
}
METRIC = re.compile(r"\bvitrine_[a-z0-9_]+\b")


def exported() -> set[str]:
    """Every sample name the processes can export, as Prometheus scrapes it."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {f.name + s for f in REGISTRY.collect() for s in suffixes[f.type]}


def test_exported_names_are_what_the_registry_serves() -> None:
    names = exported()
    assert {"vitrine_dlq_events_total", "vitrine_consumer_lag", "vitrine_agent_crashes_total"} <= names
    assert "vitrine_dlq_events" not in names, "counters are scraped with _total"


def test_pod_monitor_scrapes_every_vitrine_pod(docs: list[Manifest], get: Get) -> None:
    spec = get(docs, "PodMonitor", "vitrine")["spec"]
    selector = spec["selector"]["matchLabels"]
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for kind, name in (("StatefulSet", "vitrine-worker"), ("Deployment", "vitrine-generator")):
        template = get(docs, kind, name)["spec"]["template"]
        assert selector.items() <= template["metadata"]["labels"].items(), name
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert endpoint["port"] in ports, name


def test_alerts_cover_the_failures_on_exported_metrics(docs: list[Manifest], get: Get) -> None:
    rules = [r for g in get(docs, "PrometheusRule", "vitrine")["spec"]["groups"] for r in g["rules"]]
    by_name = {r["alert"]: r for r in rules}
    names = exported()
    for alert, metric in REQUIRED_ALERTS.items():
        assert metric in by_name[alert]["expr"], alert
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= names, f"{rule['alert']}: unknown metrics {used - names}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_dashboard_queries_exported_metrics(docs: list[Manifest], get: Get) -> None:
    cm = get(docs, "ConfigMap", "vitrine-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["vitrine.json"])
    names = exported()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used and used <= names, f"{expr}: unknown metrics {used - names}"
    shown = {m for e in exprs for m in METRIC.findall(e)}
    assert set(REQUIRED_ALERTS.values()) <= shown, "every alerting metric has a panel"


def test_a_generator_upgrade_leaves_the_setup_job_unchanged(
    tmp_path: Path, render_dir: Callable[[Path], list[Manifest]], get: Get
) -> None:
    """A model upgrade (the README's route) must apply cleanly: the Job's template is immutable."""
    base = Path(os.path.relpath(REPO / "k8s" / "overlays" / "cpu", tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\n"
        "configMapGenerator:\n  - name: vitrine-generator-settings\n    behavior: merge\n"
        "    literals:\n      - VITRINE_MODEL_DIR=/models/student-v2\n"
    )
    before = render_dir(REPO / "k8s" / "overlays" / "cpu")
    after = render_dir(tmp_path)
    assert get(after, "Job", "vitrine-setup") == get(before, "Job", "vitrine-setup")
    assert get(after, "Deployment", "vitrine-generator") != get(before, "Deployment", "vitrine-generator")


def test_worker_pods_use_static_membership(docs: list[Manifest], get: Get) -> None:
    (worker,) = get(docs, "StatefulSet", "vitrine-worker")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["VITRINE_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
