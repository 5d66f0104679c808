"""JSON Schemas of the wire formats, generated from the models so they cannot drift from the code.

``vitrine schemas`` writes them to ``schemas/``; a test fails when a committed file no longer matches
what the models generate. Integrators validate messages against these files without reading Python.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from streams.contracts import catalog_update, events, merch_rule, regen, storefront

DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class Published:
    """One published schema: its file name, the topic it describes and how to generate it."""

    file: str
    topic: str
    generate: Callable[[], dict[str, Any]]
    doc: str


def _model(model: type[BaseModel]) -> Callable[[], dict[str, Any]]:
    return lambda: model.model_json_schema(mode="validation")


def _dataclass(cls: type) -> Callable[[], dict[str, Any]]:
    return lambda: TypeAdapter(cls).json_schema(mode="validation")


def _doc(module: object) -> str:
    """The module docstring's first paragraph: what the message is and how it is keyed."""
    return (inspect.getdoc(module) or "").split("\n\n", 1)[0].replace("\n", " ")


PUBLISHED: tuple[Published, ...] = (
    Published("click-event.json", "clickstream", _model(events.ClickEvent), _doc(events)),
    Published("regen-request.json", "regen-requests", _dataclass(regen.RegenRequest), _doc(regen)),
    Published("storefront-update.json", "storefront-updates", _model(storefront.StorefrontUpdate), _doc(storefront)),
    Published("catalog-update.json", "catalog-updates", _model(catalog_update.CatalogUpdate), _doc(catalog_update)),
    Published("merch-rule.json", "merch-rules", _model(merch_rule.MerchRule), _doc(merch_rule)),
)


def schema_of(published: Published) -> dict[str, Any]:
    """The schema with the dialect, an id and the message's description (unless the model has its own)."""
    body = published.generate()
    head: dict[str, Any] = {"$schema": DIALECT, "$id": f"schemas/{published.file}"}
    body.setdefault("description", published.doc)
    body["x-default-topic"] = published.topic  # VITRINE_*_TOPIC may rename it
    return {**head, **body}


def render(published: Published) -> str:
    return json.dumps(schema_of(published), indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for published in PUBLISHED:
        path = out_dir / published.file
        path.write_text(render(published))
        written.append(path)
    return written


def stale_schemas(out_dir: Path) -> list[str]:
    """Files under ``out_dir`` that are missing or differ from what the models generate."""
    return [p.file for p in PUBLISHED if not (out_dir / p.file).exists() or (out_dir / p.file).read_text() != render(p)]
