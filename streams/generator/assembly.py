"""Turning a regeneration request (and, when there is one, a plan of themes and keywords) into a storefront.

Placements are filled in page order and no product appears on two placements of one page. A placement
whose plan was rejected, or a page whose retrieval failed, is filled by the traditional strategy for
that placement kind: the same strategies are the control arm, so a failure degrades a page to what
the control arm shows, never to nothing.

Coherence (``streams.generator.coherence``): every item honours its theme's scope (categories, brand, price
bound), whatever signal proposed it; two items of one title and price never share a page; a kind's diversity
floor (``VITRINE_DIVERSITY_FLOOR``) holds where the candidates allow. A theme whose scope the candidates cannot
fill completely is not shown: the placement falls back to its control theme, so no placement is empty or
promises what it does not show. The finished page is checked and what broke is counted
(``vitrine_coherence_violations_total``).

Merchandising rules (``streams.generator.merch``): no placement shows a product of an excluded category or brand,
whatever signal proposed it; a themed placement takes the boosted products among its fused candidates first (in
fusion's order), then the others, so a boost moves its products up without inventing candidates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, zip_longest

from models.context import PlacementKind, ProductFacts, ProductLookup
from streams.contracts.regen import RankerCandidates, RegenRequest
from streams.contracts.storefront import (
    Arm,
    Item,
    ItemSource,
    Latency,
    Placement,
    Quality,
    Scope,
    StorefrontUpdate,
)
from streams.generator import coherence
from streams.generator.fusion import Fused, FusionWeights, fuse
from streams.generator.layout import OWN_SPAN, OWN_THEMES, OwnShelf, Shelf, bought, own_products, page_layout
from streams.generator.merch import NO_RULES, ActiveRules
from streams.generator.ranking import Candidates, PageSignals, Scorer, best_source, feature_rows
from streams.generator.retrieval import RetrievalError, Retriever
from streams.runtime import metrics
from streams.runtime.settings import DEFAULT_DIVERSITY_FLOOR, ShelfName

log = logging.getLogger(__name__)

# Tuned with the offline replay on REES46 under the fair protocol (docs/eval/fusion-weights.md): a grid of per-signal
# factors on the hand-set weights (``streams.evaluation.tuning.BASE``: retrieval x0.5/1/2, co-visitation x0.5/1/2,
# category x0.5/1, popularity x0/1, diversity x0/1, same factor for every kind), scored by hit@12 on the next novel
# product over the earliest 60% of the 2019-Oct-head events with the catalog-teacher cascade, every page ranking only
# products known before it; chosen: retrieval x0.5, co-visitation x2, popularity and diversity x0. On the later 40%
# it lifted hit@12 from 0.128 to 0.163 (session-kNN: 0.173, paired -0.010 [-0.018, -0.003]). Command: `vitrine eval
# ../shared/data/rees46/2019-Oct-head.csv --catalog var/catalog-rees46 --tune 0.6 --out docs/eval/fusion-weights.md`.
# Tuned for accuracy on one clickstream: diversity 0 drops the MMR step.
DEFAULT_WEIGHTS: dict[PlacementKind, FusionWeights] = {
    PlacementKind.HERO: FusionWeights(retrieval=0.5, covisitation=1.6, category=0.4, popularity=0.0, diversity=0.0),
    PlacementKind.BECAUSE_YOU_VIEWED: FusionWeights(
        retrieval=0.25, covisitation=2.0, category=0.3, popularity=0.0, diversity=0.0
    ),
    PlacementKind.EXPLORE: FusionWeights(retrieval=0.5, covisitation=0.4, category=0.5, popularity=0.0, diversity=0.0),
    PlacementKind.DEALS: FusionWeights(retrieval=0.3, covisitation=0.4, category=0.5, popularity=0.0, diversity=0.0),
}
CONTROL_THEMES: dict[PlacementKind, str] = {
    PlacementKind.HERO: "Picked for you",
    PlacementKind.BECAUSE_YOU_VIEWED: "Because you viewed",
    PlacementKind.EXPLORE: "Explore more",
    PlacementKind.DEALS: "Popular right now",
}
# An own shelf without the shopper's own products (all hidden or out of stock) promises nothing of them.
OWN_FALLBACK_THEME = "Recommended for you"
MIN_RETRIEVED = 3  # a plan whose keywords find fewer products than this is not worth a placement


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    """A theme and keywords for one placement, with the quality filter's verdict on them."""

    kind: PlacementKind
    theme: str
    keywords: list[str]
    quality: Quality = field(default_factory=lambda: Quality(ok=True))
    scope: Scope = field(default_factory=Scope)  # what the theme promises (``models.themes.ThemeReader``)


def traditional_signals(kind: PlacementKind, ranker: RankerCandidates) -> dict[ItemSource, list[str]]:
    """The control arm's candidates for one placement kind, from the request's ranker lists (categories in the
    request's order: the latest product's category first, then the session's top ones)."""
    by_category = [[p for p, _ in products] for products in ranker.by_category.values()]
    if kind is PlacementKind.EXPLORE:  # the session's lesser interests first
        by_category = by_category[1:] + by_category[:1]
    interleaved = [p for p in chain.from_iterable(zip_longest(*by_category)) if p is not None]
    return {
        ItemSource.COVISITATION: [p for p, _ in ranker.covisited],
        ItemSource.CATEGORY: list(dict.fromkeys(interleaved)),
        ItemSource.POPULARITY: [p for p, _ in ranker.popular],
    }


def _top_up(ranker: RankerCandidates) -> Iterator[Fused]:
    """What fills a placement its own signals could not: the categories (the latest product's first), then popular
    products, then co-visited ones (popularity weighs 0 in some kinds, and early in a stream the lists are short)."""
    for product, _ in chain.from_iterable(ranker.by_category.values()):
        yield Fused(product, 0.0, ItemSource.CATEGORY)
    for product, _ in ranker.popular:
        yield Fused(product, 0.0, ItemSource.POPULARITY)
    for product, _ in ranker.covisited:
        yield Fused(product, 0.0, ItemSource.COVISITATION)


@dataclass(slots=True)
class _Page:
    """What placements filled so far hold (products, near-duplicate keys: never shown twice on a page), with what
    no placement shows (``taken`` starts with the hidden and unavailable products) and what only buy-again shows."""

    taken: set[str]
    bought: set[str]
    keys: set[tuple[str, float]] = field(default_factory=set)
    signals: PageSignals | None = None  # with a learned ranker: the request's channels and affinities, indexed once
    rules: ActiveRules = NO_RULES  # excluded products are kept off every placement, boosted ones go first

    def add(self, chosen: Sequence[Fused], products: ProductLookup) -> None:
        self.taken.update(f.product_id for f in chosen)
        self.keys.update(k for k in (coherence.duplicate_key(products(f.product_id)) for f in chosen) if k)


class StorefrontAssembler:
    def __init__(
        self,
        *,
        retriever: Retriever | None,
        products: ProductLookup,
        items_per_placement: int = 6,
        weights: dict[PlacementKind, FusionWeights] | None = None,
        unavailable: set[str] | None = None,
        diversity_floor: Mapping[ShelfName, int] | None = None,
        learned: Scorer | None = None,
    ) -> None:
        """``products``: the catalog's facts (category, brand, price, title) of a product, None when unknown.
        ``learned``: the learned fusion (``streams.generator.ranking``); None: weighted reciprocal-rank fusion."""
        self.learned = learned
        self.retriever = retriever
        self.products = products
        # Out-of-stock products, kept off every placement whatever signal proposes them; the retriever's
        # stock overlay when there is one (one set, updated from the catalog-updates topic).
        self.unavailable = unavailable if unavailable is not None else (retriever.out_of_stock if retriever else set())
        self.items_per_placement = items_per_placement
        self.weights = weights or DEFAULT_WEIGHTS
        floor = DEFAULT_DIVERSITY_FLOOR if diversity_floor is None else diversity_floor
        self.diversity_floor: dict[str, int] = {str(kind): n for kind, n in floor.items()}

    def facts(self, product_id: str) -> tuple[str | None, str | None]:
        """(category, brand): what fusion's diversity step compares."""
        product = self.products(product_id)
        return (product.category, product.brand) if product is not None else (None, None)

    def assemble(
        self,
        request: RegenRequest,
        *,
        arm: Arm,
        plans: Sequence[PlacementPlan] | None = None,
        model_version: str | None = None,
        generation_ms: float = 0.0,
        degraded_reasons: Sequence[str] = (),
        hide: frozenset[str] = frozenset(),
        rules: ActiveRules = NO_RULES,
    ) -> StorefrontUpdate:
        """``hide``: products kept off this page besides the bought and unavailable ones (the offline evaluation
        hides the session's own products when it scores the next novel product; serving hides none).
        ``rules``: the merchandising rules in force (the planner's plans were written under the same)."""
        started = time.perf_counter()
        reasons = list(degraded_reasons)
        ctx = request.context
        hidden = bought(ctx) | self.unavailable | hide
        plan_of = {p.kind: p for p in plans or ()}
        usable = [p for p in plans or () if p.quality.ok and p.keywords]
        hits: dict[PlacementKind, dict[str, float]] = {}  # product -> cosine, best first
        retrieval_ms = 0.0
        if usable and self.retriever is not None:
            t0 = time.perf_counter()
            try:
                found = self.retriever.search([p.keywords for p in usable], exclude=hidden)
                hits = {p.kind: {h.product_id: h.score for h in hs} for p, hs in zip(usable, found, strict=True)}
            except RetrievalError as exc:
                log.warning("retrieval failed, traditional fallback", extra={"error": str(exc)})
                reasons.append(f"retrieval: {exc}")
            retrieval_ms = (time.perf_counter() - t0) * 1000
        elif usable:
            reasons.append("retrieval: no vector store configured")

        t1 = time.perf_counter()
        signals = PageSignals.of(request) if self.learned is not None else None
        page = _Page(taken=set(self.unavailable | hide), bought=bought(ctx), signals=signals, rules=rules)
        placements: list[Placement] = []
        for shelf in page_layout(ctx):
            if isinstance(shelf, OwnShelf):
                placements.append(self._own(shelf, request, page, arm))
            else:
                placements.append(self._themed(shelf, plan_of.get(shelf), hits, request.ranker, page, arm))
        fusion_ms = (time.perf_counter() - t1) * 1000
        now_ms = int(time.time() * 1000)
        total_ms = generation_ms + (time.perf_counter() - started) * 1000
        update = StorefrontUpdate(
            session_id=request.session_id,
            user_id=request.user_id,
            version=request.version,
            event_ts=request.event_ts,
            requested_at_ms=request.requested_at_ms,
            published_at_ms=now_ms,
            trigger=request.reason,
            arm=arm,
            placements=placements,
            degraded=bool(reasons),
            degraded_reasons=reasons,
            model_version=model_version,
            latency_ms=Latency(
                generation=round(generation_ms, 3),
                retrieval=round(retrieval_ms, 3),
                fusion=round(fusion_ms, 3),
                total=round(total_ms, 3),
                request_to_publish=float(max(0, now_ms - request.requested_at_ms)) if request.requested_at_ms else 0.0,
            ),
        )
        for rule, n in coherence.violations(update, self.products, self.diversity_floor, rules).items():
            metrics.COHERENCE_VIOLATIONS.labels(rule=rule.value).inc(n)
        return update

    def _themed(
        self,
        kind: PlacementKind,
        plan: PlacementPlan | None,
        hits: dict[PlacementKind, dict[str, float]],
        ranker: RankerCandidates,
        page: _Page,
        arm: Arm,
    ) -> Placement:
        """A generated placement: its plan's retrieval fused with the ranker lists, held to its theme's scope; the
        control theme and the ranker lists when there is no usable plan or the scope cannot be filled."""
        ranked = traditional_signals(kind, ranker)
        quality = plan.quality if plan is not None else Quality(ok=True)
        generated = kind in hits and len(hits[kind]) >= MIN_RETRIEVED
        if kind in hits and not generated:
            quality = Quality(ok=False, reasons=[*quality.reasons, "few_products"])
        if generated:
            ranked[ItemSource.RETRIEVAL] = list(hits[kind])
        scope = plan.scope if plan is not None and generated else Scope()
        blocked = page.taken | page.bought
        retrieved = hits[kind] if generated else {}
        chosen = self._fill(kind, ranked, ranker, scope, page, blocked, self.items_per_placement, retrieved)
        if generated and len(chosen) < self.items_per_placement:
            # The candidates cannot honour the theme in full: the control theme, which promises nothing.
            generated, scope = False, Scope()
            quality = Quality(ok=False, reasons=[*quality.reasons, "theme_unfilled"])
            chosen = self._fill(kind, ranked, ranker, scope, page, blocked, self.items_per_placement, retrieved)
        page.add(chosen, self.products)
        return Placement(
            kind=kind.value,
            theme=plan.theme if plan is not None and generated else CONTROL_THEMES[kind],
            keywords=plan.keywords if plan is not None and generated else [],
            items=[Item(product_id=f.product_id, score=f.score, source=f.source) for f in chosen],
            quality=quality,
            fallback=arm is not Arm.CONTROL and not generated,
            scope=scope,
        )

    def _own(self, shelf: OwnShelf, request: RegenRequest, page: _Page, arm: Arm) -> Placement:
        """A shelf of the shopper's own products (up to ``OWN_SPAN`` placements' worth), topped up to one
        placement's worth from the ranker lists as ``because_you_viewed`` fuses them."""
        source = ItemSource.PURCHASE_HISTORY if shelf is OwnShelf.BUY_AGAIN else ItemSource.RECENTLY_VIEWED
        blocked = page.taken  # the own products were chosen for this shelf (bought ones only on buy-again)
        mine = self._own_order(shelf, own_products(shelf, request.context), source, page)
        floor = self.diversity_floor.get(shelf.value, 1)
        n = self.items_per_placement
        chosen = _select(mine, OWN_SPAN[shelf] * n, floor, Scope(), self.products, page, blocked)
        page.add(chosen, self.products)
        if len(chosen) < n:
            kind = PlacementKind.BECAUSE_YOU_VIEWED
            fill = traditional_signals(kind, request.ranker)
            extra = self._fill(kind, fill, request.ranker, Scope(), page, page.taken | page.bought, n - len(chosen))
            page.add(extra, self.products)
            chosen = [*chosen, *extra]
        own = any(f.source is source for f in chosen)
        return Placement(
            kind=shelf.value,
            theme=OWN_THEMES[shelf] if own else OWN_FALLBACK_THEME,
            keywords=[],
            items=[Item(product_id=f.product_id, score=f.score, source=f.source) for f in chosen],
            quality=Quality(ok=True),
            fallback=arm is not Arm.CONTROL and not own,
        )

    def _fill(
        self,
        kind: PlacementKind,
        ranked: dict[ItemSource, list[str]],
        ranker: RankerCandidates,
        scope: Scope,
        page: _Page,
        blocked: set[str],
        n: int,
        retrieved: Mapping[str, float] | None = None,
    ) -> list[Fused]:
        """Up to ``n`` products in the scope: the fused signals, then the ranker lists (top-up); nothing
        ``blocked`` and no near-duplicate of what is on the page, the kind's diversity floor kept where it can be."""
        admitted = {
            source: [p for p in products if p not in blocked and coherence.admits(scope, self.products(p))]
            for source, products in ranked.items()
        }
        if self.learned is not None and page.signals is not None and kind in self.learned.shelves:
            pool = list(dict.fromkeys(chain.from_iterable(admitted.values())))
            fused: Iterable[Fused] = self._by_model(Candidates(kind, pool, retrieved or {}), page.signals)
        else:
            fused = fuse(admitted, self.weights[kind], n=sum(map(len, admitted.values())), facts=self.facts)
        if page.rules.boosting:  # stable: fusion's order within the boosted and within the rest
            fused = sorted(fused, key=lambda f: not page.rules.boosts(self.products(f.product_id)))
        top_up = (f for f in _top_up(ranker) if coherence.admits(scope, self.products(f.product_id)))
        floor = self.diversity_floor.get(kind.value, 1) if coherence.floor_applies(scope) else 1
        return _select(chain(fused, top_up), n, floor, scope, self.products, page, blocked)

    def _by_model(self, candidates: Candidates, signals: PageSignals) -> Iterator[Fused]:
        """The candidates by the learned ranker's score, best first (ties by product id); lazily, so only the items
        a placement takes are given a source."""
        assert self.learned is not None
        scores = self.learned.scores(candidates, feature_rows(signals, candidates, self.products))
        retrieval_ranks = {p: rank for rank, p in enumerate(candidates.retrieval)}
        for i in sorted(range(len(candidates.products)), key=lambda i: (-scores[i], candidates.products[i])):
            product = candidates.products[i]
            yield Fused(product, round(float(scores[i]), 6), best_source(signals, retrieval_ranks, product))

    def _own_order(self, shelf: Shelf, own: list[str], source: ItemSource, page: _Page) -> Iterator[Fused]:
        """An own shelf's products: as the context lists them (reciprocal rank), or by the learned ranker."""
        if self.learned is None or page.signals is None or shelf not in self.learned.shelves:
            return (Fused(p, round(1.0 / (1 + rank), 6), source) for rank, p in enumerate(own))
        return (Fused(f.product_id, f.score, source) for f in self._by_model(Candidates(shelf, own), page.signals))


def _select(
    candidates: Iterator[Fused],
    n: int,
    floor: int,
    scope: Scope,
    products: ProductLookup,
    page: _Page,
    blocked: set[str],
) -> list[Fused]:
    """The first ``n`` candidates not on the page and no near-duplicate of a chosen item, passing over one that
    adds no new group while the floor still needs every remaining slot (kept for the end, if nothing better)."""
    chosen: list[Fused] = []
    keys: set[tuple[str, float]] = set()
    groups: set[str | None] = set()
    passed: list[tuple[Fused, ProductFacts | None]] = []
    seen: set[str] = set()
    for candidate in candidates:
        if len(chosen) == n:
            break
        if candidate.product_id in blocked or candidate.product_id in seen:
            continue
        seen.add(candidate.product_id)
        product = products(candidate.product_id)
        if page.rules.excludes(product):
            continue
        key = coherence.duplicate_key(product)
        if key is not None and (key in page.keys or key in keys):
            continue
        g = coherence.group(scope, product, candidate.product_id)
        if g in groups and floor - len(groups) >= n - len(chosen):
            passed.append((candidate, product))
            continue
        chosen.append(candidate)
        groups.add(g)
        if key is not None:
            keys.add(key)
    for candidate, product in passed:
        key = coherence.duplicate_key(product)
        if len(chosen) < n and (key is None or key not in keys):
            chosen.append(candidate)
            if key is not None:
                keys.add(key)
    return chosen
