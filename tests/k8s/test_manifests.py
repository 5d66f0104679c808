"""Rendered overlays: every object valid against its schema, plus the operational rules of issue 5.

Schema checks catch what the API server would reject; the rules catch what it would accept but a
platform team would not (root containers, unbounded autoscaling, secrets in the repo...).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.cli import _parser as cli_parser

# Conftest helpers arrive as fixtures (importing conftest by name is import-mode dependent).
REPO = Path(__file__).resolve().parents[2]
Manifest = dict[str, Any]
# Oldest Kubernetes the manifests support (k8s/README.md) and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.30", "1.37")
WEB_PORT = 6066
# Kubernetes resource.Quantity syntax (the pattern the API's CRD schemas use for quantities).
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
USER_SECRETS = {"vitrine-kafka", "vitrine-qdrant"}
WORKLOAD_KINDS = {"StatefulSet", "Deployment", "Job"}
# Trigger metadata the KEDA v2.18.0 kafka scaler reads (pkg/scalers/kafka_scaler.go); the CRD types
# `metadata` as a free string map, so a misspelt key would otherwise be ignored silently.
KAFKA_TRIGGER_KEYS = {
    "allowIdleConsumers",
    "awsRegion",
    "bootstrapServers",
    "bootstrapServersFromEnv",
    "consumerGroup",
    "consumerGroupFromEnv",
    "ensureEvenDistributionOfPartitions",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "offsetResetPolicy",
    "partitionLimitation",
    "sasl",
    "saslTokenProvider",
    "scaleToZeroOnInvalidOffset",
    "tls",
    "topic",
    "topicFromEnv",
    "unsafeSsl",
    "version",
    "lagThreshold",
    "activationLagThreshold",
}
# Kafka's SASL mechanism names (VITRINE_KAFKA_SASL_MECHANISM) as the KEDA kafka scaler spells them.
KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
    "GSSAPI": "gssapi",
}

Get = Callable[[list[Manifest], str, str], Manifest]


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, pod spec) of every workload."""
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and app containers of a pod spec."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def configmap(docs: list[Manifest], prefix: str) -> Manifest:
    """The generated ConfigMap whose name is ``prefix`` plus kustomize's hash suffix."""
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    assert len(found) == 1, f"ConfigMap {prefix}-<hash> missing"
    return found[0]


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_every_object_matches_its_schema(
    docs: list[Manifest], validate_schema: Callable[[Manifest, str], list[str]], k8s_version: str
) -> None:
    errors = [e for d in docs for e in validate_schema(d, k8s_version)]
    assert not errors, "\n".join(errors)


def test_expected_objects_present(docs: list[Manifest]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Namespace", "vitrine"),
        ("StatefulSet", "vitrine-worker"),
        ("Deployment", "vitrine-generator"),
        ("Job", "vitrine-setup"),
        ("Service", "vitrine-worker"),
        ("Service", "vitrine-metrics"),
        ("PodDisruptionBudget", "vitrine-worker"),
        ("PodDisruptionBudget", "vitrine-generator"),
        ("ScaledObject", "vitrine-worker"),
        ("ScaledObject", "vitrine-generator"),
        ("TriggerAuthentication", "vitrine-kafka"),
        ("NetworkPolicy", "vitrine"),
        ("StatefulSet", "qdrant"),
        ("Service", "qdrant"),
    ]:
        assert expected in kinds
    assert all(d["metadata"].get("namespace") == "vitrine" for d in docs if d["kind"] != "Namespace")


def test_no_secret_values_in_repo(docs: list[Manifest]) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created by the operator, not shipped"
    for label, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in USER_SECRETS, f"{label}: unknown Secret {ref['name']}"
                    assert not ref.get("optional"), f"{label}: {env['name']} must fail fast when missing"
                elif any(s in env["name"] for s in ("PASSWORD", "API_KEY", "TOKEN")):
                    pytest.fail(f"{label}: {env['name']} is set inline; use a secretKeyRef")
            assert not [e for e in c.get("envFrom", []) if "secretRef" in e], f"{label}: name secret keys explicitly"


def test_pod_security(docs: list[Manifest]) -> None:
    for label, spec in pod_specs(docs):
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, label
        assert psc.get("runAsUser", 0) != 0, label
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", label
        assert spec.get("automountServiceAccountToken") is False, label
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, f"{label}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, f"{label}/{c['name']}"
            assert sc["capabilities"]["drop"] == ["ALL"], f"{label}/{c['name']}"
            assert not sc.get("capabilities", {}).get("add"), f"{label}/{c['name']}"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{label}/{c['name']}: /tmp must be an emptyDir"
            for section in ("requests", "limits"):
                amounts = c["resources"][section]
                assert {"cpu", "memory"} <= set(amounts), f"{label}/{c['name']} {section}"
                # The OpenAPI schemas type quantities as int-or-string only; check their syntax here.
                bad = {k: v for k, v in amounts.items() if not QUANTITY.fullmatch(str(v))}
                assert not bad, f"{label}/{c['name']}: invalid quantities {bad}"


def test_images_are_resolved_and_pinned(docs: list[Manifest]) -> None:
    for label, spec in pod_specs(docs):
        for c in containers(spec):
            image = c["image"]
            assert "/" in image and ":" in image.rsplit("/", 1)[-1], f"{label}: placeholder image {image}"
            assert not image.endswith(":latest"), f"{label}: {image}"


def test_session_worker_statefulset(docs: list[Manifest], get: Get) -> None:
    sts = get(docs, "StatefulSet", "vitrine-worker")
    spec = sts["spec"]
    assert "replicas" not in spec, "KEDA owns replicas; a fixed value would be reset on every apply"
    headless = get(docs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60, "time to commit offsets and flush RocksDB"
    (worker,) = pod["containers"]
    assert worker["command"] == ["vitrine", "worker"]
    claims = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    assert mounts["/var/lib/vitrine"] in claims, "RocksDB store must live on the claim"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["VITRINE_STORE"] == "rocksdb"
    assert env["VITRINE_DATA_DIR"] == "/var/lib/vitrine"


def test_web_port_probes_and_scrape_annotations(docs: list[Manifest], get: Get) -> None:
    for kind, name in [("StatefulSet", "vitrine-worker"), ("Deployment", "vitrine-generator")]:
        template = get(docs, kind, name)["spec"]["template"]
        ann = template["metadata"]["annotations"]
        assert ann == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(WEB_PORT),
            "prometheus.io/path": "/metrics",
        }
        (c,) = template["spec"]["containers"]
        assert {"name": "web", "containerPort": WEB_PORT, "protocol": "TCP"} in c["ports"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "web"}
    metrics = get(docs, "Service", "vitrine-metrics")
    assert metrics["spec"]["ports"][0]["targetPort"] == "web"


def test_generator_hardware(docs: list[Manifest], overlay: str, get: Get) -> None:
    dep = get(docs, "Deployment", "vitrine-generator")
    pod = dep["spec"]["template"]["spec"]
    (gen,) = pod["containers"]
    assert gen["command"] == ["vitrine", "generator"]
    assert "replicas" not in dep["spec"], "KEDA owns replicas; a fixed value would be reset on every apply"
    strategy = dep["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0, "model upgrades must not drop capacity"
    if overlay == "gpu":
        assert gen["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert gen["image"].endswith("-cuda")
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert pod["nodeSelector"]
        settings = configmap(docs, "vitrine-generator-settings")["data"]
        assert settings["VITRINE_ONNX_PROVIDERS"].startswith("CUDAExecutionProvider")
    else:
        assert "nvidia.com/gpu" not in gen["resources"]["limits"]
        assert "tolerations" not in pod and "nodeSelector" not in pod
    worker = get(docs, "StatefulSet", "vitrine-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["image"].endswith("-cpu"), "session workers never need the CUDA image"


# ScaledObject -> (target kind, target name, container, consumer group suffix after VITRINE_APP_ID, topic setting).
# The generator's group is ``<app id>-generator`` (streams/generator/app.py; test_probes_against_worker.py
# checks it on a running generator).
SCALED = {
    "vitrine-worker": ("StatefulSet", "vitrine-worker", "", "VITRINE_CLICKSTREAM_TOPIC"),
    "vitrine-generator": ("Deployment", "vitrine-generator", "-generator", "VITRINE_REGEN_TOPIC"),
}


@pytest.mark.parametrize("name", sorted(SCALED))
def test_keda_scales_on_lag_within_partitions(docs: list[Manifest], get: Get, name: str) -> None:
    kind, workload, group_suffix, topic_setting = SCALED[name]
    so = get(docs, "ScaledObject", name)["spec"]
    target = so["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (kind, workload)
    assert "replicas" not in get(docs, kind, workload)["spec"], "KEDA owns replicas"
    settings = configmap(docs, "vitrine-settings")["data"]
    partitions = int(settings["VITRINE_TOPIC_PARTITIONS"])
    assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"] <= partitions, "idle consumers beyond partitions"
    (trigger,) = so["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert set(meta) <= KAFKA_TRIGGER_KEYS, f"unknown kafka trigger keys: {set(meta) - KAFKA_TRIGGER_KEYS}"
    assert meta["consumerGroup"] == settings["VITRINE_APP_ID"] + group_suffix
    assert meta["topic"] == settings[topic_setting]
    assert meta["bootstrapServers"] == settings["KAFKA_BOOTSTRAP_SERVERS"]
    assert int(meta["lagThreshold"]) > 0
    protocol = settings.get("VITRINE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    expected_sasl = KEDA_SASL[settings.get("VITRINE_KAFKA_SASL_MECHANISM", "PLAIN")] if "SASL" in protocol else "none"
    assert meta.get("sasl", "none") == expected_sasl, "scaler and consumers must speak the same SASL mechanism"
    assert (meta.get("tls", "disable") == "enable") == protocol.endswith("SSL")
    auth = get(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["secretTargetRef"]}
    (container,) = get(docs, kind, workload)["spec"]["template"]["spec"]["containers"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    pw = env["VITRINE_KAFKA_SASL_PASSWORD"]
    assert refs["password"] == (pw["name"], pw["key"]), "scaler and consumers must use the same credentials"


def test_setup_job_creates_topics_then_loads_catalog(docs: list[Manifest], get: Get) -> None:
    spec = get(docs, "Job", "vitrine-setup")["spec"]["template"]["spec"]
    assert [c["command"] for c in spec["initContainers"]] == [["vitrine", "topics"]]
    assert [c["command"] for c in spec["containers"]] == [["vitrine", "catalog"]]
    assert spec["restartPolicy"] in {"Never", "OnFailure"}
    (catalog,) = spec["containers"]
    args = vars(cli_parser().parse_args(catalog["command"][1:] + catalog["args"]))
    assert args["products"] and args["out"], "real sources and an output dir, not the shared-data default"


def test_commands_are_real_subcommands(docs: list[Manifest]) -> None:
    """Every container's command line parses with the real CLI (argparse exits on an unknown one)."""
    for label, spec in pod_specs(docs):
        for c in containers(spec):
            if c.get("command", [""])[0] == "vitrine":
                assert cli_parser().parse_args(c["command"][1:] + c.get("args", [])).command, label


def test_references_resolve(docs: list[Manifest]) -> None:
    """ConfigMap refs, PDB and Service selectors, named target ports: each must hit something."""
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    pods = []
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            t = d["spec"]["template"]
            ports = {p["name"] for c in t["spec"]["containers"] for p in c.get("ports", []) if "name" in p}
            pods.append((t["metadata"]["labels"], ports))
            for _, spec in pod_specs([d]):
                for c in containers(spec):
                    for src in c.get("envFrom", []):
                        assert src["configMapRef"]["name"] in configmaps
            selector = d["spec"].get("selector", {}).get("matchLabels")
            if d["kind"] != "Job":
                assert selector and selector.items() <= t["metadata"]["labels"].items()

    def matching(selector: dict[str, str]) -> list[set[str]]:
        return [ports for labels, ports in pods if selector.items() <= labels.items()]

    for d in docs:
        if d["kind"] == "PodDisruptionBudget":
            assert matching(d["spec"]["selector"]["matchLabels"]), d["metadata"]["name"]
        if d["kind"] == "Service":
            hits = matching(d["spec"]["selector"])
            assert hits, d["metadata"]["name"]
            for port in d["spec"]["ports"]:
                if isinstance(port["targetPort"], str):
                    assert all(port["targetPort"] in ports for ports in hits), d["metadata"]["name"]


def test_network_policies_cover_every_pod(docs: list[Manifest]) -> None:
    selected: list[dict[str, Any]] = [d["spec"]["podSelector"] for d in docs if d["kind"] == "NetworkPolicy"]

    def covered(labels: dict[str, str]) -> bool:
        for sel in selected:
            ok = sel.get("matchLabels", {}).items() <= labels.items()
            for expr in sel.get("matchExpressions", []):
                assert expr["operator"] == "In"
                ok = ok and labels.get(expr["key"]) in expr["values"]
            if ok:
                return True
        return False

    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            assert covered(d["spec"]["template"]["metadata"]["labels"]), d["metadata"]["name"]


# --- negative tests: the checks above must be able to fail ------------------------------------------

VALID_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: probe
spec:
  replicas: 2
  selector:
    matchLabels: {app: probe}
  template:
    metadata:
      labels: {app: probe}
    spec:
      containers:
        - name: c
          image: example/probe:1
          readinessProbe:
            httpGet: {path: /readyz, port: web}
"""

BROKEN_SCALEDOBJECT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: broken
spec:
  scaleTargetRef: {kind: StatefulSet}
  maxReplicaCount: four
  triggers:
    - type: kafka
      metadata: {lagThreshold: 10}
"""


def _kustomization(tmp_path: Path, resources: dict[str, str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in resources.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    listed = "\n".join(f"  - {n}" for n in resources)
    (tmp_path / "kustomization.yaml").write_text(f"resources:\n{listed}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("defect", "old", "new"),
    [
        ("wrong type", "replicas: 2", 'replicas: "two"'),
        ("misspelt field", "port: web}", "prot: web}"),
        ("unknown field", "      containers:", "      containerz: []\n      containers:"),
        ("missing required field", "        - name: c\n          image:", "        - image:"),
    ],
)
def test_broken_deployment_is_rejected(
    tmp_path: Path,
    render_dir: Callable[[Path], list[Manifest]],
    validate_schema: Callable[[Manifest, str], list[str]],
    defect: str,
    old: str,
    new: str,
) -> None:
    assert old in VALID_DEPLOYMENT
    (good,) = render_dir(_kustomization(tmp_path / "good", {"dep.yaml": VALID_DEPLOYMENT}))
    (bad,) = render_dir(_kustomization(tmp_path / "bad", {"dep.yaml": VALID_DEPLOYMENT.replace(old, new)}))
    assert validate_schema(good, K8S_VERSIONS[0]) == [], "the unbroken object must pass"
    for version in K8S_VERSIONS:
        assert validate_schema(bad, version), f"{defect} accepted by the k8s {version} schema"


def test_broken_scaledobject_is_rejected(
    tmp_path: Path,
    render_dir: Callable[[Path], list[Manifest]],
    validate_schema: Callable[[Manifest, str], list[str]],
) -> None:
    (so,) = render_dir(_kustomization(tmp_path, {"so.yaml": BROKEN_SCALEDOBJECT}))
    errors = " ".join(validate_schema(so, K8S_VERSIONS[0]))
    assert "'name' is a required property" in errors
    assert "'four' is not of type 'integer'" in errors
    assert "10 is not of type 'string'" in errors  # trigger metadata values are strings
    so["spec"]["scaleTargetRef"]["nam"] = "typo"
    assert "'nam' was unexpected" in " ".join(validate_schema(so, K8S_VERSIONS[0]))


def test_unknown_kinds_and_bad_kustomizations_fail(
    tmp_path: Path,
    render_dir: Callable[[Path], list[Manifest]],
    validate_schema: Callable[[Manifest, str], list[str]],
) -> None:
    unknown = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}}
    assert validate_schema(unknown, K8S_VERSIONS[0]), "objects without a schema must not pass silently"
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RuntimeError, match=r"missing\.yaml"):
        render_dir(tmp_path)


def test_repo_overlays_are_the_ones_tested() -> None:
    on_disk = sorted(p.name for p in (REPO / "k8s" / "overlays").iterdir() if p.is_dir())
    assert on_disk == ["cpu", "gpu"], "add new overlays to conftest.OVERLAYS"
