"""The merch-rules contract: what a rule may say, the one-line reason for what it may not, and tombstones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.contracts.errors import DlqReason, InvalidEvent
from streams.contracts.merch_rule import MerchRule, decode_merch_rule


def raw(**fields: Any) -> bytes:
    return orjson.dumps({"rule_id": "r1", "kind": "exclude", "category": "kids", **fields})


def rejected(value: bytes | None, key: bytes | None = b"r1") -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_merch_rule(key, value)
    return caught.value


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"kind": "boost", "category": None, "brand": "Samsung", "valid_from_ms": 5, "valid_until_ms": 6},
        {"kind": "campaign", "category": None, "campaign": "Black Friday"},
    ],
)
def test_valid_rules_decode_and_round_trip(fields: dict[str, Any]) -> None:
    body = {"rule_id": "r1", "kind": "exclude", "category": "kids", **fields}
    rule_id, rule = decode_merch_rule(b"r1", orjson.dumps({k: v for k, v in body.items() if v is not None}))
    assert rule_id == "r1"
    assert rule is not None
    assert decode_merch_rule(b"r1", rule.to_json()) == ("r1", rule)


def test_a_tombstone_deletes_the_rule_of_its_key() -> None:
    assert decode_merch_rule(b"r1", None) == ("r1", None)


def test_a_rule_holds_within_its_window_only() -> None:
    rule = MerchRule(rule_id="r", kind="exclude", brand="acme", valid_from_ms=10, valid_until_ms=20)
    assert [rule.active(t) for t in (9, 10, 19, 20)] == [False, True, True, False]
    assert MerchRule(rule_id="r", kind="exclude", brand="acme").active(10**13)


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (raw(valid_from_ms=10, valid_until_ms=9), DlqReason.INCONSISTENT, "valid_until_ms must be after valid_from"),
        (raw(valid_from_ms=9, valid_until_ms=9), DlqReason.INCONSISTENT, "valid_until_ms must be after valid_from"),
        (raw(kind="hide"), DlqReason.INVALID_FIELD, "kind: Input should be 'boost', 'exclude' or 'campaign'"),
        (raw(kind="boost", category=None), DlqReason.INCONSISTENT, "a boost needs exactly one target"),
        (raw(brand="acme"), DlqReason.INCONSISTENT, "an exclude needs exactly one target"),
        (raw(kind="campaign", category=None), DlqReason.INCONSISTENT, "a campaign needs its campaign text"),
        (raw(kind="campaign", campaign="sale"), DlqReason.INCONSISTENT, "a campaign targets no category or brand"),
        (raw(campaign="sale"), DlqReason.INCONSISTENT, "an exclude carries no campaign text"),
        (raw(valid_from_ms="today"), DlqReason.INVALID_FIELD, "valid_from_ms: Input should be a valid integer"),
        (raw(valid_from_ms=-1), DlqReason.INVALID_FIELD, "valid_from_ms: Input should be greater than or equal to 0"),
        (orjson.dumps({"rule_id": "r1", "category": "kids"}), DlqReason.MISSING_FIELD, "kind: Field required"),
        (b"{not json", DlqReason.INVALID_JSON, ""),
        (b"[1]", DlqReason.NOT_AN_OBJECT, ""),
    ],
)
def test_invalid_rules_say_why_in_one_line(value: bytes, reason: DlqReason, detail: str) -> None:
    error = rejected(value)
    assert error.reason is reason
    assert detail in error.detail
    assert "\n" not in error.detail


def test_the_key_must_be_the_rule_id() -> None:
    assert rejected(raw(), key=b"r2").reason is DlqReason.KEY_MISMATCH
    assert rejected(raw(), key=None).reason is DlqReason.KEY_MISMATCH
    assert rejected(None, key=None).reason is DlqReason.KEY_MISMATCH
