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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.candidates import CandidateIndex
from models.context import PLACEMENTS, context_facts, keywords_input, parse_keywords, render, theme_input
from models.embedder import CachedEmbed, Embedder, EmbedderError
from models.quality import QualityFilter
from models.student import ModelLoadError, Student
from onnx_export.teacher import Teacher, TeacherInput
from onnx_export.teacher_catalog import CatalogTeacher
from streams.assembly import PlacementPlan
from streams.catalog.artifacts import Catalog
from streams.generator import PagePlan, Planner
from streams.regen import RegenRequest, SessionContext
from streams.settings import Settings
from streams.storefront import Arm, Quality

log = logging.getLogger(__name__)

CANDIDATES = 24
MAX_KEYWORDS = 4
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
        self, *, writer: Teacher, catalog: Catalog, arm: Arm, version: str | None, quality: QualityFilter | None = None
    ) -> None:
        self.writer = writer
        self.catalog = catalog
        self.quality = quality
        self.index = CandidateIndex(catalog.keywords, catalog.keyword_vectors)
        self.arm = arm
        self.version = version

    def plan(self, requests: Sequence[RegenRequest]) -> list[PagePlan]:
        started = time.perf_counter()
        pages = self.plan_contexts([r.context for r in requests])
        per_page = (time.perf_counter() - started) * 1000 / max(1, len(requests))
        return [PagePlan(placements, generation_ms=per_page) for placements in pages]

    def plan_contexts(self, contexts: Sequence[SessionContext]) -> list[list[PlacementPlan]]:
        """Themes, keywords and verdicts per placement for a batch of session contexts, one page each.

        Free of requests and timing, so the offline evaluation plans replayed contexts exactly as serving does.
        """
        inputs: list[TeacherInput] = []
        candidates: list[list[str]] = []
        for ctx in contexts:
            page_inputs, page_candidates = placement_inputs(ctx, self.catalog, self.index)
            inputs += page_inputs
            candidates += page_candidates
        themes = self.writer.themes(inputs)
        keywords = self.writer.keywords(inputs, themes, candidates)
        n = len(PLACEMENTS)
        pages = []
        for r in range(len(contexts)):
            page = slice(r * n, (r + 1) * n)
            verdicts = self._verdicts(inputs[page], themes[page], keywords[page], candidates[page])
            pages.append(
                [
                    PlacementPlan(kind=kind, theme=theme, keywords=kws, quality=verdict)
                    for kind, theme, kws, verdict in zip(
                        PLACEMENTS, themes[page], keywords[page], verdicts, strict=True
                    )
                ]
            )
        return pages

    def _verdicts(
        self, inputs: list[TeacherInput], themes: list[str], keywords: list[list[str]], candidates: list[list[str]]
    ) -> list[Quality]:
        """The quality filter's verdicts (rules, coherence, duplicates), plus the trie's guarantee re-checked."""
        reasons: list[list[str]] = [[] for _ in themes]
        if self.quality is not None:
            # One context for the page (the hero's): coherence is judged against the session, not the slot name.
            for i, v in enumerate(self.quality.check_page(inputs[0].context, themes, keywords)):
                reasons[i] += [r.value for r in v.reasons]
        for i, (kws, cands) in enumerate(zip(keywords, candidates, strict=True)):
            if not kws and "no_keywords" not in reasons[i]:
                reasons[i].append("no_keywords")
            if any(k not in cands for k in kws):
                reasons[i].append("keyword_outside_candidates")
        return [Quality(ok=not r, reasons=r) for r in reasons]


def placement_inputs(
    ctx: SessionContext, catalog: Catalog, index: CandidateIndex
) -> tuple[list[TeacherInput], list[list[str]]]:
    """One page's writer inputs and keyword candidates, one per placement in ``PLACEMENTS`` order."""
    rows = [i for i in (catalog.product_index(item.product_id) for item in ctx.recent) if i is not None]
    query = catalog.product_vectors[rows] if rows else np.zeros((0, catalog.product_vectors.shape[1]), dtype=np.float32)
    # The candidates depend on the session, not the placement: computed once, one list per placement.
    shared = index.candidates(query, categories=ctx.categories, brands=ctx.brands, n=CANDIDATES)
    inputs: list[TeacherInput] = []
    for kind in PLACEMENTS:
        facts = context_facts(ctx, kind, None, catalog.product)
        inputs.append(TeacherInput(render(facts), facts))
    return inputs, [list(shared) for _ in PLACEMENTS]


def build_quality_filter(settings: Settings, catalog: Catalog, problems: list[str]) -> QualityFilter | None:
    """The filter embeds themes with the catalog's own model; without it only the built-in checks run."""
    try:
        embedder = Embedder.load(settings.embedder_dir, settings.onnx_providers)
    except EmbedderError as exc:
        problems.append(f"quality filter: no embedder ({exc}); rules and candidate checks only")
        return None
    known = {k.keyword: catalog.keyword_vectors[i] for i, k in enumerate(catalog.keywords)}
    return QualityFilter(CachedEmbed(embedder, known))


def build_planner(settings: Settings, catalog: Catalog, problems: list[str]) -> Planner | None:
    """The student when its model loads, else the catalog teacher; what failed goes to ``problems``."""
    quality = build_quality_filter(settings, catalog, problems)
    model_dir = settings.model_dir
    if model_dir is not None:
        try:
            student = Student.load(model_dir, settings.onnx_providers)
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
            )
    teacher = CatalogTeacher.build(
        keywords=catalog.keywords, products=[(p.category, p.price) for p in catalog.products], events=[]
    )
    return CascadePlanner(writer=teacher, catalog=catalog, arm=Arm.TEACHER, version="catalog-teacher", quality=quality)


def _model_version(model_dir: Path) -> str | None:
    """``student-<first 12 hex of the encoder's sha256>``, from the model card written by the export."""
    card = model_dir / "model_card.json"
    if not card.exists():
        return None
    files = json.loads(card.read_text()).get("files", {})
    digest = files.get("encoder_model.onnx", {}).get("sha256")
    return f"student-{digest[:12]}" if digest else None
