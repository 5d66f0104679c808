"""The replay protocol: no page may see its own second or the future; strategies rank sensibly."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import orjson
import pytest

from models.embedder import CachedEmbed, Embedder
from models.quality import QualityFilter
from streams.catalog.artifacts import Catalog
from streams.catalog.products import Product
from streams.catalog.vocabulary import build_vocabulary
from streams.contracts.events import ClickEvent
from streams.contracts.storefront import Arm
from streams.datasets.readers import ReplayRecord, SourceFormat
from streams.evaluation.cascade import (
    TEACHER,
    Cascade,
    CascadeSetup,
    Planning,
    catalog_teacher,
    exact_retriever,
    page_products,
    replay_request,
)
from streams.evaluation.history import History
from streams.evaluation.protocol import (
    CART,
    CLICKSTREAM_CONFIG,
    INVOICE,
    NOVEL,
    RETURNING,
    TRANSACTION_CONFIG,
    EvalConfig,
    EventLog,
    StrategyFactory,
    load_events,
    replay,
)
from streams.evaluation.ranker_training import collect
from streams.evaluation.strategies import Strategy
from streams.generator.assembly import DEFAULT_WEIGHTS
from streams.generator.layout import page_layout, written
from streams.generator.pipeline import StorefrontGenerator
from streams.generator.ranking import LearnedRanker, load_ranker
from streams.runtime.settings import Settings
from streams.worker.fold import fold
from streams.worker.intent import TaxonomyIntent
from streams.worker.ranker import RankerSignals
from streams.worker.sessions import SessionTracker
from streams.worker.trigger import TriggerPolicy
from tests.generator.test_ranking import _planted

T0 = 1_569_888_000_000
SHELVES = {"phones": "acme", "shoes": "stride", "sofas": "lounge", "tents": "camp"}
LATE = "phones-late"


def _products() -> list[Product]:
    """Every product the test logs use: the small clickstream's, the shop's eight per shelf, the planted Q."""
    out = [Product(p, f"acme {p} phone", "phones", "acme", 200.0) for p in "ABCD"]
    out += [Product(p, f"stride {p} shoe", "shoes", "stride", 60.0) for p in "XYZ"]
    out.append(Product("Q", "quest kit", "quest", None, 10.0))
    out.append(Product(LATE, "acme phones 8 phone", "phones", "acme", 25.0))  # first seen after every page
    for shelf, brand in SHELVES.items():
        out += [Product(f"{shelf}-{i}", f"{brand} {shelf} {i}", shelf, brand, 20.0 + i) for i in range(8)]
    return out


@pytest.fixture(scope="module")
def catalog(embedder_dir: Path) -> Catalog:
    """A small catalog with real embeddings: products and the vocabulary derived from them."""
    embedder = Embedder.load(embedder_dir)
    products = _products()
    keywords = build_vocabulary(products)
    vectors = embedder.embed([p.embedding_text() for p in products])
    return Catalog(products, vectors, keywords, embedder.embed([k.keyword for k in keywords]))


@pytest.fixture(scope="module")
def cascade(catalog: Catalog, embedder_dir: Path) -> CascadeSetup:
    known = {k.keyword: catalog.keyword_vectors[i] for i, k in enumerate(catalog.keywords)}
    embed = CachedEmbed(Embedder.load(embedder_dir), known)
    return CascadeSetup(catalog=catalog, quality=QualityFilter(embed))  # the generator's filter, as build_planner


def _record(
    n: int,
    session: str,
    product: str,
    second: int,
    *,
    kind: str = "view",
    cat: str | None = None,
    user: str | None = None,
) -> ReplayRecord:
    event = ClickEvent(
        event_id=f"e{n}",
        session_id=session,
        user_id=user,
        event_type=kind,  # type: ignore[arg-type]
        product_id=product,
        category=cat,
        ts=T0 + second * 1000,
    )
    return ReplayRecord(session.encode(), event.to_json(), event.ts)


def _clickstream() -> list[ReplayRecord]:
    """Sessions s0..s5 browse A -> B (B co-visited with A), some go on to C; the others browse X, Y, Z."""
    rows: list[tuple[str, str, int, str]] = []
    second = 0
    for s in range(6):
        for product in ("A", "B", "C")[: 2 + s % 2]:
            rows.append((f"s{s}", product, second, "phones"))
            second += 7
    for s in range(6, 14):
        for product in ("X", "Y", "Z", "X"):
            rows.append((f"s{s}", product, second, "shoes"))
            second += 3
    rows += [("live", "A", second + 10, "phones"), ("live", "D", second + 20, "phones")]
    rows += [("live", "B", second + 30, "phones"), ("live", "B", second + 30, "phones")]
    return [_record(n, s, p, sec, cat=c) for n, (s, p, sec, c) in enumerate(rows)]


def _live_ids() -> list[str]:
    """Event ids of the live session's A, D, B, B views (the last four records)."""
    return [ClickEvent.model_validate_json(r.value).event_id for r in _clickstream()[-4:]]


def _pages(
    records: list[ReplayRecord], fmt: SourceFormat, config: EvalConfig, extra: StrategyFactory | None = None
) -> dict[tuple[str, str, str], tuple]:
    log = load_events(records, [p.product_id for p in _products()] if extra is not None else ())
    _, _, pages, _ = replay(log, fmt=fmt, config=config, extra=extra)
    return {key: tuple(log.items[i] for i in page) for key, page in pages.items()}


def test_planted_future_and_same_second_events_change_no_page(cascade: CascadeSetup) -> None:
    records = _clickstream()
    baseline = _pages(records, SourceFormat.REES46, CLICKSTREAM_CONFIG, cascade)
    assert baseline
    assert any(key[2] == TEACHER for key in baseline)
    last_ts = records[-1].ts
    assert last_ts is not None
    last_second = (last_ts - T0) // 1000
    planted = [
        # same second as the last scored events, in the live session and elsewhere, then the future
        _record(900, "live", "Q", last_second, cat="quest"),
        _record(901, "other", "Q", last_second, cat="quest"),
        _record(902, "other", "B", last_second, cat="phones"),
        *[_record(903 + i, f"f{i}", "Q", last_second + 1 + i, cat="quest") for i in range(20)],
        _record(950, "live", "Q", last_second + 60, cat="quest"),
    ]
    leaked = _pages(records + planted, SourceFormat.REES46, CLICKSTREAM_CONFIG, cascade)
    for key, page in baseline.items():
        assert leaked[key] == page, key
    assert any(key[0] == "e950" for key in leaked)  # the planted future is itself scored


def test_the_leakage_check_can_fail(cascade: CascadeSetup) -> None:
    """The same plant one second earlier is the past of the last events: some page must change, the cascade's too."""
    records = _clickstream()
    baseline = _pages(records, SourceFormat.REES46, CLICKSTREAM_CONFIG, cascade)
    last_ts = records[-1].ts
    assert last_ts is not None
    before = (last_ts - T0) // 1000 - 1
    planted = [_record(900 + i, f"p{i}", "Q", before, cat="quest") for i in range(30)]
    planted += [_record(940 + i, f"p{i}", "B", before, cat="phones") for i in range(30)]
    changed = _pages(
        sorted(records + planted, key=lambda r: r.ts or 0), SourceFormat.REES46, CLICKSTREAM_CONFIG, cascade
    )
    assert any(changed[key] != page for key, page in baseline.items())
    assert any(changed[key] != page for key, page in baseline.items() if key[2] == TEACHER)


def _examples(records: list[ReplayRecord], cascade: CascadeSetup) -> dict[tuple[str, str], list[bytes]]:
    """The learned ranker's training groups (``vitrine train-ranker``'s), by (position, shelf): their feature rows."""
    log = load_events(sorted(records, key=lambda r: r.ts or 0), [p.product_id for p in _products()])
    examples = collect(
        log,
        SourceFormat.REES46,
        CLICKSTREAM_CONFIG,
        catalog=cascade.catalog,
        split_ms=1 << 62,
        sample=1.0,
        quality=cascade.quality,
        embed=None,
    )
    out: dict[tuple[str, str], list[bytes]] = {}
    for key, rows in zip(examples.keys, examples.rows, strict=True):
        out.setdefault(key, []).append(rows.tobytes())
    return out


def test_planted_future_and_same_second_events_change_no_ranker_feature(cascade: CascadeSetup) -> None:
    records = _clickstream()
    baseline = _examples(records, cascade)
    assert len(baseline) > 5
    last_second = ((records[-1].ts or 0) - T0) // 1000
    planted = [
        _record(900, "live", "Q", last_second, cat="quest"),
        _record(901, "other", "B", last_second, cat="phones"),
        *[_record(903 + i, f"f{i}", "B", last_second + 1 + i, cat="phones") for i in range(20)],
    ]
    leaked = _examples(records + planted, cascade)
    for key, rows in baseline.items():
        assert leaked[key] == rows, key


def test_the_ranker_feature_leakage_check_can_fail(cascade: CascadeSetup) -> None:
    """The same kind of plant one second before the last events is their past: some feature row must change."""
    records = _clickstream()
    baseline = _examples(records, cascade)
    before = ((records[-1].ts or 0) - T0) // 1000 - 1
    planted = [_record(900 + i, f"p{i}", "Q", before, cat="quest") for i in range(30)]
    planted += [_record(940 + i, f"p{i}", "B", before, cat="phones") for i in range(30)]
    changed = _examples(records + planted, cascade)
    assert any(changed.get(key) != rows for key, rows in baseline.items())


def test_ranker_training_stops_at_the_split(cascade: CascadeSetup) -> None:
    records = _clickstream()
    log = load_events(records, [p.product_id for p in _products()])
    split = records[-2].ts or 0  # the live session's last second: its positions there are reported, not trained on
    before, every = (
        collect(
            log,
            SourceFormat.REES46,
            CLICKSTREAM_CONFIG,
            catalog=cascade.catalog,
            split_ms=until,
            sample=1.0,
            quality=cascade.quality,
            embed=None,
        )
        for until in (split, 1 << 62)
    )
    late = {r.ts for r in records if (r.ts or 0) >= split}
    ids = {ClickEvent.model_validate_json(r.value).event_id for r in records if r.ts in late}
    assert not ids & {event for event, _ in before.keys}
    assert ids & {event for event, _ in every.keys}


def test_same_second_duplicate_is_scored_once_and_not_as_novel_after_itself() -> None:
    _, _, pages, counts = replay(load_events(_clickstream()), fmt=SourceFormat.REES46, config=CLICKSTREAM_CONFIG)
    live = _live_ids()
    live_novel = [k for k in pages if k[1] == NOVEL and k[2] == "popularity" and k[0] in live]
    assert [k[0] for k in live_novel] == [live[1], live[2]]  # D, then B once (the two B views share one second)
    assert counts[NOVEL] == len([k for k in pages if k[1] == NOVEL and k[2] == "popularity"])


def test_co_visitation_and_session_knn_recommend_the_co_visited_item() -> None:
    pages = _pages(_clickstream(), SourceFormat.REES46, CLICKSTREAM_CONFIG)
    # the live session's D view: context is {A}; B follows A in every earlier session
    key = _live_ids()[1]
    assert pages[(key, NOVEL, "co-visitation")][0] == "B"
    assert pages[(key, NOVEL, "session-kNN")][0] == "B"
    # popularity ranks the shoe items (seen more often) first; category affinity stays in phones
    assert pages[(key, NOVEL, "popularity")][0] in {"X", "Y", "Z"}
    assert pages[(key, NOVEL, "category")][0] in {"B", "C"}
    # the novel page never shows what the session already saw
    assert all("A" not in page for (eid, target, _), page in pages.items() if eid == key and target == NOVEL)


def test_recently_viewed_wins_the_cart_of_a_viewed_item() -> None:
    records = [*_clickstream(), _record(99, "live", "D", 10_000, kind="cart", cat="phones")]
    pages = _pages(records, SourceFormat.REES46, CLICKSTREAM_CONFIG)
    assert "D" in pages[("e99", CART, "recently viewed")][:3]


def test_rebuy_shows_the_customers_past_purchases_on_the_next_invoice() -> None:
    day = 86_400
    records = []
    n = 0
    for c in range(5):  # customers buy a shared basket (P with Q) and their own favourite
        for visit in range(2):
            for product in ("P", "Q", f"own{c}"):
                records.append(
                    _record(
                        n, f"inv-{c}-{visit}", product, (c * 2 + visit) * day, kind="purchase", cat="mug", user=f"c{c}"
                    )
                )
                n += 1
    records.append(_record(n, "inv-late", "own0", 40 * day, kind="purchase", cat="mug", user="c0"))
    config = EvalConfig(cutoff_ms=T0 + 30 * day * 1000, pop_half_life_s=30 * day, context_half_life_s=90 * day)
    log = load_events(records)
    items = log.items
    _, outcomes, pages, counts = replay(log, fmt=SourceFormat.ONLINE_RETAIL, config=config)
    assert counts == {INVOICE: 1, RETURNING: 1, "unknown on pages": 0}  # before the cutoff only trains
    assert outcomes[(RETURNING, "re-buy")].hits == [1.0]
    named = {k: tuple(items[i] for i in p) for k, p in pages.items()}
    assert "own0" in named[(f"e{n}", INVOICE, "re-buy + session-kNN (RRF)")]
    assert named[(f"e{n}", INVOICE, "re-buy + session-kNN (placement)")][:3] == named[(f"e{n}", INVOICE, "re-buy")][:3]
    assert TRANSACTION_CONFIG.cutoff_ms is not None


def _shop() -> list[ReplayRecord]:
    """Sixty sessions browsing four to six products, mostly on one shelf, then a live phone session."""
    rng = random.Random(3)
    shelves = list(SHELVES)
    rows: list[tuple[str, str, int, str]] = []
    second = 0
    for s in range(60):
        shelf = shelves[s % len(shelves)]
        for _ in range(rng.randint(4, 6)):
            where = shelf if rng.random() < 0.8 else rng.choice(shelves)
            rows.append((f"s{s}", f"{where}-{rng.randrange(8)}", second, where))
            second += rng.randint(1, 5)
    for i in (0, 1, 2):
        rows.append(("live", f"phones-{i}", second + 10 * (i + 1), "phones"))
    return [_record(n, s, p, sec, cat=c) for n, (s, p, sec, c) in enumerate(rows)]


@pytest.fixture(scope="module")
def shop(cascade: CascadeSetup) -> tuple[Cascade, History, EventLog]:
    return _teacher_after_shop(cascade)


def _teacher_after_shop(cascade: CascadeSetup) -> tuple[Cascade, History, EventLog]:
    """The teacher cascade after replaying the shop log."""
    log = load_events(_shop(), cascade.catalog.product_ids)
    made: list[Strategy] = []

    def extra(history: History, events: EventLog) -> list[Strategy]:
        made.extend(cascade(history, events))
        return made

    replay(log, fmt=SourceFormat.REES46, config=CLICKSTREAM_CONFIG, extra=extra, traditional=False)
    (teacher,) = [s for s in made if isinstance(s, Cascade) and s.name == TEACHER]
    return teacher, teacher.history, log


def test_cascade_page_fills_every_placement_with_distinct_allowed_items(
    shop: tuple[Cascade, History, EventLog],
) -> None:
    teacher, history, _ = shop
    k = CLICKSTREAM_CONFIG.k
    seen = frozenset(history.session_items["live"])
    same_shelf = frozenset(pid for pid in history.known if pid.startswith("phones-") and pid not in seen)
    for exclude in (frozenset(), seen, seen | same_shelf):
        page = teacher.page_candidates("live", k, exclude)
        assert len(page) == k
        assert len(set(page)) == k
        assert not set(page) & exclude
    # the session is about phones: the page leads with phones it has not seen
    page = teacher.page_candidates("live", k, seen)
    assert page[0].startswith("phones-")


def test_at_k_24_the_cascade_scores_the_served_page_of_six_products_a_placement(cascade: CascadeSetup) -> None:
    """``vitrine eval --k 24``: the page the generator serves (VITRINE_ITEMS_PER_PLACEMENT's default of 6)."""
    served = Settings().generator.items_per_placement
    teacher, history, _ = _teacher_after_shop(dataclasses.replace(cascade, per_placement=served))
    assert teacher.assembler.items_per_placement == served == 6
    page = teacher.page_candidates("live", 4 * served, frozenset(history.session_items["live"]))
    assert len(page) == len(set(page)) == 4 * served
    # How each written placement ended is counted for the report, at the served size.
    assert teacher.served["generated"] > 0
    assert set(teacher.served) <= {"generated", "rejected", "theme_unfilled", "few_products"}
    assert f"({served} products each)" in teacher.notes()[-1]
    # The same page asked for again (re-buy + teacher cascade does) is counted once.
    counted = (teacher.pages, sum(teacher.served.values()))
    assert teacher.page_candidates("live", 4 * served, frozenset(history.session_items["live"])) == page
    assert (teacher.pages, sum(teacher.served.values())) == counted


def test_cascade_plans_once_per_past_and_retrieves_for_usable_placements(
    shop: tuple[Cascade, History, EventLog],
) -> None:
    teacher, _, _ = shop
    planning = teacher.planning
    planned = planning.plan("live")
    assert planned is not None
    pages = planning.stats.pages
    assert planning.plan("live") is planned  # the same past and context: planned once
    assert planning.stats.pages == pages
    request, plan = planned
    assert [p.kind for p in plan.placements] == list(written(page_layout(request.context)))  # what the page shows
    usable = [p for p in plan.placements if p.quality.ok and p.keywords]
    assert usable
    # the teacher's keywords came from the known keyword candidates and find known products
    assert all(planning.retriever.search([p.keywords for p in usable]))


def _late_product_pages(cascade: CascadeSetup, *, known_only: bool) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """The shop replayed with the cascade, then one event of ``LATE``: a phone in the catalog, first seen last."""
    records = _shop()
    last = records[-1].ts
    assert last is not None
    records.append(_record(999, "late", LATE, (last - T0) // 1000 + 60, cat="phones"))
    setup = dataclasses.replace(cascade, known_only=known_only)
    return _pages(records, SourceFormat.REES46, CLICKSTREAM_CONFIG, setup)


def test_a_product_first_seen_after_a_page_is_on_no_page(cascade: CascadeSetup) -> None:
    pages = _late_product_pages(cascade, known_only=True)
    assert any(key[2] == TEACHER for key in pages)
    assert not [key for key, page in pages.items() if LATE in page]


def test_the_universe_check_can_fail(cascade: CascadeSetup) -> None:
    """Control: retrieving from the whole catalog (the old protocol) puts the late phone on phone pages."""
    pages = _late_product_pages(cascade, known_only=False)
    assert [key for key, page in pages.items() if LATE in page and key[2] == TEACHER]
    assert not [key for key, page in pages.items() if LATE in page and key[2] != TEACHER]  # baselines cannot


def test_rejected_events_are_counted_by_reason() -> None:
    records = _clickstream()
    event = orjson.loads(records[0].value) | {"event_id": "long", "category": "c" * 300}
    records += [ReplayRecord(b"x", b"{not json", None), ReplayRecord(b"s0", orjson.dumps(event), None)]
    log = load_events(records)
    assert sum(log.rejected.values()) == 2
    assert len(log.rejected) == 2  # two reasons: malformed JSON, and a field over the contract's limit


@pytest.mark.parametrize(
    ("learned", "generative"),
    [(False, True), (True, True), (True, False)],
    ids=["weighted-rrf", "learned-ranker", "learned-ranker-control-arm"],
)
def test_the_evaluation_page_is_the_generators_page_for_the_workers_request(
    shop_parts: ShopParts, learned: bool, generative: bool, tmp_path: Path
) -> None:
    """Item by item: the request the worker sends (streams.worker.fold), through the generator
    (StorefrontGenerator: planner, assembler; the ranker loaded as serving loads it), and the evaluation's request
    and page builder for that moment (the ranker loaded as ``vitrine eval --ranker`` loads it). The control arm
    is what the evaluation's ablation row ("cascade without generation") scores."""
    records, planning, _ = shop_parts
    model = _planted(tmp_path / "ranker") if learned else None
    problems: list[str] = []
    served_ranker = load_ranker(model, problems)
    eval_ranker = LearnedRanker.load(model) if model is not None else None
    assert not problems and (served_ranker is None) == (not learned)
    tracker = SessionTracker(intent_space=TaxonomyIntent(), policy=TriggerPolicy(), half_life_s=600.0)
    ranker = RankerSignals({}, half_life_s=CLICKSTREAM_CONFIG.pop_half_life_s)
    emitted = fold(records, tracker, max_event_bytes=1 << 20, ranker=ranker).emitted
    assert len(emitted) > 10
    generator = StorefrontGenerator(
        assembler=planning.assembler(DEFAULT_WEIGHTS, learned=served_ranker),
        planner=planning.planner,
        control_share=0.0 if generative else 1.0,
    )
    compared = 0
    history = planning.history
    folded = 0
    for request in emitted[-12:]:
        # the evaluation's past up to the worker's event (one more event per record: none is rejected here)
        upto = next(
            i for i, r in enumerate(records) if r.ts == request.event_ts and r.key == request.session_id.encode()
        )
        while folded <= upto:
            history.observe(ClickEvent.model_validate_json(records[folded].value))
            folded += 1
        mine = replay_request(history, request.session_id)
        assert mine is not None
        assert mine.context == dataclasses.replace(request.context, drift=0.0)
        assert mine.ranker == request.ranker
        (served,) = generator.generate([request])
        (plan,) = planning.planner.plan([mine])
        page = page_products(
            planning.assembler(DEFAULT_WEIGHTS, learned=eval_ranker), mine, plan, generative=generative
        )
        assert served.arm is (Arm.TEACHER if generative else Arm.CONTROL)
        assert page == [item.product_id for p in served.placements for item in p.items]
        compared += 1
    assert compared == 12


ShopParts = tuple[list[ReplayRecord], Planning, Catalog]


@pytest.fixture
def shop_parts(cascade: CascadeSetup) -> ShopParts:
    """A fresh History (nothing folded yet) with the teacher's planning over the shop's catalog, for one worker."""
    records = sorted(_shop()[:-3], key=lambda r: r.ts or 0)  # requests need sessions with enough events
    history = History(
        t0=records[0].ts or 0,
        pop_half_life_s=CLICKSTREAM_CONFIG.pop_half_life_s,
        context_half_life_s=CLICKSTREAM_CONFIG.context_half_life_s,
        context_by_user=False,
    )
    retriever = exact_retriever(cascade.catalog, history)
    planning = Planning(
        history=history,
        catalog=cascade.catalog,
        writer=catalog_teacher(cascade.catalog, load_events([]), None),
        retriever=retriever,
        quality=cascade.quality,
    )
    return records, planning, cascade.catalog
