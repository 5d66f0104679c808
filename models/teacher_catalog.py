"""The offline teacher: themes and keywords from the catalog and the log, no network, deterministic.

Every choice is a function of what the context shows (its items, query, rules), the catalog
(category price medians, the keyword vocabulary) and category co-occurrence counted from the
training log, so a student reading the same context can learn to reproduce it:

- hero: the session's main intent (heaviest category by event weight, its brand, its price tier
  against the category's median price); a boosted category or a search query takes over.
- because_you_viewed: the most recent item's category and the category most often seen with it.
- explore: the category most often seen with the main one in another department (top level).
- deals: the main category under the upper bound of its price band; a campaign line leads.

Keywords are 3-5 of the placement's retrieval candidates, those of the placement's target category
and brand first, so they are always inside the vocabulary and reachable by the constrained student.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.candidates import KeywordFacts
from models.context import ContextFacts, ItemFacts, PlacementKind, clean_text, in_categories
from models.teacher import TeacherInput
from streams.contracts.events import ClickEvent

EVENT_WEIGHT = {"view": 1.0, "cart": 3.0, "buy": 4.0, "remove": 0.5, "search": 0.0}
MIN_PAIR_SUPPORT = 2
POPULAR_EXPLORE = 16
MIN_KEYWORDS, MAX_KEYWORDS = 3, 5
_UNCOUNTABLE = ("ing", "wear", "ware", "s", "equipment", "furniture", "electronics", "jewelry", "decor")
_ACRONYM_MAX = 3


def plural(noun: str) -> str:
    """English plural of a taxonomy leaf, good enough for shop headings (``sofa`` -> ``sofas``)."""
    words = noun.replace("_", " ").split()
    if not words:
        return noun
    last = words[-1]
    if last.endswith(_UNCOUNTABLE):
        pass
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("ch", "sh", "x", "z")):
        last += "es"
    else:
        last += "s"
    return " ".join([*words[:-1], last])


def category_label(category: str) -> str:
    return plural(category.split(".")[-1])


def brand_label(brand: str) -> str:
    return brand.upper() if len(brand) <= _ACRONYM_MAX else brand.title()


def _band_bounds(band: str | None) -> tuple[float, float] | None:
    if not band or "-" not in band:
        return None
    low, high = band.split("-", 1)
    try:
        return float(low), float(high)
    except ValueError:
        return None


class CoOccurrence:
    """How often two categories appear in one session, counted once per session."""

    def __init__(self, pairs: Counter[tuple[str, str]], sessions: Counter[str]) -> None:
        self._sessions = sessions
        self._neighbours: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for (a, b), n in pairs.items():
            if n < MIN_PAIR_SUPPORT:
                continue
            score = n / math.sqrt(sessions[a] * sessions[b])  # cosine: popular categories do not win everything
            self._neighbours[a].append((score, b))
            self._neighbours[b].append((score, a))
        for neighbours in self._neighbours.values():
            neighbours.sort(key=lambda sb: (-sb[0], sb[1]))

    @classmethod
    def from_events(cls, events: Iterable[ClickEvent]) -> CoOccurrence:
        per_session: dict[str, set[str]] = defaultdict(set)
        for event in events:
            if event.category:
                per_session[event.session_id].add(event.category)
        pairs: Counter[tuple[str, str]] = Counter()
        sessions: Counter[str] = Counter()
        for categories in per_session.values():
            ordered = sorted(categories)
            sessions.update(ordered)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    pairs[a, b] += 1
        return cls(pairs, sessions)

    def neighbours(self, category: str) -> list[str]:
        return [c for _, c in self._neighbours.get(category, [])]

    def popular(self) -> list[str]:
        return [c for c, _ in sorted(self._sessions.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a placement is about: the category its theme names and its keywords should come from."""

    theme: str
    target: str | None
    brand: str | None


class CatalogTeacher:
    def __init__(
        self,
        *,
        keywords: Sequence[KeywordFacts],
        category_prices: dict[str, list[float]],
        cooccurrence: CoOccurrence,
    ) -> None:
        self._kw = {k.keyword: k for k in keywords}
        self._median = {c: statistics.median(p) for c, p in category_prices.items() if p}
        self._co = cooccurrence

    @classmethod
    def build(
        cls,
        *,
        keywords: Sequence[KeywordFacts],
        products: Iterable[tuple[str | None, float | None]],
        events: Iterable[ClickEvent],
    ) -> CatalogTeacher:
        """``products``: (category, price) of every catalog product; ``events``: the training log."""
        prices: dict[str, list[float]] = defaultdict(list)
        for category, price in products:
            if category and price:
                prices[category].append(price)
        return cls(keywords=keywords, category_prices=prices, cooccurrence=CoOccurrence.from_events(events))

    def popular_categories(self) -> list[str]:
        """Categories by sessions seen in the log, most first."""
        return self._co.popular()

    # --- Teacher protocol --------------------------------------------------------------

    def themes(self, contexts: list[TeacherInput]) -> list[str]:
        return [self.plan(c.facts).theme for c in contexts]

    def keywords(self, contexts: list[TeacherInput], themes: list[str], candidates: list[list[str]]) -> list[list[str]]:
        return [
            self.choose_keywords(c.facts, theme, cands)
            for c, theme, cands in zip(contexts, themes, candidates, strict=True)
        ]

    # --- themes ------------------------------------------------------------------------

    def plan(self, facts: ContextFacts) -> Plan:
        exclude = facts.rules.exclude
        items = [i for i in facts.items if not in_categories(i.category, exclude)]
        main, brand, band = self._main(items)
        placement = facts.placement
        if placement is PlacementKind.HERO:
            return self._hero(facts, main, brand, band)
        if placement is PlacementKind.BECAUSE_YOU_VIEWED:
            return self._because(items, main, exclude)
        if placement is PlacementKind.EXPLORE:
            return self._explore(items, main, exclude)
        return self._deals(facts, main, brand, band)

    def _main(self, items: list[ItemFacts]) -> tuple[str | None, str | None, str | None]:
        """Heaviest category (ties: most recent), its heaviest brand and its most recent price band."""
        weight: dict[str | None, float] = {}
        for item in items:  # most recent first, so insertion order breaks ties by recency
            weight[item.category] = weight.get(item.category, 0.0) + EVENT_WEIGHT.get(item.event, 1.0) * item.count
        categorised = {c: w for c, w in weight.items() if c is not None}
        main = max(categorised, key=lambda c: categorised[c]) if categorised else None
        brands: dict[str, float] = {}
        for item in items:
            if item.brand and item.category == main:
                brands[item.brand] = brands.get(item.brand, 0.0) + EVENT_WEIGHT.get(item.event, 1.0) * item.count
        brand = max(brands, key=lambda b: brands[b]) if brands else None
        band = next((i.band for i in items if i.category == main and i.band), None)
        return main, brand, band

    def _tier(self, category: str, band: str | None) -> str:
        bounds, median = _band_bounds(band), self._median.get(category)
        if bounds is None or not median:
            return "mid"
        middle = (bounds[0] + bounds[1]) / 2
        if middle >= 2 * median:
            return "premium"
        if middle <= median / 2:
            return "budget"
        return "mid"

    def _hero(self, facts: ContextFacts, main: str | None, brand: str | None, band: str | None) -> Plan:
        boost = next((b for b in facts.rules.boost if not in_categories(b, facts.rules.exclude)), None)
        if boost is not None:
            return Plan(f"Featured {category_label(boost)}", boost, None)
        if facts.query:
            return Plan(f"Top picks for {facts.query}", main, brand)
        if main is None:
            return Plan(f"More from {brand_label(brand)}" if brand else "Trending now", None, brand)
        label = category_label(main)
        named = f"{brand_label(brand)} {label}" if brand else label
        tier = self._tier(main, band)
        if tier == "premium":
            return Plan(f"Premium {named}", main, brand)
        if tier == "budget":
            return Plan(f"{named[0].upper()}{named[1:]} on a budget", main, brand)
        return Plan(f"Popular {named}", main, brand)

    def _because(self, items: list[ItemFacts], main: str | None, exclude: Sequence[str]) -> Plan:
        anchor = next((i for i in items if i.category), None)
        if anchor is None or anchor.category is None:
            brand = next((i.brand for i in items if i.brand), None)
            if brand is not None:
                return Plan(f"Because you viewed {brand_label(brand)}", None, brand)
            return Plan("Inspired by your visit", main, None)
        related = next(
            (c for c in self._co.neighbours(anchor.category) if c != anchor.category and not in_categories(c, exclude)),
            None,
        )
        label = category_label(anchor.category)
        head = f"Because you viewed {label}" if anchor.event == "view" else f"Goes with your {label}"
        if related is None:
            return Plan(f"{head}: more {label}", anchor.category, None)
        return Plan(f"{head}: {category_label(related)}", related, None)

    def _explore(self, items: list[ItemFacts], main: str | None, exclude: Sequence[str]) -> Plan:
        seen = {i.category for i in items if i.category}
        departments = {c.split(".")[0] for c in seen}
        neighbours = self._co.neighbours(main) if main else []
        elsewhere = [c for c in self._co.popular()[:POPULAR_EXPLORE] if c.split(".")[0] not in departments]
        if elsewhere and main is not None:
            # No neighbour: a popular category of another department, picked by the main category so that
            # sessions about different things are sent to different places, yet always the same one.
            shift = int.from_bytes(hashlib.blake2b(main.encode(), digest_size=4).digest(), "little")
            elsewhere = elsewhere[shift % len(elsewhere) :] + elsewhere[: shift % len(elsewhere)]
        pools = (
            [c for c in neighbours if c.split(".")[0] not in departments],
            [c for c in neighbours if c not in seen],
            elsewhere,
            [c for c in self._co.popular() if c not in seen],
        )
        target = next((c for pool in pools for c in pool if not in_categories(c, exclude)), None)
        if target is None:
            return Plan("Explore something new", None, None)
        return Plan(f"Explore {category_label(target)}", target, None)

    def _deals(self, facts: ContextFacts, main: str | None, brand: str | None, band: str | None) -> Plan:
        if main is not None:
            bounds = _band_bounds(band)
            theme = f"deals on {category_label(main)}" + (f" under ${bounds[1]:g}" if bounds else "")
        elif brand is not None:
            theme = f"deals on {brand_label(brand)}"
        else:
            theme = "today's best deals"
        if facts.rules.campaign:
            theme = f"{clean_text(facts.rules.campaign)}: {theme}"
        return Plan(theme[0].upper() + theme[1:], main, brand)

    # --- keywords ----------------------------------------------------------------------

    def choose_keywords(self, facts: ContextFacts, theme: str, candidates: Sequence[str]) -> list[str]:
        """Candidates of the placement's target category and brand first, then by candidate rank; 3-5 of them."""
        plan = self.plan(facts)
        target, brand = plan.target, plan.brand
        parent = target.rsplit(".", 1)[0] if target and "." in target else None
        theme_words = set(theme.lower().replace(":", " ").split())
        scored: list[tuple[float, int, str]] = []
        for rank, word in enumerate(candidates):
            kw = self._kw.get(word)
            if kw is None or in_categories(kw.category, facts.rules.exclude):
                continue
            score = 0.0
            if target is not None and kw.category == target:
                score += 3.0
            elif parent is not None and kw.category is not None and kw.category.startswith(parent + "."):
                score += 1.0
            if brand is not None and word.split(" ", 1)[0] == brand and kw.kind in ("brand", "brand_category"):
                score += 2.0
            if theme_words & set(word.split()):
                score += 0.5
            scored.append((score, rank, word))
        scored.sort(key=lambda s: (-s[0], s[1]))
        strong = [w for s, _, w in scored if s >= 2.0][:MAX_KEYWORDS]
        rest = [w for _, _, w in scored if w not in strong]
        return strong + rest[: max(0, MIN_KEYWORDS - len(strong))]
