"""Planning pages: the cascade theme -> candidate keywords -> keywords -> quality verdict, per placement.

One cascade, two writers: the distilled student (``generative`` arm) or the catalog teacher it was
distilled from (``teacher`` arm, used when no model loads). Both read the same context text from
``models.context`` and choose keywords from the same retrieval-augmented candidates, so the arms
differ only in who writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.candidates import CandidateIndex, placement_candidates, session_item_vectors
from models.context import MerchRules, context_facts, keywords_input, parse_keywords, render, theme_input
from models.embedder import CachedEmbed, Embed, Embedder, EmbedderError
from models.quality import QualityFilter, Verdict
from models.student import ModelLoadError, Student
from models.teacher import Teacher, TeacherInput
from models.teacher_catalog import CatalogTeacher
from models.themes import ThemeReader, seen_brands
from streams.catalog.artifacts import Catalog
from streams.contracts.regen import RegenRequest, SessionContext
from streams.contracts.storefront import Arm, Quality
from streams.generator.assembly import PlacementPlan
from streams.generator.layout import page_layout, written
from streams.generator.pipeline import PagePlan, Planner
from streams.runtime import metrics
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

CANDIDATES = 24
MAX_KEYWORDS = 5  # the teacher's labels have 3-5
THEME_TOKENS = 16
KEYWORD_TOKENS = 40


class StudentWriter:
    """The teacher's interface, answered by the student; keywords decoded under the candidates' trie."""

    def __init__(self, student: Student, *, max_keywords: int = MAX_KEYWORDS) -> None:
        self.student = student
        self.max_keywords = max_keywords

    def themes(self, contexts: list[TeacherInput]) -> list[str]:
        return self.student.generate([theme_input(c.context) for c in contexts], max_new_tokens=THEME_TOKENS)

    def keywords(self, contexts: list[TeacherInput], themes: list[str], candidates: list[list[str]]) -> list[list[str]]:
        tries = [self.student.keyword_trie(c, self.max_keywords) for c in candidates]
        inputs = [keywords_input(c.context, t) for c, t in zip(contexts, themes, strict=True)]
        return [
            parse_keywords(o) for o in self.student.generate(inputs, max_new_tokens=KEYWORD_TOKENS, constraint=tries)
        ]


class CascadePlanner:
    def __init__(
        self,
        *,
        writer: Teacher,
        catalog: Catalog,
        arm: Arm,
        version: str | None,
        quality: QualityFilter | None = None,
        embed: Embed | None = None,
        keyword_known: Callable[[str], bool] | None = None,
    ) -> None:
        """``keyword_known``: when given, keyword candidates are only those it accepts (the offline evaluation:
        keywords that retrieve a product known at the page's time), the best ``CANDIDATES`` of twice as many."""
        self.writer = writer
        self.catalog = catalog
        self.quality = quality
        self.embed = embed
        self.keyword_known = keyword_known
        self.index = CandidateIndex(catalog.keywords, catalog.keyword_vectors)
        self.themes = ThemeReader(p.category for p in catalog.products if p.category)
        self.arm = arm
        self.version = version

    def plan(self, requests: Sequence[RegenRequest], rules: MerchRules | None = None) -> list[PagePlan]:
        started = time.perf_counter()
        pages = self.plan_contexts([r.context for r in requests], rules)
        per_page = (time.perf_counter() - started) * 1000 / max(1, len(requests))
        return [PagePlan(placements, generation_ms=per_page) for placements in pages]

    def plan_contexts(
        self, contexts: Sequence[SessionContext], rules: MerchRules | None = None
    ) -> list[list[PlacementPlan]]:
        """Themes, keywords and verdicts per placement for a batch of session contexts, one page each: only the
        generated placements of each page's layout (``streams.generator.layout.page_layout``) are written, under
        the merchandising ``rules`` in force (in every context the writer reads; none: no rules).

        Free of requests and timing, so the offline evaluation plans replayed contexts exactly as serving does.
        """
        inputs: list[TeacherInput] = []
        items: list[npt.NDArray[np.float32]] = []
        kinds = [written(page_layout(ctx)) for ctx in contexts]
        for ctx, page_kinds in zip(contexts, kinds, strict=True):
            vectors = session_item_vectors([i.product_id for i in ctx.recent], self.catalog)
            for kind in page_kinds:
                facts = context_facts(ctx, kind, rules, self.catalog.product)
                inputs.append(TeacherInput(render(facts), facts))
                items.append(vectors)
        themes = self.writer.themes(inputs)
        theme_vectors = self._theme_vectors(themes)
        known = self.keyword_known
        candidates = [
            placement_candidates(self.index, i.facts, v, t, n=CANDIDATES)
            if known is None
            else [k for k in placement_candidates(self.index, i.facts, v, t, n=2 * CANDIDATES) if known(k)][:CANDIDATES]
            for i, v, t in zip(inputs, items, theme_vectors, strict=True)
        ]
        keywords = self.writer.keywords(inputs, themes, candidates)
        bounds: list[slice] = []
        for page_kinds in kinds:  # every layout has generated placements (at most two own shelves)
            start = bounds[-1].stop if bounds else 0
            bounds.append(slice(start, start + len(page_kinds)))
        # One context for a page (the hero's): coherence is judged against the session, not the slot name.
        judged: list[list[Verdict] | None] = (
            list(self.quality.check_pages([(inputs[b][0].context, themes[b], keywords[b]) for b in bounds]))
            if self.quality is not None
            else [None] * len(bounds)
        )
        pages = []
        for r, (page_kinds, page, verdicts_of_page) in enumerate(zip(kinds, bounds, judged, strict=True)):
            verdicts = self._verdicts(verdicts_of_page, keywords[page], candidates[page])
            brands = seen_brands(inputs[page][0].facts, contexts[r].brands)
            pages.append(
                [
                    PlacementPlan(
                        kind=kind, theme=theme, keywords=kws, quality=verdict, scope=self.themes.scope(theme, brands)
                    )
                    for kind, theme, kws, verdict in zip(
                        page_kinds, themes[page], keywords[page], verdicts, strict=True
                    )
                ]
            )
        return pages

    def _theme_vectors(self, themes: list[str]) -> npt.NDArray[np.float32]:
        """Candidates are looked up by the theme too, as the training labels were; without an embedder the
        theme adds nothing (a zero vector) and the session's items and affinities alone choose them."""
        if self.embed is None:
            return np.zeros((len(themes), self.catalog.keyword_vectors.shape[1]), dtype=np.float32)
        return self.embed(themes)

    @staticmethod
    def _verdicts(
        judged: list[Verdict] | None, keywords: list[list[str]], candidates: list[list[str]]
    ) -> list[Quality]:
        """The quality filter's verdicts (rules, coherence, duplicates; ``None``: no filter), plus the trie's
        guarantee re-checked."""
        reasons: list[list[str]] = [[] for _ in keywords]
        for i, verdict in enumerate(judged or ()):
            reasons[i] += [r.value for r in verdict.reasons]
            for r in verdict.reasons:
                metrics.QUALITY_REJECTIONS.labels(reason=r.value).inc()
        for i, (kws, cands) in enumerate(zip(keywords, candidates, strict=True)):
            if not kws and "no_keywords" not in reasons[i]:
                reasons[i].append("no_keywords")
            if any(k not in cands for k in kws):
                reasons[i].append("keyword_outside_candidates")
        return [Quality(ok=not r, reasons=r) for r in reasons]


def build_embed(settings: Settings, catalog: Catalog, problems: list[str]) -> CachedEmbed | None:
    """The catalog's own embedding model, for theme vectors and the quality filter; cached, vocabulary known."""
    try:
        embedder = Embedder.load(settings.catalog.embedder_dir, settings.generator.onnx_providers)
    except EmbedderError as exc:
        problems.append(f"no embedder ({exc}): quality filter off, keyword candidates without the theme")
        return None
    return CachedEmbed(embedder, {k.keyword: catalog.keyword_vectors[i] for i, k in enumerate(catalog.keywords)})


def build_planner(settings: Settings, catalog: Catalog, problems: list[str]) -> Planner | None:
    """The student when its model loads, else the catalog teacher; what failed goes to ``problems``."""
    embed = build_embed(settings, catalog, problems)
    quality = QualityFilter(embed) if embed is not None else None
    model_dir = settings.generator.model_dir
    if model_dir is not None:
        try:
            student = Student.load(model_dir, settings.generator.onnx_providers)
        except ModelLoadError as exc:
            problems.append(f"model: {exc}; planning with the catalog teacher")
            log.warning("student model not loaded", extra={"error": str(exc)})
        else:
            log.info("student model loaded", extra={"model_dir": str(model_dir), "provider": student.provider})
            return CascadePlanner(
                writer=StudentWriter(student),
                catalog=catalog,
                arm=Arm.GENERATIVE,
                version=_model_version(model_dir),
                quality=quality,
                embed=embed,
            )
    teacher = CatalogTeacher.build(
        keywords=catalog.keywords, products=[(p.category, p.price) for p in catalog.products], events=[]
    )
    return CascadePlanner(
        writer=teacher, catalog=catalog, arm=Arm.TEACHER, version="catalog-teacher", quality=quality, embed=embed
    )


def _model_version(model_dir: Path) -> str | None:
    """``student-<first 12 hex of the encoder's sha256>``, from the model card written by the export."""
    card = model_dir / "model_card.json"
    if not card.exists():
        return None
    files = json.loads(card.read_text()).get("files", {})
    digest = files.get("encoder_model.onnx", {}).get("sha256")
    return f"student-{digest[:12]}" if digest else None
