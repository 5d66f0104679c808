"""How close the student comes to its teacher on held-out (later in time) contexts.

- themes: exact match and token F1 (lower-cased words) against the teacher's theme;
- keywords, given the teacher's theme: Jaccard overlap with the teacher's set, free decoding (and the
  share of its keywords inside the catalog vocabulary) and decoding constrained to the placement's
  candidates, as served.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.context import parse_keywords
from models.student import Student
from onnx_export.dataset import Example
from streams.catalog.artifacts import Catalog

MAX_KEYWORDS = 5
THEME_TOKENS = 24
KEYWORD_TOKENS = 40


def token_f1(predicted: str, reference: str) -> float:
    p, r = Counter(predicted.lower().split()), Counter(reference.lower().split())
    common = sum((p & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _spread(examples: Sequence[Example], limit: int) -> list[Example]:
    """A seeded sample in log order; a stride would hit the same placement every time (four per request)."""
    keep = sorted(random.Random(0).sample(range(len(examples)), min(limit, len(examples))))
    return [examples[i] for i in keep]


@dataclass(frozen=True, slots=True)
class Sample:
    context: str
    teacher_theme: str
    student_theme: str
    teacher_keywords: list[str]  # of the keyword example of the same context (given the teacher's theme)
    student_keywords: list[str]


@dataclass(frozen=True, slots=True)
class StudentEval:
    summary: dict[str, float]
    by_placement: dict[str, dict[str, float]]
    samples: list[Sample] = field(default_factory=list)


def evaluate_student(student: Student, test: Sequence[Example], catalog: Catalog, *, limit: int = 800) -> StudentEval:
    vocabulary = {k.keyword for k in catalog.keywords}
    themes = _spread([e for e in test if e.task == "theme"], limit)
    keywords = _spread([e for e in test if e.task == "keywords"], limit)
    theme_out = student.generate([e.input for e in themes], max_new_tokens=THEME_TOKENS)
    free_out = [parse_keywords(t) for t in student.generate([e.input for e in keywords], max_new_tokens=KEYWORD_TOKENS)]
    tries = [student.keyword_trie(e.candidates, max_keywords=MAX_KEYWORDS) for e in keywords]
    constrained_out = [
        parse_keywords(t)
        for t in student.generate([e.input for e in keywords], max_new_tokens=KEYWORD_TOKENS, constraint=tries)
    ]
    exact = [float(o == e.target) for o, e in zip(theme_out, themes, strict=True)]
    f1 = [token_f1(o, e.target) for o, e in zip(theme_out, themes, strict=True)]
    teacher_kw = [parse_keywords(e.target) for e in keywords]
    free_j = [jaccard(o, t) for o, t in zip(free_out, teacher_kw, strict=True)]
    cons_j = [jaccard(o, t) for o, t in zip(constrained_out, teacher_kw, strict=True)]
    free_words = [w for o in free_out for w in o]
    in_vocab = _mean([float(w in vocabulary) for w in free_words])
    in_candidates = _mean([float(w in e.candidates) for o, e in zip(constrained_out, keywords, strict=True) for w in o])
    summary = {
        "theme_n": len(themes),
        "theme_exact": _mean(exact),
        "theme_token_f1": _mean(f1),
        "keywords_n": len(keywords),
        "keywords_jaccard_free": _mean(free_j),
        "keywords_in_vocabulary_free": in_vocab,
        "keywords_jaccard_constrained": _mean(cons_j),
        "keywords_in_candidates_constrained": in_candidates,
        "keywords_per_placement_constrained": _mean([float(len(o)) for o in constrained_out]),
    }
    by_placement: dict[str, dict[str, float]] = {}
    for placement in sorted({e.placement for e in themes}):
        rows = [i for i, e in enumerate(themes) if e.placement == placement]
        krows = [i for i, e in enumerate(keywords) if e.placement == placement]
        by_placement[placement] = {
            "theme_exact": _mean([exact[i] for i in rows]),
            "theme_token_f1": _mean([f1[i] for i in rows]),
            "keywords_jaccard_constrained": _mean([cons_j[i] for i in krows]),
        }
    step = max(1, len(themes) // 8)
    samples = [
        Sample(themes[i].input, themes[i].target, theme_out[i], teacher_kw[i], constrained_out[i])
        for i in range(0, min(len(themes), len(keywords)), step)
    ][:8]
    return StudentEval(summary, by_placement, samples)
