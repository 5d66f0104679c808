"""Merchandising rules in the stream: a boost, an exclude or a campaign line, keyed by rule id.

The topic is compacted, so it is also the current rule set: a generator that starts reads it from the
beginning, and a null value (a tombstone) under a rule's key deletes the rule. Wire format::

    {"rule_id": "no-kids", "kind": "exclude", "category": "kids", "valid_from_ms": 0, "valid_until_ms": null}

A boost or an exclude targets one category path prefix (``kids`` covers ``kids.toys``) or one brand; a
campaign carries its text. A rule holds from ``valid_from_ms`` until before ``valid_until_ms`` (wall clock,
epoch milliseconds; no end: until deleted).
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.contracts.errors import DlqReason, InvalidEvent, invalid_event

RuleKind = Literal["boost", "exclude", "campaign"]


class MerchRule(BaseModel):
    """A merchandising rule, keyed by ``rule_id`` (a null value deletes it). A boost or an exclude targets exactly
    one of ``category`` (a category path prefix) and ``brand``; a campaign carries ``campaign`` text and no target;
    ``valid_until_ms``, when given, is after ``valid_from_ms`` (epoch milliseconds, wall clock)."""

    # Strict, like the other contracts: "valid_until_ms": "tomorrow" is refused, not guessed.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    rule_id: str = Field(min_length=1, max_length=64)
    kind: RuleKind
    category: str | None = Field(default=None, min_length=1, max_length=200)
    brand: str | None = Field(default=None, min_length=1, max_length=100)
    campaign: str | None = Field(default=None, min_length=1, max_length=120)
    valid_from_ms: int = Field(default=0, ge=0)
    valid_until_ms: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> MerchRule:
        targets = (self.category is not None) + (self.brand is not None)
        if self.kind == "campaign":
            if self.campaign is None:
                raise ValueError("a campaign needs its campaign text")
            if targets:
                raise ValueError("a campaign targets no category or brand")
        else:
            what = "an exclude" if self.kind == "exclude" else "a boost"
            if targets != 1:
                raise ValueError(f"{what} needs exactly one target, a category or a brand")
            if self.campaign is not None:
                raise ValueError(f"{what} carries no campaign text")
        if self.valid_until_ms is not None and self.valid_until_ms <= self.valid_from_ms:
            raise ValueError("valid_until_ms must be after valid_from_ms")
        return self

    def active(self, at_ms: int) -> bool:
        return self.valid_from_ms <= at_ms and (self.valid_until_ms is None or at_ms < self.valid_until_ms)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


def decode_merch_rule(key: bytes | None, raw: bytes | None) -> tuple[str, MerchRule | None]:
    """(rule id, rule); the rule is None for a tombstone, which deletes the rule of its key."""
    if key is None:
        raise InvalidEvent(DlqReason.KEY_MISMATCH, "no key: a rule is keyed by its rule_id")
    rule_id = key.decode(errors="replace")
    if raw is None:
        return rule_id, None
    try:
        rule = MerchRule.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_event(exc, "rule") from None
    if rule.rule_id != rule_id:
        raise InvalidEvent(DlqReason.KEY_MISMATCH, f"key {rule_id!r} is not the rule_id {rule.rule_id!r}")
    return rule_id, rule
