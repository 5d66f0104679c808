"""The replay protocol: no page may see its own second or the future; strategies rank sensibly."""

from __future__ import annotations

from streams.evaluation.protocol import (
    CART,
    CLICKSTREAM_CONFIG,
    INVOICE,
    NOVEL,
    RETURNING,
    TRANSACTION_CONFIG,
    EvalConfig,
    load_events,
    replay,
)
from streams.events import ClickEvent
from streams.replay_sources import ReplayRecord, SourceFormat

T0 = 1_569_888_000_000


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


def _pages(records: list[ReplayRecord], fmt: SourceFormat, config: EvalConfig) -> dict[tuple[str, str, str], tuple]:
    events, items = load_events(records)
    _, _, pages, _ = replay(events, n_items=len(items), fmt=fmt, config=config)
    return {key: tuple(items[i] for i in page) for key, page in pages.items()}


def test_planted_future_and_same_second_events_change_no_page() -> None:
    records = _clickstream()
    baseline = _pages(records, SourceFormat.REES46, CLICKSTREAM_CONFIG)
    assert baseline
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
    leaked = _pages(records + planted, SourceFormat.REES46, CLICKSTREAM_CONFIG)
    for key, page in baseline.items():
        assert leaked[key] == page, key
    assert any(key[0] == "e950" for key in leaked)  # the planted future is itself scored


def test_the_leakage_check_can_fail() -> None:
    """The same plant one second earlier is the past of the last events: some page must change."""
    records = _clickstream()
    baseline = _pages(records, SourceFormat.REES46, CLICKSTREAM_CONFIG)
    last_ts = records[-1].ts
    assert last_ts is not None
    before = (last_ts - T0) // 1000 - 1
    planted = [_record(900 + i, f"p{i}", "Q", before, cat="quest") for i in range(30)]
    planted += [_record(940 + i, f"p{i}", "B", before, cat="phones") for i in range(30)]
    changed = _pages(sorted(records + planted, key=lambda r: r.ts or 0), SourceFormat.REES46, CLICKSTREAM_CONFIG)
    assert any(changed[key] != page for key, page in baseline.items())


def test_same_second_duplicate_is_scored_once_and_not_as_novel_after_itself() -> None:
    events, items = load_events(_clickstream())
    _, _, pages, counts = replay(events, n_items=len(items), fmt=SourceFormat.REES46, config=CLICKSTREAM_CONFIG)
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
    assert pages[(key, NOVEL, "category affinity")][0] in {"B", "C"}
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
    events, items = load_events(records)
    _, outcomes, pages, counts = replay(events, n_items=len(items), fmt=SourceFormat.ONLINE_RETAIL, config=config)
    assert counts == {INVOICE: 1, RETURNING: 1}  # before the cutoff only trains
    assert outcomes[(RETURNING, "re-buy")].hits == [1.0]
    named = {k: tuple(items[i] for i in p) for k, p in pages.items()}
    assert "own0" in named[(f"e{n}", INVOICE, "re-buy + co-occurrence (RRF)")]
    assert (
        named[(f"e{n}", INVOICE, "re-buy + co-occurrence (placement)")][:3] == named[(f"e{n}", INVOICE, "re-buy")][:3]
    )
    assert TRANSACTION_CONFIG.cutoff_ms is not None
