"""What a written theme promises, read from its text: the categories it names, its brand, its price bound.

The theme is what the shopper reads, whoever wrote it (the catalog teacher or the student, which only writes
text), so its promises are read from the text and the page is held to them: ``Deals on smartphones under
$256`` admits smartphones at $256 or less, ``Premium Apple smartphones`` admits Apple smartphones. Training,
serving and evaluation read themes with this one reader.

- Category: the category label (``models.teacher_catalog.category_label``, the plural of a taxonomy leaf)
  named last in the theme, since themes name the target after the anchor (``Because you viewed smartphones:
  headphones``); every catalog category with that label is admitted.
- Brand: a brand of the session's context (the only brands a writer sees) named as a whole word.
- Price: ``under $X``. Tiers (``Premium``, ``on a budget``) name no number and bound nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from models.context import ContextFacts
from models.teacher_catalog import category_label
from streams.contracts.storefront import Scope

_UNDER = re.compile(r"\bunder \$\s?(\d[\d,]*(?:\.\d+)?(?:e\+?\d+)?)", re.IGNORECASE)


class ThemeReader:
    """Reads ``Scope`` from theme text against the catalog's categories (built once per catalog)."""

    def __init__(self, categories: Iterable[str]) -> None:
        self._by_label: dict[str, set[str]] = {}
        for category in set(categories):
            self._by_label.setdefault(category_label(category).lower(), set()).add(category)
        labels = sorted(self._by_label, key=lambda label: (-len(label), label))  # longest first at one position
        self._labels = re.compile(r"\b(" + "|".join(re.escape(label) for label in labels) + r")\b") if labels else None

    def scope(self, theme: str, brands: Iterable[str]) -> Scope:
        text = theme.lower()
        categories: list[str] = []
        if self._labels is not None:
            named = list(self._labels.finditer(text))
            if named:
                last = max(named, key=lambda m: (m.end(), len(m.group(1))))
                categories = sorted(self._by_label[last.group(1)])
        brand = next(
            (b for b in dict.fromkeys(b.lower() for b in brands if b) if re.search(rf"\b{re.escape(b)}\b", text)),
            None,
        )
        under = _UNDER.search(theme)
        max_price = float(under.group(1).replace(",", "")) if under else None
        return Scope(categories=categories, brand=brand, max_price=max_price)


def seen_brands(facts: ContextFacts, affinities: Sequence[str]) -> list[str]:
    """The brands a writer saw, the only ones its theme can name: its context's items' and the session's brand
    affinities."""
    return [i.brand for i in facts.items if i.brand] + list(affinities)
