"""Label quality of two teachers on the same held-out regeneration contexts, judged by the serving gate.

Both teachers label exactly the same contexts (the dataset builder's own path: context, theme, theme-aware
keyword candidates, keywords), and every (context, theme, keywords) triple goes through the quality filter
the generator applies to the student. The report says what it finds, whichever teacher wins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.context import THEME_PREFIX, parse_keywords
from models.embedder import Embed, Embedder
from models.quality import Grade, QualityFilter
from models.teacher import Teacher
from onnx_export.dataset import Cut, Example, build_examples, load_events, regen_cuts, split_time
from onnx_export.pipeline import catalog_teacher_for, select_teacher
from streams.catalog.artifacts import Catalog
from streams.runtime.settings import Settings


@dataclass(frozen=True, slots=True)
class TeacherLabels:
    """One teacher's labels on the contexts, their grade, and how long labelling took."""

    name: str
    grade: Grade
    mean_keywords: float
    distinct_themes: int
    seconds: float


def triples(examples: Sequence[Example]) -> list[tuple[str, str, list[str]]]:
    """(context, theme, keywords) per placement, from the theme and keywords examples the builder writes in pairs."""
    out = []
    for theme_ex, kw_ex in zip(examples[::2], examples[1::2], strict=True):
        if theme_ex.task != "theme" or kw_ex.task != "keywords":
            raise ValueError("examples are not theme/keywords pairs")
        out.append((theme_ex.input.removeprefix(THEME_PREFIX), theme_ex.target, parse_keywords(kw_ex.target)))
    return out


def compare_teachers(
    cuts: Sequence[Cut],
    catalog: Catalog,
    teachers: Mapping[str, Teacher],
    embed: Embed,
    quality: QualityFilter,
    *,
    popular: Sequence[str],
) -> list[TeacherLabels]:
    rows = []
    for name, teacher in teachers.items():
        started = time.perf_counter()
        labelled = triples(build_examples(cuts, catalog, teacher, embed, popular=popular))
        seconds = time.perf_counter() - started
        rows.append(
            TeacherLabels(
                name=name,
                grade=quality.grade(labelled),
                mean_keywords=sum(len(k) for _, _, k in labelled) / max(1, len(labelled)),
                distinct_themes=len({t for _, t, _ in labelled}),
                seconds=round(seconds, 1),
            )
        )
    return rows


def markdown(rows: Sequence[TeacherLabels], *, contexts: int, command: str) -> str:
    lines = [
        "# Teacher label quality",
        "",
        f"Command: `{command}`",
        "",
        f"{contexts} placements of held-out regeneration requests, labelled by each teacher through the dataset "
        "builder, each (context, theme, keywords) judged by the generator's quality filter.",
        "",
        "| teacher | placements | pass rate | mean coherence | keywords per placement | distinct themes | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.grade.n} | {r.grade.pass_rate:.3f} | {r.grade.mean_coherence:.3f} | "
            f"{r.mean_keywords:.2f} | {r.distinct_themes} | {r.seconds} |"
        )
    lines += ["", "Rejections by reason:", ""]
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.grade.reasons.items(), key=lambda kv: -kv[1])) or "none"
        lines.append(f"- {r.name}: {reasons}")
    return "\n".join(lines) + "\n"


def run_comparison(
    catalog_dir: Path, log_path: Path, settings: Settings, *, requests: int, work_dir: Path, command: str
) -> str:
    """``vitrine teachers``: the catalog teacher against the OpenAI-compatible one on held-out requests."""
    catalog = Catalog.load(catalog_dir)
    settings = settings.replace(catalog_dir=catalog_dir)
    events = load_events(log_path)
    test_at = split_time(events, 0.2)
    held_out = [c for c in regen_cuts(events, settings, test_at) if c.split == "test"]
    cuts = held_out[:: max(1, len(held_out) // requests)][:requests]
    catalog_teacher = catalog_teacher_for(catalog, events, test_at)
    embedder = Embedder.load(settings.catalog.embedder_dir, "CPUExecutionProvider")
    teachers = {
        "catalog": catalog_teacher,
        f"openai ({settings.teacher.teacher_model})": select_teacher("openai", catalog_teacher, settings, work_dir),
    }
    rows = compare_teachers(
        cuts,
        catalog,
        teachers,
        embedder.embed,
        QualityFilter(embedder.embed),
        popular=catalog_teacher.popular_categories(),
    )
    return markdown(rows, contexts=rows[0].grade.n if rows else 0, command=command)
