"""The generative cascade replayed offline: pages planned and fused as the generator does, from the past alone.

For a scored position the session context is rebuilt from ``History`` the way the session worker would
have sent it (``SessionContext``: the last events with their types, event-weighted category and brand
affinities), the page is planned by the serving code (``streams.generator.planners.placement_inputs`` and
``write_placements``: context text, retrieval-augmented keyword candidates, a writer's themes and
keywords, the candidate verdict), each usable placement's keywords retrieve products, and each placement
fuses retrieval with the traditional signals from ``History`` through ``streams.generator.fusion.fuse`` with the
placement kind's weights, no product on two placements, exactly as ``StorefrontAssembler.assemble`` does,
plus the position's exclusions (items the target cannot count), so every placement keeps its slots.

Retrieval is exact cosine over the catalog's product vectors (``ExactRetriever``): what Qdrant's exact
search returns in local mode, without opening the local store, which one process locks.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.context import PLACEMENTS, ContextFacts, PlacementKind
from models.embedder import Embed
from models.quality import QualityFilter
from models.student import Student
from models.teacher import Teacher, TeacherInput
from models.teacher_catalog import CatalogTeacher
from streams.catalog.artifacts import Catalog
from streams.contracts.events import ClickEvent
from streams.contracts.regen import RankerCandidates, RecentItem, SessionContext
from streams.contracts.storefront import Arm, ItemSource
from streams.evaluation.history import History
from streams.evaluation.protocol import EventLog
from streams.evaluation.strategies import OwnHistory, Placement, Strategy
from streams.generator.assembly import BOUGHT_EVENTS, DEFAULT_WEIGHTS, traditional_signals
from streams.generator.fusion import FusionWeights, fuse
from streams.generator.planners import CANDIDATES, CascadePlanner, StudentWriter
from streams.worker.sessions import ranked
from streams.worker.state import RECENT_ITEMS, TOP_BRANDS, TOP_CATEGORIES

PER_KEYWORD = 24  # KeywordRetriever.per_keyword
PER_LIST = 24  # RankerSignals.per_list: the length of each traditional list in a regeneration request
RANKER_CATEGORIES = 3  # RankerSignals.for_request: the session's top three categories

Weights = Mapping[PlacementKind, FusionWeights]


class ExactRetriever:
    """Keyword -> its ``per_keyword`` nearest in-stock products by exact cosine, computed for the whole
    vocabulary up front (it is finite); a placement gets the union of its keywords' hits, best score first, as
    ``streams.generator.retrieval.KeywordRetriever.search`` returns it."""

    def __init__(self, catalog: Catalog, per_keyword: int = PER_KEYWORD, *, chunk: int = 256) -> None:
        stock = np.array([p.in_stock for p in catalog.products], dtype=bool)
        ids = [p.product_id for p, ok in zip(catalog.products, stock, strict=True) if ok]
        vectors = np.ascontiguousarray(catalog.product_vectors[stock])
        self.per_keyword = per_keyword
        self._hits: dict[str, list[tuple[str, float]]] = {}
        n = min(per_keyword, len(ids))
        # The whole vocabulary at once, a chunk of keywords per matrix product: far cheaper than one query each.
        for start in range(0, len(catalog.keywords), chunk):
            scores = catalog.keyword_vectors[start : start + chunk] @ vectors.T
            top = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n else np.zeros((len(scores), 0), dtype=int)
            for row, keyword in enumerate(catalog.keywords[start : start + chunk]):
                found = [(ids[i], float(scores[row, i])) for i in top[row]]
                self._hits[keyword.keyword] = sorted(found, key=lambda h: (-h[1], h[0]))
        self._used: set[str] = set()

    def hits(self, keyword: str) -> list[tuple[str, float]]:
        self._used.add(keyword)
        return self._hits.get(keyword, [])

    @property
    def cached(self) -> int:
        """Distinct keywords asked for so far."""
        return len(self._used)

    def search(self, placements: Sequence[Sequence[str]], *, exclude: set[str] | frozenset[str]) -> list[list[str]]:
        out: list[list[str]] = []
        for keywords in placements:
            best: dict[str, float] = {}
            for keyword in keywords:
                for product, score in self.hits(keyword):
                    if product not in exclude and score > best.get(product, -2.0):
                        best[product] = score
            out.append(sorted(best, key=lambda p: (-best[p], p)))
        return out


def session_context(history: History, key: str, log: EventLog) -> SessionContext | None:
    """The ``SessionContext`` the worker would send for this context now (None: no events yet)."""
    recent = history.context_recent.get(key)
    if not recent:
        return None
    affinity: dict[int, float] = history.context_affinity.get(key, {})
    categories = {log.categories[c]: w for c, w in affinity.items() if w > 0}
    brands = {b: w for b, w in history.context_brands.get(key, {}).items() if w > 0}
    return SessionContext(
        recent=[RecentItem(log.items[item], kind) for item, kind in recent],
        categories=[c for c, _ in ranked(categories)[:TOP_CATEGORIES]],
        brands=[b for b, _ in ranked(brands)[:TOP_BRANDS]],
        price_bands=[],
        last_query=None,  # searches carry no product and are not replayed
        counts={},
        drift=0.0,
    )


def ranker_candidates(
    history: History, ctx: SessionContext, log: EventLog, *, item_ids: dict[str, int], category_ids: dict[str, int]
) -> RankerCandidates:
    """The request's traditional lists from ``History``: popular, popular in the top categories, co-visited
    with the recent distinct products (weights 1, 1/2, 1/3, ... as ``RankerSignals.covisited``)."""
    popular = [(log.items[i], float(history.popularity[i])) for i in history.popular(PER_LIST)]
    by_category: dict[str, list[tuple[str, float]]] = {}
    for name in ctx.categories[:RANKER_CATEGORIES]:
        cid = category_ids.get(name)
        if cid is not None:
            weights: dict[int, float] = history.category_items.get(cid, {})
            by_category[name] = [(log.items[i], weights[i]) for i in history.category_popular(cid)[:PER_LIST]]
    product_ids = list(dict.fromkeys(item.product_id for item in reversed(ctx.recent)))
    recent = [item_ids[p] for p in product_ids if p in item_ids]
    covisited: list[tuple[str, float]] = []
    if recent:
        weights_by_rank = np.array([1.0 / (pos + 1) for pos in range(len(recent))], dtype=np.float32)
        scores = weights_by_rank @ history.covis[recent]
        scores[recent] = 0.0
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > PER_LIST:
            candidates = candidates[np.argpartition(-scores[candidates], PER_LIST - 1)[:PER_LIST]]
        order = np.lexsort((candidates, -scores[candidates]))
        covisited = [(log.items[int(i)], float(scores[i])) for i in candidates[order]]
    return RankerCandidates(popular=popular, by_category=by_category, covisited=covisited)


def catalog_teacher(catalog: Catalog, log: EventLog, before_ms: int | None) -> CatalogTeacher:
    """The offline catalog teacher; its category co-occurrence counts only events before ``before_ms``
    (None: no events, as ``streams.generator.planners.build_planner`` builds it for serving)."""
    events: list[ClickEvent] = []
    if before_ms is not None:
        events = [
            ClickEvent.model_construct(session_id=e.session, category=log.categories[e.category])
            for e in log.events
            if e.ts < before_ms and e.category >= 0
        ]
    return CatalogTeacher.build(
        keywords=catalog.keywords, products=[(p.category, p.price) for p in catalog.products], events=events
    )


@dataclass(frozen=True, slots=True)
class PlannedPage:
    """What one context's page is fused from: the traditional and retrieval lists per placement."""

    signals: list[tuple[PlacementKind, dict[ItemSource, list[str]]]]
    popular: list[str]
    bought: frozenset[str]


@dataclass(frozen=True, slots=True)
class Written:
    """One placement a writer planned: its input and candidates, and what it wrote."""

    input: TeacherInput
    candidates: tuple[str, ...]
    theme: str
    keywords: list[str]


class CachingWriter:
    """A writer that answers each distinct input once: replayed sessions repeat contexts (the same items,
    the same shelf), and a writer's output is a function of the context (and, for keywords, the theme and
    candidates). Keyed by the structured facts, which render to the text the student reads."""

    def __init__(self, writer: Teacher) -> None:
        self.writer = writer
        self._themes: dict[ContextFacts, str] = {}
        self.written: dict[tuple[ContextFacts, str, tuple[str, ...]], Written] = {}

    def themes(self, contexts: list[TeacherInput]) -> list[str]:
        missing = list({c.facts: c for c in contexts if c.facts not in self._themes}.values())
        if missing:
            self._themes.update(zip((c.facts for c in missing), self.writer.themes(missing), strict=True))
        return [self._themes[c.facts] for c in contexts]

    def keywords(self, contexts: list[TeacherInput], themes: list[str], candidates: list[list[str]]) -> list[list[str]]:
        keys = [(c.facts, t, tuple(k)) for c, t, k in zip(contexts, themes, candidates, strict=True)]
        missing = {key: n for n, key in enumerate(keys) if key not in self.written}
        if missing:
            rows = list(missing.values())
            found = self.writer.keywords(
                [contexts[n] for n in rows], [themes[n] for n in rows], [candidates[n] for n in rows]
            )
            for key, n, kws in zip(missing, rows, found, strict=True):
                self.written[key] = Written(contexts[n], key[2], themes[n], kws)
        return [self.written[key].keywords for key in keys]


@dataclass(slots=True)
class PlanningStats:
    pages: int = 0
    placements: int = 0
    usable: int = 0  # passed the serving verdict and were retrieved
    reasons: Counter[str] = field(default_factory=Counter)


class Planning:
    """Plans pages with one writer from the replayed past through ``CascadePlanner.plan_contexts`` (the
    serving code, quality verdicts included); shared by every cascade strategy of that writer. A page is
    cached per (past, context), so the targets of one position and the variants of a weight grid plan it once.
    """

    def __init__(
        self,
        *,
        history: History,
        log: EventLog,
        catalog: Catalog,
        writer: Teacher,
        retriever: ExactRetriever,
        quality: QualityFilter | None = None,
        embed: Embed | None = None,
    ) -> None:
        self.history = history
        self.log = log
        self.writer = CachingWriter(writer)
        self.planner = CascadePlanner(
            writer=self.writer, catalog=catalog, arm=Arm.TEACHER, version=None, quality=quality, embed=embed
        )
        self.retriever = retriever
        self.category_ids = {name: i for i, name in enumerate(log.categories)}
        self.item_ids = {pid: i for i, pid in enumerate(log.items)}
        self.stats = PlanningStats()
        self._page_key: tuple[int, str] | None = None
        self._page: PlannedPage | None = None
        facts: defaultdict[str, tuple[str | None, str | None]] = defaultdict(lambda: (None, None))
        facts.update((p.product_id, (p.category, p.brand)) for p in catalog.products)
        # fuse() asks for facts about a million times on REES46: a bound C lookup, not a Python method.
        self.facts = facts.__getitem__

    def page(self, context: str | None) -> PlannedPage | None:
        if context is None:
            return None
        key = (self.history.observed, context)
        if key != self._page_key:
            self._page_key, self._page = key, self._plan_page(context)
        return self._page

    def _plan_page(self, context: str) -> PlannedPage | None:
        ctx = session_context(self.history, context, self.log)
        if ctx is None:
            return None
        (plans,) = self.planner.plan_contexts([ctx])
        bought = frozenset(item.product_id for item in ctx.recent if item.event_type in BOUGHT_EVENTS)
        usable = [p for p in plans if p.quality.ok and p.keywords]
        found = self.retriever.search([p.keywords for p in usable], exclude=bought)
        hits = {p.kind: products for p, products in zip(usable, found, strict=True)}
        ranker = ranker_candidates(self.history, ctx, self.log, item_ids=self.item_ids, category_ids=self.category_ids)
        signals = []
        for kind in PLACEMENTS:
            lists = traditional_signals(kind, ranker, ctx.categories)
            if kind in hits:
                lists[ItemSource.RETRIEVAL] = hits[kind]
            signals.append((kind, lists))
        self.stats.pages += 1
        self.stats.placements += len(plans)
        self.stats.usable += len(usable)
        self.stats.reasons.update(r for p in plans for r in p.quality.reasons)
        return PlannedPage(signals, [p for p, _ in ranker.popular], bought)


class Cascade(Strategy):
    """A page of ``len(PLACEMENTS)`` placements of ``per_placement`` items, flattened in page order."""

    def __init__(
        self,
        history: History,
        planning: Planning,
        *,
        name: str,
        description: str,
        weights: Weights = DEFAULT_WEIGHTS,
        per_placement: int = 3,
        sample: float = 1.0,
        notes: Callable[[], list[str]] | None = None,
    ) -> None:
        super().__init__(history)
        self.planning = planning
        self.name = name
        self.description = description
        self.weights = weights
        self.per_placement = per_placement
        self.sample = sample
        self._notes = notes

    def rank(self, context: str | None, n: int) -> list[int]:
        return self.page_candidates(context, n, frozenset())

    def page_candidates(self, context: str | None, n: int, exclude: frozenset[int]) -> list[int]:
        page = self.planning.page(context)
        if page is None:
            return []
        items = self.planning.log.items
        excluded = page.bought | {items[i] for i in exclude}
        used: set[str] = set()
        out: list[str] = []
        for kind, lists in page.signals:
            taken = used | excluded
            chosen = [
                f.product_id
                for f in fuse(lists, self.weights[kind], n=self.per_placement, facts=self.planning.facts, exclude=taken)
            ]
            # StorefrontAssembler tops a placement up from the popular list when its own signals run short.
            fill = [p for p in page.popular if p not in taken and p not in chosen]
            chosen += fill[: self.per_placement - len(chosen)]
            used.update(chosen)
            out += chosen
        index = self.planning.item_ids
        return [index[p] for p in out if p in index]

    def scores(self, cluster: str) -> bool:
        return self.sample >= 1.0 or in_sample(cluster, self.sample)

    def notes(self) -> list[str]:
        return self._notes() if self._notes is not None else []


def in_sample(cluster: str, fraction: float) -> bool:
    """A stable share of sessions / customers: a hash, so reruns and strategies agree on the sample."""
    bucket = int.from_bytes(hashlib.blake2b(cluster.encode(), digest_size=8).digest(), "big") / 2**64
    return bucket < fraction


# --- what the report says about the plans ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agreement:
    n: int
    theme_exact: float
    keywords_jaccard: float
    keywords_exact: float


def agreement(student: Planning, teacher: Teacher) -> Agreement:
    """How often the student writes what the teacher writes for the same placement inputs (all it planned).
    The teacher's keywords are chosen given the student's theme, so keywords agree or not on their own."""
    entries = list(student.writer.written.values())
    if not entries:
        return Agreement(0, 0.0, 0.0, 0.0)
    inputs = [w.input for w in entries]
    themes = teacher.themes(inputs)
    keywords = teacher.keywords(inputs, [w.theme for w in entries], [list(w.candidates) for w in entries])
    same_theme, jaccard, exact = [], [], []
    for w, theme, kws in zip(entries, themes, keywords, strict=True):
        same_theme.append(w.theme.strip().lower() == theme.strip().lower())
        a, b = set(w.keywords), set(kws)
        jaccard.append(len(a & b) / len(a | b) if a | b else 1.0)
        exact.append(a == b)
    return Agreement(len(entries), float(np.mean(same_theme)), float(np.mean(jaccard)), float(np.mean(exact)))


def planning_notes(name: str, planning: Planning) -> list[str]:
    s = planning.stats
    share = s.usable / s.placements if s.placements else 0.0
    reasons = ", ".join(f"{r} {n}" for r, n in s.reasons.most_common()) or "none"
    return [
        f"**{name}**: {s.pages} page contexts planned ({len(planning.writer.written)} distinct placement inputs "
        f"written, {CANDIDATES} keyword candidates each); {share:.1%} of the {s.placements} placements passed the "
        f"serving verdict (quality filter and candidate check) and were retrieved, the rest fell back to the "
        f"traditional signals; rejections: {reasons}. {planning.retriever.cached} distinct keywords retrieved "
        f"(exact cosine, top {planning.retriever.per_keyword})."
    ]


# --- the strategies ``vitrine eval --catalog`` adds --------------------------------------------------------------

TEACHER = "teacher cascade (fused)"
STUDENT = "student cascade (fused)"
REBUY_TEACHER = "re-buy + teacher cascade (placement)"


@dataclass(frozen=True, slots=True)
class CascadeSetup:
    """Builds the cascade strategies once the log and its ``History`` exist (a ``StrategyFactory``).

    ``teacher_before_ms``: the catalog teacher counts category co-occurrence from events before it (None:
    from no events, as serving builds it). ``student``: the distilled model, scored on a ``student_sample``
    share of sessions / customers. ``rebuy``: add re-buy in front of the teacher cascade (transactions).
    """

    catalog: Catalog
    teacher_before_ms: int | None = None
    student: Student | None = None
    student_sample: float = 1.0
    weights: Weights = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    quality: QualityFilter | None = None
    embed: Embed | None = None  # theme vectors for the keyword candidates, as serving and training compute them
    rebuy: bool = False

    def __call__(self, history: History, log: EventLog) -> list[Strategy]:
        retriever = ExactRetriever(self.catalog)
        teacher = catalog_teacher(self.catalog, log, self.teacher_before_ms)
        teacher_planning = Planning(
            history=history,
            log=log,
            catalog=self.catalog,
            writer=teacher,
            retriever=retriever,
            quality=self.quality,
            embed=self.embed,
        )
        pages = (
            f"{len(PLACEMENTS)} placements x 3 items in page order; themes and keywords from the session context the "
            f"worker would send (last {RECENT_ITEMS} events, category and brand affinities), "
            f"keywords retrieved by exact cosine (top {PER_KEYWORD} each), fused per placement with the co-visitation, "
            "category and popularity lists of the same past (streams.generator.fusion, "
            "streams.generator.assembly.DEFAULT_WEIGHTS unless stated), no product on two placements"
        )
        co = (
            "no events (as serving builds it)"
            if self.teacher_before_ms is None
            else "the events before the cutoff (training period)"
        )
        strategies: list[Strategy] = [
            Cascade(
                history,
                teacher_planning,
                name=TEACHER,
                description=f"the offline catalog teacher writes; {pages}. Teacher co-occurrence from {co}",
                weights=self.weights,
                notes=lambda: self._notes(TEACHER, teacher_planning),
            )
        ]
        if self.student is not None:
            student_planning = Planning(
                history=history,
                log=log,
                catalog=self.catalog,
                writer=StudentWriter(self.student),
                retriever=retriever,
                quality=self.quality,
                embed=self.embed,
            )
            share = f" Scored on a {self.student_sample:.0%} hash sample of contexts" if self.student_sample < 1 else ""
            strategies.append(
                Cascade(
                    history,
                    student_planning,
                    name=STUDENT,
                    description=f"the distilled student (ONNX, keywords constrained to the candidates) writes; {pages}."
                    + share,
                    weights=self.weights,
                    sample=self.student_sample,
                    notes=lambda: self._notes(STUDENT, student_planning, teacher),
                )
            )
        if self.rebuy:
            rebuy = OwnHistory(history, name="re-buy", description="")
            strategies.append(Placement(history, rebuy, strategies[0], name=REBUY_TEACHER))
        return strategies

    def _notes(self, name: str, planning: Planning, teacher: Teacher | None = None) -> list[str]:
        notes = planning_notes(name, planning)
        if teacher is not None:
            a = agreement(planning, teacher)
            notes.append(
                f"**{name}** vs the teacher on the same {a.n} placement inputs: theme identical {a.theme_exact:.1%}, "
                f"keyword-set Jaccard {a.keywords_jaccard:.3f}, identical keyword sets {a.keywords_exact:.1%}."
            )
        return notes
