"""Merchandising rules at serving time: the rule set followed from the ``merch-rules`` topic, and the rules in force.

A batch of pages is planned and assembled under one ``ActiveRules``, taken from the ``MerchBook`` at the wall-clock
time the batch is served: validity windows are a merchandiser's calendar (a sale starts at nine), and a request's
event time may be old (a replay, a late event), which would show a page the rules of its past.

The writer reads the category rules and the campaign (``models.context.MerchRules``: what the student was trained
on); brand rules are enforced on the items only. Enforcement, in ``streams.generator.assembly``: a product of an
excluded category or brand never appears on a page; a product of a boosted one goes first among a placement's
candidates, in the order fusion gave them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from models.context import MerchRules, ProductFacts, in_categories
from streams.contracts.merch_rule import MerchRule
from streams.runtime import metrics


@dataclass(frozen=True, slots=True)
class ActiveRules:
    """The rules in force for a batch, by what they target (brands lowercased, as the catalog's are compared)."""

    boost_categories: tuple[str, ...] = ()
    boost_brands: frozenset[str] = frozenset()
    exclude_categories: tuple[str, ...] = ()
    exclude_brands: frozenset[str] = frozenset()
    campaign: str | None = None

    @classmethod
    def of(cls, rules: Iterable[MerchRule]) -> ActiveRules:
        """Rules in rule-id order; of several campaigns, the latest to start (ties: the first rule id) is shown."""
        ordered = sorted(rules, key=lambda r: r.rule_id)
        campaigns = [r for r in ordered if r.kind == "campaign"]
        latest = max(campaigns, key=lambda r: r.valid_from_ms, default=None)
        return cls(
            boost_categories=tuple(r.category for r in ordered if r.kind == "boost" and r.category),
            boost_brands=frozenset(r.brand.lower() for r in ordered if r.kind == "boost" and r.brand),
            exclude_categories=tuple(r.category for r in ordered if r.kind == "exclude" and r.category),
            exclude_brands=frozenset(r.brand.lower() for r in ordered if r.kind == "exclude" and r.brand),
            campaign=latest.campaign if latest is not None else None,
        )

    @property
    def boosting(self) -> bool:
        return bool(self.boost_categories or self.boost_brands)

    def context(self) -> MerchRules:
        """What the writer reads."""
        return MerchRules(boost=self.boost_categories, exclude=self.exclude_categories, campaign=self.campaign)

    def excludes(self, product: ProductFacts | None) -> bool:
        """An unknown product is not excluded: nothing says it is of an excluded category or brand."""
        return _targeted(product, self.exclude_categories, self.exclude_brands)

    def boosts(self, product: ProductFacts | None) -> bool:
        return _targeted(product, self.boost_categories, self.boost_brands)


def _targeted(product: ProductFacts | None, categories: tuple[str, ...], brands: frozenset[str]) -> bool:
    """Whether a rule naming ``categories`` (prefixes) or ``brands`` (lowercased) targets ``product``."""
    return product is not None and (
        in_categories(product.category, categories) or (product.brand or "").lower() in brands
    )


NO_RULES = ActiveRules()


class MerchBook:
    """Every rule read from the topic, by rule id; written by the follower, read by the generator's thread."""

    def __init__(self) -> None:
        self._rules: dict[str, MerchRule] = {}
        self._lock = threading.Lock()

    def apply(self, rule_id: str, rule: MerchRule | None) -> None:
        """Set or replace a rule; None (a tombstone) deletes it."""
        with self._lock:
            if rule is None:
                self._rules.pop(rule_id, None)
            else:
                self._rules[rule_id] = rule
            held = len(self._rules)
        metrics.MERCH_RULE_UPDATES.inc()
        metrics.MERCH_RULES.labels("held").set(held)

    def active(self, at_ms: int) -> ActiveRules:
        with self._lock:
            rules = [r for r in self._rules.values() if r.active(at_ms)]
        metrics.MERCH_RULES.labels("active").set(len(rules))
        return ActiveRules.of(rules) if rules else NO_RULES
