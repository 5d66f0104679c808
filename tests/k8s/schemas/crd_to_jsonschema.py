"""Turn a CustomResourceDefinition's openAPIV3Schema into a strict JSON Schema file.

Why: kubernetes-validate ships schemas for built-in kinds only; KEDA's kinds are CRDs, so their schema
has to come from the CRD itself. Descriptions are dropped (size) and ``additionalProperties: false``
is added to every object that lists its properties, mirroring the API server's strict field
validation (``kubectl apply --validate=strict``), so a misspelt field fails offline too.

    python tests/k8s/schemas/crd_to_jsonschema.py CRD.yaml VERSION > OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    """Copy of ``node`` without descriptions and with closed objects (see module docstring)."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if key != "description"}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def convert(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for one served version of ``crd``."""
    for ver in crd["spec"]["versions"]:
        if ver["name"] == version:
            schema = strict(ver["schema"]["openAPIV3Schema"])
            break
    else:
        raise SystemExit(f"version {version} not in CRD {crd['metadata']['name']}")
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"{kind} {group}/{version}", **schema}


def main(argv: list[str]) -> int:
    path, version = Path(argv[1]), argv[2]
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    json.dump(convert(docs[0], version), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
