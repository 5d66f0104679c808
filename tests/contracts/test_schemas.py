"""The published JSON Schemas: committed files match the models, and real messages validate against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from streams.cli import main
from streams.contracts.catalog_update import CatalogUpdate
from streams.contracts.events import ClickEvent
from streams.contracts.merch_rule import MerchRule
from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.contracts.schemas import PUBLISHED, stale_schemas
from tests.factories import placement, storefront

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def schema(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / file).read_text())
    return loaded


def valid(file: str, message: bytes) -> bool:
    validator = jsonschema.Draft202012Validator(schema(file))
    return validator.is_valid(orjson.loads(message))


def test_the_committed_schemas_match_the_models() -> None:
    """Fails when a model changed without `vitrine schemas` being rerun and the files committed."""
    assert stale_schemas(SCHEMAS) == []
    for published in PUBLISHED:
        jsonschema.Draft202012Validator.check_schema(schema(published.file))


def test_a_schema_that_drifted_from_its_model_is_reported(tmp_path: Path) -> None:
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    assert main(["schemas", "--check", "--out", str(tmp_path)]) == 0
    drifted = tmp_path / "storefront-update.json"
    drifted.write_text(drifted.read_text().replace('"session_id"', '"session"'))
    (tmp_path / "catalog-update.json").unlink()
    assert stale_schemas(tmp_path) == ["storefront-update.json", "catalog-update.json"]
    assert main(["schemas", "--check", "--out", str(tmp_path)]) == 1


def test_messages_the_code_emits_validate_and_broken_ones_do_not() -> None:
    event = ClickEvent(event_id="e1", session_id="s1", event_type="view", product_id="p1", price=3.5, ts=1)
    assert valid("click-event.json", event.to_json())
    assert not valid("click-event.json", event.to_json().replace(b'"view"', b'"click"'))

    ctx = SessionContext([RecentItem("p1", "view")], ["audio"], ["sony"], ["mid"], None, {"view": 1}, 0.1)
    ranker = RankerCandidates(popular=[("p2", 1.5)], by_category={"audio": [("p3", 0.5)]})
    regen = RegenRequest("s1", None, 2, "first_signal", 1, ctx, ranker, requested_at_ms=5)
    assert valid("regen-request.json", regen.to_json())
    assert not valid("regen-request.json", regen.to_json().replace(b'"version":2', b'"version":"2"'))

    page = storefront([placement()], session_id="s1", version=2, trigger="search", experiment_id="exp-1")
    assert valid("storefront-update.json", page.to_json())
    assert not valid("storefront-update.json", page.to_json().replace(b'"teacher"', b'"bandit"'))

    update = CatalogUpdate(product_id="p1", price=9.5, ts=1)
    assert valid("catalog-update.json", update.to_json())
    assert not valid("catalog-update.json", update.to_json().replace(b"9.5", b"-1"))

    rule = MerchRule(rule_id="r1", kind="exclude", brand="acme", valid_until_ms=10)
    assert valid("merch-rule.json", rule.to_json())
    assert not valid("merch-rule.json", rule.to_json().replace(b'"exclude"', b'"hide"'))
