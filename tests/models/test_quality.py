"""The quality gate with real all-MiniLM-L6-v2 embeddings: each rule, coherence, dedupe, products, grading."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.embedder import Embedder
from models.quality import QualityConfig, QualityFilter, RejectReason

CONTEXT = "hero | cart audio.headphone sony 64-128 ; view electronics.smartphone samsung 128-256 x3 | q: earbuds"
THEME = "sony headphones and earbuds"
KEYWORDS = ["sony headphones", "earbuds", "wireless headphones"]


@pytest.fixture(scope="module")
def gate(embedder_dir: Path) -> QualityFilter:
    embedder = Embedder.load(embedder_dir, "CPUExecutionProvider", intra_op_threads=1)
    return QualityFilter(embedder.embed)


def reasons(gate: QualityFilter, theme: str, keywords: list[str] = KEYWORDS, context: str = CONTEXT) -> list[str]:
    (verdict,) = gate.check_page(context, [theme], [keywords])
    assert verdict.ok == (not verdict.reasons)
    return [r.value for r in verdict.reasons]


def test_a_good_placement_passes(gate: QualityFilter) -> None:
    (verdict,) = gate.check_page(CONTEXT, [THEME], [KEYWORDS], product_counts=[12])
    assert verdict.ok and verdict.reasons == []
    assert verdict.scores["theme_context"] > 0.4 and verdict.scores["keywords_theme"] > 0.4
    assert verdict.scores["products"] == 12


@pytest.mark.parametrize(
    ("reason", "theme", "keywords"),
    [
        (RejectReason.EMPTY_THEME, "  ", KEYWORDS),
        (RejectReason.TOO_SHORT, "tv", KEYWORDS),
        (RejectReason.TOO_LONG, "sony headphones and earbuds for every day of the week and more", KEYWORDS),
        (RejectReason.NOT_PRINTABLE, "sony headphones\x07 and earbuds", KEYWORDS),
        (RejectReason.URL, "sony headphones at www.example.com", KEYWORDS),
        (RejectReason.URL, "earbuds", ["sony headphones", "http://x.io/buy"]),
        (RejectReason.EMAIL, "sony headphones: ask sales@shop.example", KEYWORDS),
        (RejectReason.ALL_CAPS, "SONY HEADPHONES AND EARBUDS", KEYWORDS),
        (RejectReason.REPETITIVE, "sony sony headphones", KEYWORDS),
        (RejectReason.REPETITIVE, "earbuds for earbuds with earbuds", KEYWORDS),
        (RejectReason.BLOCKED, "sony headphones porn", KEYWORDS),
        (RejectReason.BLOCKED, THEME, ["sony headphones", "free  money"]),
        (RejectReason.NO_KEYWORDS, THEME, []),
        (RejectReason.OFF_CONTEXT, "garden furniture sale", ["garden furniture"]),
        (RejectReason.INCOHERENT_KEYWORDS, THEME, ["washing machine", "garden hose", "dog bed"]),
    ],
)
def test_each_rule_rejects(gate: QualityFilter, reason: RejectReason, theme: str, keywords: list[str]) -> None:
    assert reason.value in reasons(gate, theme, keywords)


def test_rules_do_not_fire_on_ordinary_themes(gate: QualityFilter) -> None:
    ordinary = ["Sony headphones", "USB-C earbuds under 100", "Headphones & earbuds: new in", "Killer deals on audio"]
    for theme in ordinary:
        assert reasons(gate, theme) == [], theme


def test_blocklist_is_configurable(gate: QualityFilter) -> None:
    custom = QualityFilter(gate._embed, QualityConfig(blocklist=frozenset({"earbuds"})))
    (verdict,) = custom.check_page(CONTEXT, [THEME], [KEYWORDS])
    assert verdict.reasons == [RejectReason.BLOCKED]
    assert reasons(gate, "sony headphones porn") == ["blocked"]


def test_near_duplicate_themes_on_one_page(gate: QualityFilter) -> None:
    themes = ["deals on audio", "wireless headphones", "audio deals", "Wireless Headphones!"]
    verdicts = gate.check_page(CONTEXT, themes, [KEYWORDS] * 4)
    assert [RejectReason.DUPLICATE_THEME in v.reasons for v in verdicts] == [False, False, True, True]


def test_distinct_themes_are_not_duplicates(gate: QualityFilter) -> None:
    themes = ["sony headphones", "samsung smartphones", "earbuds under 50", "deals on audio"]
    verdicts = gate.check_page(CONTEXT, themes, [KEYWORDS] * 4)
    assert not any(RejectReason.DUPLICATE_THEME in v.reasons for v in verdicts)


def test_placements_need_enough_products(gate: QualityFilter) -> None:
    verdicts = gate.check_page(CONTEXT, [THEME, "samsung smartphones"], [KEYWORDS, ["samsung smartphone"]], [2, 3])
    assert [v.reasons for v in verdicts] == [[RejectReason.FEW_PRODUCTS], []]


def test_per_placement_contexts_and_shape_errors(gate: QualityFilter) -> None:
    kitchen = "deals | view kitchen.washer bosch 256-512 ; view appliances.kitchen.refrigerators lg 512-1024"
    verdicts = gate.check_page([CONTEXT, kitchen], [THEME, THEME], [KEYWORDS, KEYWORDS])
    assert [RejectReason.OFF_CONTEXT in v.reasons for v in verdicts] == [False, True]
    with pytest.raises(ValueError, match="per placement"):
        gate.check_page(CONTEXT, [THEME], [KEYWORDS, KEYWORDS])


def test_grade_summarises_triples(gate: QualityFilter) -> None:
    grade = gate.grade(
        [
            (CONTEXT, THEME, KEYWORDS),
            (CONTEXT, "samsung smartphones", ["samsung smartphone"]),
            (CONTEXT, "garden furniture sale", ["garden furniture"]),
            (CONTEXT, "SONY SONY", []),
        ]
    )
    assert grade.n == 4 and grade.pass_rate == 0.5
    assert grade.reasons["off_context"] == 1 and grade.reasons["no_keywords"] == 1
    assert 0 < grade.mean_coherence < 1
    assert gate.grade([]).n == 0


def test_a_batch_of_pages_is_judged_as_each_page_alone_with_one_embedding_call(embedder_dir: Path) -> None:
    """Duplicates are a page's own business: the same theme on two pages is not a duplicate."""
    embedder = Embedder.load(embedder_dir, "CPUExecutionProvider", intra_op_threads=1)
    calls: list[int] = []

    def embed(texts: list[str]) -> object:
        calls.append(len(texts))
        return embedder.embed(texts)

    gate = QualityFilter(embed)  # type: ignore[arg-type]
    other = "view home.furniture.sofa ikea 256-512 x2"
    pages = [
        (CONTEXT, [THEME, "sony headphones & earbuds", "deals on earbuds"], [KEYWORDS, KEYWORDS, ["earbuds"]]),
        (other, [THEME, "sofas for your living room"], [KEYWORDS, ["sofa", "living room sofa"]]),
    ]
    batch = gate.check_pages(pages)
    assert len(calls) == 1
    alone = [gate.check_page(context, themes, keywords) for context, themes, keywords in pages]
    assert [[(v.ok, v.reasons) for v in page] for page in batch] == [
        [(v.ok, v.reasons) for v in page] for page in alone
    ]
    for batched, single in zip(batch, alone, strict=True):  # a text embeds a hair differently in another batch
        assert [v.scores for v in batched] == [pytest.approx(v.scores, abs=1e-5) for v in single]
    assert RejectReason.DUPLICATE_THEME in batch[0][1].reasons
    assert RejectReason.DUPLICATE_THEME not in batch[1][0].reasons  # page one's theme again, on another page
    assert RejectReason.OFF_CONTEXT in batch[1][0].reasons
