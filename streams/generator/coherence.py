"""Coherence rules a merchandiser can hold a page to, and the check that counts what breaks them.

The assembler builds pages that keep the rules (``admits``, ``duplicate_key``, ``group``); ``violations``
checks a finished page independently of how it was built, so the served pages (Prometheus,
``vitrine_coherence_violations_total{rule}``) and the evaluation's replay (its report) count the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from enum import StrEnum

from models.context import ProductFacts, ProductLookup
from streams.contracts.storefront import Placement, Scope, StorefrontUpdate
from streams.generator.merch import NO_RULES, ActiveRules


class Rule(StrEnum):
    PRICE_BOUND = "price_bound"  # an item above the theme's ``under $X``
    BRAND = "brand"  # an item not of the theme's brand
    CATEGORY = "category"  # an item outside the category the theme names
    DUPLICATE = "duplicate"  # two items of one title and price on a page
    EMPTY_PLACEMENT = "empty_placement"
    DIVERSITY_FLOOR = "diversity_floor"  # fewer distinct categories (brands) than the kind's floor
    EXCLUDED = "excluded"  # an item of a category or brand a merchandising rule excludes


def broken(scope: Scope, product: ProductFacts | None) -> list[Rule]:
    """The scope rules ``product`` breaks; an unknown product, or an unknown price under a bound, breaks them."""
    out: list[Rule] = []
    if scope.categories and (product is None or product.category not in scope.categories):
        out.append(Rule.CATEGORY)
    if scope.brand is not None and (product is None or (product.brand or "").lower() != scope.brand):
        out.append(Rule.BRAND)
    if scope.max_price is not None and (product is None or product.price is None or product.price > scope.max_price):
        out.append(Rule.PRICE_BOUND)
    return out


def admits(scope: Scope, product: ProductFacts | None) -> bool:
    return not broken(scope, product)


def duplicate_key(product: ProductFacts | None) -> tuple[str, float] | None:
    """Same title and price: one product to a shopper (a colour variant, a relisting); None when unknown."""
    if product is None or product.price is None or not product.title:
        return None
    return " ".join(product.title.lower().split()), round(product.price, 2)


def group(scope: Scope, product: ProductFacts | None, product_id: str) -> str | None:
    """What the diversity floor counts: the category, or the brand where the theme names the category (its
    items share one), or nothing where it names both. A product without that fact is a group of its own: nothing
    says it repeats another (Online Retail has no brands at all)."""
    if scope.categories and scope.brand is not None:
        return None
    fact = (product.category if not scope.categories else product.brand) if product is not None else None
    return fact if fact is not None else f"product:{product_id}"


def floor_applies(scope: Scope) -> bool:
    return not (scope.categories and scope.brand is not None)


def violations(
    update: StorefrontUpdate, products: ProductLookup, floors: Mapping[str, int], rules: ActiveRules = NO_RULES
) -> Counter[Rule]:
    """Every rule broken on a page: per item for the theme's promises and the merchandising excludes, per pair for
    duplicates, per placement for emptiness and the diversity floor (the floor asks for no more groups than the
    placement has items)."""
    found: Counter[Rule] = Counter()
    seen: set[tuple[str, float]] = set()
    for placement in update.placements:
        found.update(_placement_violations(placement, products, floors.get(placement.kind, 1), seen, rules))
    return found


def _placement_violations(
    placement: Placement, products: ProductLookup, floor: int, seen: set[tuple[str, float]], rules: ActiveRules
) -> Counter[Rule]:
    found: Counter[Rule] = Counter()
    if not placement.items:
        found[Rule.EMPTY_PLACEMENT] += 1
        return found
    groups: set[str | None] = set()
    for item in placement.items:
        product = products(item.product_id)
        found.update(broken(placement.scope, product))
        if rules.excludes(product):
            found[Rule.EXCLUDED] += 1
        key = duplicate_key(product)
        if key is not None:
            if key in seen:
                found[Rule.DUPLICATE] += 1
            seen.add(key)
        groups.add(group(placement.scope, product, item.product_id))
    if floor_applies(placement.scope) and len(groups) < min(floor, len(placement.items)):
        found[Rule.DIVERSITY_FLOOR] += 1
    return found
