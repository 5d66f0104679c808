"""AIQA: the quality gate between generation and retrieval (rules, embedding coherence, dedupe, non-empty).

A placement is shown only if its theme reads like a shelf title (bounded, printable, no links or
shouting, nothing blocked), its keywords exist and agree with the theme, the theme agrees with what the
session is about, it does not repeat another theme on the page, and its keywords retrieved enough
products. The same checks grade teacher and student outputs offline (``grade``), so a distilled model
is judged by the rule that will gate it in production.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from models.embedder import Embed

"""Texts -> L2-normalised vectors, one row per text (``models.embedder.Embedder.embed`` fits)."""

DEFAULT_BLOCKLIST: frozenset[str] = frozenset(
    {
        "fuck",
        "shit",
        "bitch",
        "cunt",
        "porn",
        "xxx",
        "nude",
        "nazi",
        "cocaine",
        "heroin",
        "suicide",
        "kill",
        "weapon",
        "counterfeit",
        "replica",
        "free money",
    }
)

_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|io|co|shop|store|info|biz|ru|de|uk)\b", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class RejectReason(StrEnum):
    """Why a placement was not shown; the label of ``vitrine_quality_rejections_total``."""

    EMPTY_THEME = "empty_theme"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NOT_PRINTABLE = "not_printable"
    URL = "url"
    EMAIL = "email"
    ALL_CAPS = "all_caps"
    REPETITIVE = "repetitive"
    BLOCKED = "blocked"
    NO_KEYWORDS = "no_keywords"
    OFF_CONTEXT = "off_context"  # theme far from the session
    INCOHERENT_KEYWORDS = "incoherent_keywords"  # keywords far from the theme
    DUPLICATE_THEME = "duplicate_theme"
    FEW_PRODUCTS = "few_products"


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the gate; cosine thresholds are for all-MiniLM-L6-v2 vectors (calibrated in the tests)."""

    blocklist: frozenset[str] = DEFAULT_BLOCKLIST
    min_theme_chars: int = 3
    max_theme_chars: int = 60
    max_theme_words: int = 8
    max_keywords: int = 8
    min_theme_context: float = 0.15
    min_keywords_theme: float = 0.2
    duplicate_theme: float = 0.85
    min_products: int = 3


@dataclass(slots=True)
class Verdict:
    ok: bool
    reasons: list[RejectReason] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Grade:
    """Offline summary of many (context, theme, keywords) triples under the same gate."""

    n: int
    pass_rate: float
    mean_coherence: float
    reasons: dict[str, int]


class QualityFilter:
    def __init__(self, embed: Embed, config: QualityConfig | None = None) -> None:
        self._embed = embed
        self.config = config or QualityConfig()
        self._blocked_words = {b for b in self.config.blocklist if " " not in b}
        self._blocked_phrases = [b for b in self.config.blocklist if " " in b]

    # --- rules on text alone ---------------------------------------------------------------

    def text_reasons(self, theme: str, keywords: Sequence[str]) -> list[RejectReason]:
        """Rule violations of one placement, without embeddings."""
        cfg = self.config
        reasons: list[RejectReason] = []
        stripped = theme.strip()
        words = _WORD.findall(stripped.lower())
        if not words:
            reasons.append(RejectReason.EMPTY_THEME)
        elif len(stripped) < cfg.min_theme_chars:
            reasons.append(RejectReason.TOO_SHORT)
        if len(stripped) > cfg.max_theme_chars or len(words) > cfg.max_theme_words:
            reasons.append(RejectReason.TOO_LONG)
        texts = [theme, *keywords]
        if not all(t.isprintable() for t in texts):
            reasons.append(RejectReason.NOT_PRINTABLE)
        if any(_URL.search(t) for t in texts):
            reasons.append(RejectReason.URL)
        if any(_EMAIL.search(t) for t in texts):
            reasons.append(RejectReason.EMAIL)
        letters = [c for c in stripped if c.isalpha()]
        if len(letters) >= 4 and all(c.isupper() for c in letters):
            reasons.append(RejectReason.ALL_CAPS)
        if _repetitive(words):
            reasons.append(RejectReason.REPETITIVE)
        if any(self._blocked(t) for t in texts):
            reasons.append(RejectReason.BLOCKED)
        if not keywords or len(keywords) > cfg.max_keywords:
            reasons.append(RejectReason.NO_KEYWORDS)
        return reasons

    def _blocked(self, text: str) -> bool:
        lowered = text.lower()
        if self._blocked_words.intersection(_WORD.findall(lowered)):
            return True
        squashed = " ".join(_WORD.findall(lowered))
        return any(re.search(rf"\b{re.escape(p)}\b", squashed) for p in self._blocked_phrases)

    # --- page ------------------------------------------------------------------------------

    def check_page(
        self,
        context: str | Sequence[str],
        themes: Sequence[str],
        keywords: Sequence[Sequence[str]],
        product_counts: Sequence[int] | None = None,
    ) -> list[Verdict]:
        """One verdict per placement of a page (the caller counts rejections: models know no metrics).

        ``context`` is the session text (one for the page, or one per placement); ``product_counts``, once
        retrieval ran, the products each placement's keywords found (``None``: not checked yet).
        """
        n = len(themes)
        contexts = [context] * n if isinstance(context, str) else list(context)
        if len(contexts) != n or len(keywords) != n or (product_counts is not None and len(product_counts) != n):
            raise ValueError("context, themes, keywords and product counts must be given per placement")
        verdicts, theme_vectors = self._verdicts(contexts, themes, keywords)
        self._dedupe(themes, theme_vectors, verdicts)
        if product_counts is not None:
            for verdict, count in zip(verdicts, product_counts, strict=True):
                verdict.scores["products"] = float(count)
                if count < self.config.min_products:
                    verdict.reasons.append(RejectReason.FEW_PRODUCTS)
        for verdict in verdicts:
            verdict.ok = not verdict.reasons
        return verdicts

    def check_pages(self, pages: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]]) -> list[list[Verdict]]:
        """``check_page`` for a batch of pages, each (session text, themes, keywords), before retrieval: one embedding
        call for the whole batch rather than one a page (the generator judges a micro-batch of pages at once)."""
        contexts = [context for context, themes, _ in pages for _ in themes]
        themes = [theme for _, page_themes, _ in pages for theme in page_themes]
        keywords = [kws for _, _, page_keywords in pages for kws in page_keywords]
        if len(keywords) != len(themes):
            raise ValueError("themes and keywords must be given per placement")
        verdicts, theme_vectors = self._verdicts(contexts, themes, keywords)
        out: list[list[Verdict]] = []
        start = 0
        for _, page_themes, _ in pages:
            page = slice(start, start + len(page_themes))
            start = page.stop
            self._dedupe(page_themes, theme_vectors[page], verdicts[page])
            for verdict in verdicts[page]:
                verdict.ok = not verdict.reasons
            out.append(verdicts[page])
        return out

    def _verdicts(
        self, contexts: Sequence[str], themes: Sequence[str], keywords: Sequence[Sequence[str]]
    ) -> tuple[list[Verdict], npt.NDArray[np.float32]]:
        """Rules and coherence per placement, and the theme vectors; one embedding call for all distinct texts."""
        texts = list(dict.fromkeys([*contexts, *themes, *(k for kws in keywords for k in kws)]))
        vectors = self._embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        row = {t: i for i, t in enumerate(texts)}
        cfg = self.config
        out = []
        for ctx, theme, kws in zip(contexts, themes, keywords, strict=True):
            reasons = self.text_reasons(theme, kws)
            t = vectors[row[theme]]
            theme_context = float(t @ vectors[row[ctx]])
            scores = {"theme_context": theme_context}
            if kws:
                k = vectors[[row[kw] for kw in kws]]
                scores["keywords_theme"] = float((k @ t).mean())
                scores["keywords_context"] = float((k @ vectors[row[ctx]]).mean())
            scores["coherence"] = (theme_context + scores.get("keywords_theme", theme_context)) / 2
            if RejectReason.EMPTY_THEME not in reasons:
                if theme_context < cfg.min_theme_context:
                    reasons.append(RejectReason.OFF_CONTEXT)
                if kws and scores["keywords_theme"] < cfg.min_keywords_theme:
                    reasons.append(RejectReason.INCOHERENT_KEYWORDS)
            out.append(Verdict(ok=not reasons, reasons=reasons, scores=scores))
        return out, vectors[[row[t] for t in themes]]

    def _dedupe(self, themes: Sequence[str], vectors: npt.NDArray[np.float32], verdicts: list[Verdict]) -> None:
        """A theme as near as ``duplicate_theme`` to an earlier one on the page is rejected (the earlier stays)."""
        for j in range(1, len(themes)):
            for i in range(j):
                same = _normalised(themes[i]) == _normalised(themes[j])
                if same or float(vectors[i] @ vectors[j]) >= self.config.duplicate_theme:
                    verdicts[j].reasons.append(RejectReason.DUPLICATE_THEME)
                    break

    # --- offline ---------------------------------------------------------------------------

    def grade(self, triples: Sequence[tuple[str, str, Sequence[str]]]) -> Grade:
        """Pass rate, mean coherence and reasons histogram of (context, theme, keywords) triples, each judged
        as a one-placement page (no dedupe, no product counts) and not counted in the serving metric."""
        if not triples:
            return Grade(n=0, pass_rate=0.0, mean_coherence=0.0, reasons={})
        verdicts, _ = self._verdicts([c for c, _, _ in triples], [t for _, t, _ in triples], [k for _, _, k in triples])
        histogram = Counter(r.value for v in verdicts for r in v.reasons)
        return Grade(
            n=len(verdicts),
            pass_rate=sum(not v.reasons for v in verdicts) / len(verdicts),
            mean_coherence=float(np.mean([v.scores["coherence"] for v in verdicts])),
            reasons=dict(histogram.most_common()),
        )


def _normalised(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _repetitive(words: list[str]) -> bool:
    """Degenerate decoding: a word straight after itself, or one word making up half of a longer theme."""
    if any(a == b for a, b in itertools.pairwise(words)):
        return True
    return len(words) >= 4 and Counter(words).most_common(1)[0][1] * 2 >= len(words)
