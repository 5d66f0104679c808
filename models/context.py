"""The one text format the student reads and writes; training and serving both import it.

A context is a short line: the placement, the session's recent items (most recent first, identical
descriptions folded into ``xN``), the last search and any merchandising rules::

    hero | cart audio.headphone sony 64-128 ; view electronics.smartphone samsung 128-256 x3 | q: earbuds

Two tasks share one model, told apart by a prefix: ``theme: <context>`` -> a short theme, and
``keywords: <theme> // <context>`` -> ``kw1 | kw2 | kw3``. Any change here changes what the model
was trained on, so the exported model card records the format version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from streams.contracts.regen import SessionContext

FORMAT_VERSION = 1
THEME_PREFIX = "theme: "
KEYWORDS_PREFIX = "keywords: "
THEME_SEPARATOR = " // "
KEYWORD_SEPARATOR = " | "
MAX_ITEMS = 6
MAX_TITLE_WORDS = 4
MAX_TEXT_CHARS = 60

_EVENT_WORDS = {"view": "view", "cart": "cart", "purchase": "buy", "remove_from_cart": "remove", "search": "search"}


class PlacementKind(StrEnum):
    """The four slots of a page; each gets its own theme and keywords."""

    HERO = "hero"
    BECAUSE_YOU_VIEWED = "because_you_viewed"
    EXPLORE = "explore"
    DEALS = "deals"


PLACEMENTS: tuple[PlacementKind, ...] = tuple(PlacementKind)


class ProductFacts(Protocol):
    """What the context needs of a product (``streams.catalog`` products satisfy it)."""

    @property
    def title(self) -> str: ...
    @property
    def category(self) -> str | None: ...
    @property
    def brand(self) -> str | None: ...
    @property
    def price(self) -> float | None: ...


ProductLookup = Callable[[str], ProductFacts | None]


@dataclass(frozen=True, slots=True)
class MerchRules:
    """Merchandiser overrides for a page: categories to push or keep out, a campaign line."""

    boost: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    campaign: str | None = None


@dataclass(frozen=True, slots=True)
class ItemFacts:
    event: str
    category: str | None
    brand: str | None
    band: str | None
    title: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class ContextFacts:
    """The structured form of a context; the text is rendered from it, teachers reason over it."""

    placement: PlacementKind
    items: tuple[ItemFacts, ...]
    query: str | None = None
    rules: MerchRules = field(default_factory=MerchRules)


def in_categories(category: str | None, prefixes: Sequence[str]) -> bool:
    """Whether ``category`` is one of ``prefixes`` or below one: ``kids`` covers ``kids.toys``, not ``kidswear``
    (how merchandising rules name categories)."""
    return category is not None and any(category == p or category.startswith(p + ".") for p in prefixes)


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """One line, no separators of this format, bounded length: free text must not break the layout."""
    out = " ".join(text.replace("|", " ").replace(";", " ").replace("/", " ").split()).lower()
    return out[:limit].rstrip()


def leaf_path(category: str) -> str:
    """The last two levels of a taxonomy path: specific enough to tell ``kitchen.washer`` apart, short."""
    return clean_text(".".join(category.split(".")[-2:]))


def context_facts(
    ctx: SessionContext, placement: PlacementKind, rules: MerchRules | None, products: ProductLookup
) -> ContextFacts:
    items: list[ItemFacts] = []
    seen: set[str] = set()
    for recent in reversed(ctx.recent):  # most recent first
        if recent.product_id in seen:
            continue
        seen.add(recent.product_id)
        product = products(recent.product_id)
        if product is None:
            continue
        title = None
        if product.brand is None and product.category is not None and "." not in product.category:
            # Logs without a taxonomy (Online Retail): the title's head is the only description there is.
            title = " ".join(clean_text(product.title).split()[:MAX_TITLE_WORDS]) or None
        item = ItemFacts(
            event=_EVENT_WORDS.get(recent.event_type, recent.event_type),
            category=product.category,
            brand=clean_text(product.brand) if product.brand else None,
            band=price_band(product.price) if product.price is not None else None,
            title=title,
        )
        for i, prev in enumerate(items):
            if replace(prev, count=1) == item:
                items[i] = replace(prev, count=prev.count + 1)
                break
        else:
            items.append(item)
    query = clean_text(ctx.last_query) if ctx.last_query else None
    return ContextFacts(placement, tuple(items[:MAX_ITEMS]), query or None, rules or MerchRules())


def _render_item(item: ItemFacts) -> str:
    parts = [item.event]
    if item.title:
        parts.append(item.title)
    elif item.category:
        parts.append(leaf_path(item.category))
    if item.brand:
        parts.append(item.brand)
    if item.band:
        parts.append(item.band)
    if item.count > 1:
        parts.append(f"x{item.count}")
    return " ".join(parts)


def render(facts: ContextFacts) -> str:
    sections = [facts.placement.value]
    sections.append(" ; ".join(_render_item(i) for i in facts.items) if facts.items else "no items")
    if facts.query:
        sections.append(f"q: {facts.query}")
    rules = facts.rules
    if rules.boost:
        sections.append("boost: " + " ".join(leaf_path(c) for c in rules.boost))
    if rules.exclude:
        sections.append("exclude: " + " ".join(leaf_path(c) for c in rules.exclude))
    if rules.campaign:
        sections.append("campaign: " + clean_text(rules.campaign))
    return KEYWORD_SEPARATOR.join(sections)


def theme_input(context: str) -> str:
    return THEME_PREFIX + context


def keywords_input(context: str, theme: str) -> str:
    return f"{KEYWORDS_PREFIX}{clean_text(theme, 120)}{THEME_SEPARATOR}{context}"


def format_keywords(keywords: Sequence[str]) -> str:
    """``kw1 | kw2``; what ``parse_keywords`` could not give back unchanged (a separator, odd spacing, a
    repeat) is refused rather than silently altered."""
    for kw in keywords:
        if not kw or "|" in kw or kw != " ".join(kw.split()):
            raise ValueError(f"keyword {kw!r} cannot be written in the keyword format")
    if len(set(keywords)) != len(keywords):
        raise ValueError(f"repeated keyword in {list(keywords)!r}")
    return KEYWORD_SEPARATOR.join(keywords)


def parse_keywords(text: str) -> list[str]:
    """Inverse of ``format_keywords``; tolerant of spacing, drops empties and repeats (a model may emit them)."""
    out: list[str] = []
    for part in text.split("|"):
        kw = " ".join(part.split())
        if kw and kw not in out:
            out.append(kw)
    return out


def price_band(price: float) -> str:
    """Powers-of-two bands: cheap to compute, wide enough that a session stays in one or two."""
    if price < 1.0:
        return "0-1"
    low = 2 ** int(math.log2(price))
    return f"{low}-{low * 2}"
