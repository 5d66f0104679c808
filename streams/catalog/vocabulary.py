"""The keyword vocabulary the student's keyword decoding is constrained to, derived from the catalog.

Kinds: ``category`` (category leaves, "water heater", and whole paths of up to four words,
"appliances environment water heater"), ``brand_category`` ("samsung smartphone"), ``brand``, and
``phrase`` (frequent 1-3-word phrases of real product descriptions, "t-light holder"). ``count`` is
the number of products behind a keyword; ``category`` is the deepest dot path that all of them share.
A keyword appears once (the first kind in that order wins); the order is deterministic; the size is capped,
keeping the best-supported keywords.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from streams.catalog.products import Product, ProductSource


class KeywordKind(StrEnum):
    CATEGORY = "category"
    BRAND_CATEGORY = "brand_category"
    BRAND = "brand"
    PHRASE = "phrase"


KIND_ORDER = {kind: i for i, kind in enumerate(KeywordKind)}
MAX_WORDS = 4
PHRASE_WORDS = 3

# Function words that cannot start or end a phrase. A stop-word library would bring a dependency
# (and a download) for fifty words of shop-description English.
STOP_WORDS = frozenset(
    (  # noqa: SIM905 - a word list reads best as words
        "a an and are as at be by for from in into is it its of off on or set sets the this to with without "
        "s t x pack pk lot assorted asst large small mini medium big i me my you your we our he she"
    ).split()
)
_WORD = re.compile(r"[a-z][a-z'&+-]*[a-z]|[a-z]")
_KEYWORD = re.compile(r"[a-z0-9][a-z0-9'&+.-]*(?: [a-z0-9][a-z0-9'&+.-]*){0,3}")


@dataclass(frozen=True, slots=True)
class Keyword:
    keyword: str
    kind: str
    category: str | None
    count: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Keyword:
        return cls(**data)


def build_vocabulary(
    products: Sequence[Product], *, max_size: int = 5000, min_count: int = 2, phrase_min_count: int = 3
) -> list[Keyword]:
    """Keywords with at least ``min_count`` products (``phrase_min_count`` for phrases), at most ``max_size``."""
    support: dict[tuple[KeywordKind, str], list[Product]] = defaultdict(list)
    for product in products:
        for kind, keyword in _keywords_of(product):
            support[kind, keyword].append(product)

    chosen: dict[str, Keyword] = {}
    for (kind, keyword), backers in sorted(support.items(), key=lambda item: (KIND_ORDER[item[0][0]], item[0][1])):
        needed = phrase_min_count if kind is KeywordKind.PHRASE else min_count
        if keyword in chosen or len(backers) < needed or keyword in STOP_WORDS or not _KEYWORD.fullmatch(keyword):
            continue
        chosen[keyword] = Keyword(keyword, kind.value, _shared_category(backers), len(backers))

    by_support = sorted(chosen.values(), key=lambda k: (-k.count, KIND_ORDER[KeywordKind(k.kind)], k.keyword))
    return sorted(by_support[:max_size], key=lambda k: (KIND_ORDER[KeywordKind(k.kind)], -k.count, k.keyword))


def _keywords_of(product: Product) -> Iterable[tuple[KeywordKind, str]]:
    brand = product.brand.lower().strip() if product.brand else None
    if product.category:
        parts = [p.replace("_", " ").lower() for p in product.category.split(".")]
        yield KeywordKind.CATEGORY, parts[-1]
        if len(parts) > 1 and len(" ".join(parts).split()) <= MAX_WORDS:
            yield KeywordKind.CATEGORY, " ".join(parts)
        if brand:
            yield KeywordKind.BRAND_CATEGORY, f"{brand} {parts[-1]}"
    if brand:
        yield KeywordKind.BRAND, brand
    if product.source != ProductSource.REES46.value:  # REES46 titles are brand + category, already above
        for phrase in set(description_phrases(product.title)):
            yield KeywordKind.PHRASE, phrase


def description_phrases(title: str) -> Iterable[str]:
    """1-3-word runs of words (no digits) that neither start nor end with a stop word."""
    runs: list[list[str]] = [[]]
    for token in title.lower().split():
        word = token.strip(",.;:!?()\"'")
        if _WORD.fullmatch(word):
            runs[-1].append(word)
        else:
            runs.append([])
    for run in runs:
        for n in range(1, PHRASE_WORDS + 1):
            for i in range(len(run) - n + 1):
                gram = run[i : i + n]
                if gram[0] not in STOP_WORDS and gram[-1] not in STOP_WORDS and len(gram[-1]) > 1:
                    yield " ".join(gram)


def _shared_category(products: Sequence[Product]) -> str | None:
    """The longest dot-path prefix common to all the products' categories (None if any has none)."""
    paths = [p.category.split(".") for p in products if p.category]
    if len(paths) < len(products) or not paths:
        return None
    shared: list[str] = []
    for parts in zip(*paths, strict=False):
        if len(set(parts)) != 1:
            break
        shared.append(parts[0])
    return ".".join(shared) or None


def keyword_counts(keywords: Sequence[Keyword]) -> Counter[str]:
    """Keywords per kind, for summaries."""
    return Counter(k.kind for k in keywords)
