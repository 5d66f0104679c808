"""The generative cascade replayed offline: the page the generator would publish, from the past alone.

For a scored position the regeneration request is the one the worker would send now: its ``SessionContext``
from the worker's own session state (``streams.worker.sessions.session_context``) and its ranker lists from
the worker's own signals (``RankerSignals.for_request``), both folded by the worker's step in ``History``. The
page is then planned and assembled by the generator's own code: ``CascadePlanner.plan`` (context text, keyword
candidates, the writer's themes and keywords, quality verdicts) and ``StorefrontAssembler.assemble`` (retrieval,
fusion with the ranker lists per placement kind, top-up, no product on two placements), with the position's
exclusions hidden (``hide``: the novel-product target leaves out the session's own products).

Retrieval is ``streams.generator.retrieval.ExactRetriever``: exact cosine in memory, the same answers as the
Qdrant backend (congruence test), restricted to the products known before the page (its ``universe``, fed by
``History``); keyword candidates are only keywords that retrieve a known product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from models.context import ContextFacts, PlacementKind
from models.embedder import Embed
from models.quality import QualityFilter
from models.student import Student
from models.teacher import Teacher, TeacherInput
from models.teacher_catalog import CatalogTeacher
from streams.catalog.artifacts import Catalog
from streams.contracts.experiment import stable_bucket
from streams.contracts.regen import RegenRequest
from streams.contracts.storefront import Arm
from streams.contracts.storefront import Placement as StorefrontPlacement
from streams.evaluation.history import PARTITION, History
from streams.evaluation.protocol import EventLog
from streams.evaluation.strategies import OwnHistory, Placement, Strategy
from streams.generator import coherence
from streams.generator.assembly import DEFAULT_WEIGHTS, StorefrontAssembler
from streams.generator.fusion import FusionWeights
from streams.generator.layout import PAGE_PLACEMENTS
from streams.generator.pipeline import PagePlan
from streams.generator.planners import CANDIDATES, CascadePlanner, StudentWriter
from streams.generator.ranking import Scorer
from streams.generator.retrieval import ExactRetriever
from streams.runtime.settings import ShelfName
from streams.worker.sessions import session_context
from streams.worker.state import RECENT_ITEMS

# 4 placements x 3 = the page of k = 12 every strategy is scored on (own shelves may span more); the served page
# (VITRINE_ITEMS_PER_PLACEMENT, 6) is scored at k = 24 (``vitrine eval --k 24``).
PER_PLACEMENT = 3
ASSEMBLY_FALLBACKS = ("theme_unfilled", "few_products")  # the assembler's reasons, after the plan's verdict
REPLAY_REASON = "replay"

Weights = Mapping[PlacementKind, FusionWeights]


def exact_retriever(catalog: Catalog, history: History | None) -> ExactRetriever:
    """The in-memory backend over the catalog; with a ``history``, only products it has seen (fed as it sees them)."""
    vectors = {k.keyword: catalog.keyword_vectors[i] for i, k in enumerate(catalog.keywords)}
    retriever = ExactRetriever(
        catalog.product_ids,
        catalog.product_vectors,
        vectors,
        out_of_stock={p.product_id for p in catalog.products if not p.in_stock},
        universe=set(history.known) if history is not None else None,
    )
    if history is not None:
        history.admitted.append(retriever.admit)
    return retriever


def replay_request(history: History, context: str) -> RegenRequest | None:
    """The request the worker would send for this context now (None: no events yet)."""
    state = history.states.get(context)
    if state is None or not state.recent:
        return None
    ctx = session_context(state)
    return RegenRequest(
        session_id=context,
        user_id=state.user_id,
        version=max(1, state.version),  # a storefront version starts at 1
        reason=REPLAY_REASON,
        event_ts=state.last_ts,
        context=ctx,
        ranker=history.ranker.for_request(PARTITION, ctx, history.now_ms),
    )


def catalog_teacher(catalog: Catalog, log: EventLog, before_ms: int | None) -> CatalogTeacher:
    """The offline catalog teacher; its category co-occurrence counts only events before ``before_ms``
    (None: no events, as ``streams.generator.planners.build_planner`` builds it for serving)."""
    events = [e.click for e in log.events if e.click.category] if before_ms is not None else []
    return CatalogTeacher.build(
        keywords=catalog.keywords,
        products=[(p.category, p.price) for p in catalog.products],
        events=[e for e in events if before_ms is not None and e.ts < before_ms],
    )


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
    usable: int = 0  # passed the serving verdict
    reasons: Counter[str] = field(default_factory=Counter)


class Planning:
    """Plans pages with one writer through ``CascadePlanner.plan``, shared by every cascade strategy of that
    writer; a plan is cached per (past, context), so the targets of one position and the variants of a weight
    grid plan it once."""

    def __init__(
        self,
        *,
        history: History,
        catalog: Catalog,
        writer: Teacher,
        retriever: ExactRetriever,
        quality: QualityFilter | None = None,
        embed: Embed | None = None,
        per_placement: int = PER_PLACEMENT,
    ) -> None:
        self.history = history
        self.per_placement = per_placement
        self.catalog = catalog
        self.writer = CachingWriter(writer)
        self.retriever = retriever
        self.planner = CascadePlanner(
            writer=self.writer,
            catalog=catalog,
            arm=Arm.TEACHER,
            version=None,
            quality=quality,
            embed=embed,
            keyword_known=(lambda keyword: bool(retriever.hits(keyword))) if retriever.universe is not None else None,
        )
        self.stats = PlanningStats()
        self._key: tuple[int, str] | None = None
        self._planned: tuple[RegenRequest, PagePlan] | None = None

    def plan(self, context: str | None) -> tuple[RegenRequest, PagePlan] | None:
        if context is None:
            return None
        key = (self.history.observed, context)
        if key != self._key:
            self._key, self._planned = key, None
            request = replay_request(self.history, context)
            if request is not None:
                (plan,) = self.planner.plan([request])
                self._planned = (request, plan)
                self.stats.pages += 1
                self.stats.placements += len(plan.placements)
                self.stats.usable += sum(p.quality.ok and bool(p.keywords) for p in plan.placements)
                self.stats.reasons.update(r for p in plan.placements for r in p.quality.reasons)
        return self._planned

    def assembler(
        self, weights: Weights, diversity_floor: Mapping[ShelfName, int] | None = None, learned: Scorer | None = None
    ) -> StorefrontAssembler:
        """``diversity_floor``: None, the serving default (``VITRINE_DIVERSITY_FLOOR``'s). ``learned``: the learned
        ranker (``VITRINE_RANKER_MODEL``'s), None for weighted reciprocal-rank fusion."""
        return StorefrontAssembler(
            retriever=self.retriever,
            products=self.catalog.product,
            items_per_placement=self.per_placement,
            weights=dict(weights),
            diversity_floor=diversity_floor,
            learned=learned,
        )


def page_products(
    assembler: StorefrontAssembler,
    request: RegenRequest,
    plan: PagePlan,
    *,
    hide: frozenset[str] = frozenset(),
    violations: Counter[coherence.Rule] | None = None,
    generative: bool = True,
    served: Counter[str] | None = None,
) -> list[str]:
    """The generator's page for a planned request, flattened in page order (what is scored); the coherence rules it
    breaks are added to ``violations``, and to ``served`` how its written placements ended: ``generated``, or
    fallen back with the assembler's ``theme_unfilled`` / ``few_products``, the plan's rejection, or no retrieval.
    ``generative=False``: the same page without the generative channel (no themes, no keyword retrieval), as the
    generator assembles the control arm."""
    if generative:
        update = assembler.assemble(request, arm=Arm.TEACHER, plans=plan.placements, hide=hide)
    else:
        update = assembler.assemble(request, arm=Arm.CONTROL, hide=hide)
    if violations is not None:
        violations.update(coherence.violations(update, assembler.products, assembler.diversity_floor))
    if served is not None:
        written = {p.kind.value for p in plan.placements}
        for placement in update.placements:
            if placement.kind in written:
                served[_ending(placement)] += 1
    return [item.product_id for placement in update.placements for item in placement.items]


def _ending(placement: StorefrontPlacement) -> str:
    if not placement.fallback:
        return "generated"
    late = [r for r in placement.quality.reasons if r in ASSEMBLY_FALLBACKS]
    if late:
        return late[0]
    return "rejected" if not placement.quality.ok else "not retrieved"  # the vector store failed or is missing


class Cascade(Strategy):
    """The generator's page: ``PAGE_PLACEMENTS`` placements of ``per_placement`` products (own shelves may span
    more), in page order. Counted once per distinct page (position, context, exclusions): a strategy built on this
    one (re-buy + teacher cascade) asks for the same page again."""

    def __init__(
        self,
        history: History,
        planning: Planning,
        *,
        name: str,
        description: str,
        weights: Weights = DEFAULT_WEIGHTS,
        learned: Scorer | None = None,
        sample: float = 1.0,
        generative: bool = True,
        notes: Callable[[], list[str]] | None = None,
    ) -> None:
        super().__init__(history)
        self.planning = planning
        self.name = name
        self.description = description
        self.assembler = planning.assembler(weights, learned=learned)
        self.sample = sample
        self.generative = generative
        self._notes = notes
        self.pages = 0
        self.violations: Counter[coherence.Rule] = Counter()
        self.served: Counter[str] = Counter()
        self._counted: tuple[int, str, frozenset[str]] | None = None

    def rank(self, context: str | None, n: int) -> list[str]:
        return self.page_candidates(context, n, frozenset())

    def page_candidates(self, context: str | None, n: int, exclude: frozenset[str]) -> list[str]:
        planned = self.planning.plan(context)
        if planned is None:
            return []
        request, plan = planned
        assert context is not None
        page = (self.history.observed, context, exclude)
        counted = page != self._counted
        self._counted = page
        self.pages += counted
        return page_products(
            self.assembler,
            request,
            plan,
            hide=exclude,
            violations=self.violations if counted else None,
            generative=self.generative,
            served=self.served if counted and self.generative else None,
        )

    def scores(self, cluster: str) -> bool:
        return self.sample >= 1.0 or in_sample(cluster, self.sample)

    def notes(self) -> list[str]:
        rules = ", ".join(f"{rule.value} {self.violations[rule]}" for rule in coherence.Rule)
        count = (
            f"**{self.name}**: coherence violations {sum(self.violations.values())} over {self.pages} pages scored "
            f"({rules}; `streams.generator.coherence.violations` on every page)."
        )
        written = sum(self.served.values())
        if not self.generative or not written:
            return [*(self._notes() if self._notes is not None else []), count]
        ended = ", ".join(f"{what} {n} ({n / written:.1%})" for what, n in self.served.most_common())
        served = (
            f"**{self.name}**: of the {written} written placements on scored pages "
            f"({self.assembler.items_per_placement} products each), {ended} (rejected: by the serving verdict; "
            "theme_unfilled / few_products: passed it, but the candidates could not fill the theme's scope / "
            "retrieval found too few; not retrieved: the vector store failed)."
        )
        return [*(self._notes() if self._notes is not None else []), count, served]


def in_sample(cluster: str, fraction: float) -> bool:
    """A stable share of sessions / customers: a hash, so reruns and strategies agree on the sample."""
    return stable_bucket(cluster) < fraction


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
        f"traditional signals; rejections: {reasons}. {len(planning.retriever.used)} distinct keywords retrieved "
        f"(exact cosine, top {planning.retriever.per_keyword} known products each)."
    ]


# --- the strategies ``vitrine eval --catalog`` adds --------------------------------------------------------------

TEACHER = "teacher cascade (fused)"
LEARNED = "teacher cascade (learned ranker)"
# The ablation of the served page: the same request and fusion with the generative channel removed.
WITHOUT_GENERATION = {False: "cascade without generation (fused)", True: "cascade without generation (learned ranker)"}
STUDENT = "student cascade (fused)"
STUDENT_LEARNED = "student cascade (learned ranker)"  # the student's page as the generators serve it by default
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
    # The learned fusion (``streams.generator.ranking``): adds a row, the teacher's pages ordered by it.
    learned: Scorer | None = None
    learned_card: str = ""  # what the report says of the model (its card's data, split and metrics)
    # False only for the control of the planted-universe test: retrieval from the whole catalog, future included.
    known_only: bool = True
    per_placement: int = PER_PLACEMENT  # products a generated placement holds (the page is k = 4 x this)

    def __call__(self, history: History, log: EventLog) -> list[Strategy]:
        retriever = exact_retriever(self.catalog, history if self.known_only else None)
        teacher = catalog_teacher(self.catalog, log, self.teacher_before_ms)
        teacher_planning = Planning(
            history=history,
            catalog=self.catalog,
            writer=teacher,
            retriever=retriever,
            quality=self.quality,
            embed=self.embed,
            per_placement=self.per_placement,
        )
        pages = (
            f"the generator's page ({PAGE_PLACEMENTS} placements x {self.per_placement} products, StorefrontAssembler, "
            "the layout page_layout chooses: own shelves first, generated placements after) for "
            f"the request the worker would send now (its session state: last {RECENT_ITEMS} events, affinities; its "
            "ranker lists), planned by CascadePlanner, keywords retrieved by exact cosine among known products, "
            "fused with streams.generator.assembly.DEFAULT_WEIGHTS unless stated"
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
        if self.learned is not None:
            strategies.append(
                Cascade(
                    history,
                    teacher_planning,
                    name=LEARNED,
                    description=f"the teacher cascade's pages (same plans and retrieval), every placement ordered by "
                    f"the learned ranker (LightGBM LambdaMART over every channel's candidates, "
                    f"streams.generator.ranking) instead of weighted reciprocal-rank fusion; {self.learned_card}",
                    weights=self.weights,
                    learned=self.learned,
                )
            )
        strategies.append(
            Cascade(
                history,
                teacher_planning,
                name=WITHOUT_GENERATION[self.learned is not None],
                description="the ablation of the served page: the same requests and fusion as "
                f"**{LEARNED if self.learned is not None else TEACHER}**, without the generative channel (no themes, "
                "no keyword retrieval: every placement from the ranker lists under its control theme, as the generator "
                "assembles the control arm); the learned ranker, when present, is the same model, its retrieval "
                "features missing",
                weights=self.weights,
                learned=self.learned,
                generative=False,
            )
        )
        if self.student is not None:
            student_planning = Planning(
                history=history,
                catalog=self.catalog,
                writer=StudentWriter(self.student),
                retriever=retriever,
                quality=self.quality,
                embed=self.embed,
                per_placement=self.per_placement,
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
            if self.learned is not None:
                strategies.append(
                    Cascade(
                        history,
                        student_planning,
                        name=STUDENT_LEARNED,
                        description=f"the student cascade's pages (same plans and retrieval), every placement ordered "
                        f"by the learned ranker, as the demo and Kubernetes generators serve it (same model as "
                        f"**{LEARNED}**)." + share,
                        weights=self.weights,
                        sample=self.student_sample,
                        learned=self.learned,
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
