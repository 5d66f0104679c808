"""What is scored when.

The log is replayed in time order, one group of events sharing a timestamp at a time: first every
scored position of the group gets its pages (built from ``History`` as it stood before the group),
then the whole group is folded into ``History``. So no count, session or customer history a page
is built from includes the event scored, anything at the same second, or anything later.

One universe for every strategy: products with an event strictly before the page. Baselines read the
worker's signals, which hold nothing else; the cascade retrieves from that universe only
(``streams.generator.retrieval.ExactRetriever``'s ``universe``). Every page is checked: a product on
a page before its first event is counted (``unknown on pages``, reported, 0 when the protocol holds).
Events the evaluation rejects (the worker's contract: ``decode_event``) are counted by reason.

Targets:

- Clickstream (REES46), context = the session. Every event of a session that already has earlier
  events is a scored position. ``next novel product``: the event's product was not yet seen in the
  session (any event type); the page leaves out the session's items, which cannot be hits.
  ``next cart/purchase`` and ``next viewed item``: the event's product, page left as it is.
- Transactions (Online Retail), context = the customer. Every invoice of a known customer at or
  after the cutoff is scored against the page built before it: a hit if any item of the invoice is
  on the page, NDCG with the invoice's distinct items as the relevant set. ``next invoice`` counts
  every such invoice; ``next invoice, returning customer`` only those of customers with an earlier
  invoice. Earlier months (before the cutoff) only train the counts.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from streams.contracts.errors import InvalidEvent
from streams.contracts.events import ClickEvent, decode_event
from streams.datasets.readers import ReplayRecord, SourceFormat, detect_format, read_source
from streams.evaluation.history import DEPTH, History
from streams.evaluation.metrics import dcg_hit
from streams.evaluation.strategies import Strategy, clickstream_strategies, transaction_strategies
from streams.worker.ranker import COVIS_WINDOW

NOVEL = "next novel product"
CART = "next cart/purchase"
VIEW = "next viewed item"
INVOICE = "next invoice"
RETURNING = "next invoice, returning customer"


@dataclass(frozen=True, slots=True)
class EvalConfig:
    k: int = 12
    # Scored positions start here (epoch ms); everything earlier only trains. None: score all.
    cutoff_ms: int | None = None
    # Scored positions end before this (epoch ms); later events are not replayed. None: to the end.
    until_ms: int | None = None
    pop_half_life_s: float = 3600.0
    context_half_life_s: float = 600.0
    covis_window: int = COVIS_WINDOW
    resamples: int = 1000
    seed: int = 7


CLICKSTREAM_CONFIG = EvalConfig()
TRANSACTION_CONFIG = EvalConfig(
    cutoff_ms=int(datetime(2010, 9, 1, tzinfo=UTC).timestamp() * 1000),
    pop_half_life_s=30 * 86400.0,
    context_half_life_s=180 * 86400.0,
)


@dataclass(frozen=True, slots=True)
class Event:
    """One log event (with a product) and its product's index, what pages and metrics count in."""

    click: ClickEvent
    item: int

    @property
    def ts(self) -> int:
        return self.click.ts


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored position: a page is built for ``context`` and judged against ``relevant``."""

    event_id: str
    context: str | None
    relevant: frozenset[str]
    exclude: frozenset[str]
    targets: tuple[str, ...]
    cluster: str  # bootstrap unit: the session (clickstream) or the customer (transactions)


@dataclass(slots=True)
class Outcomes:
    """Per scored page of one (target, strategy): the raw material of every metric."""

    hits: list[float] = field(default_factory=list)
    ndcgs: list[float] = field(default_factory=list)
    diversities: list[float] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)
    pages: list[tuple[int, ...]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # the scored position's event id: pairs strategies up


@dataclass(slots=True)
class EvalRun:
    fmt: SourceFormat
    config: EvalConfig
    strategies: list[tuple[str, str]]  # (name, description)
    targets: list[str]
    outcomes: dict[tuple[str, str], Outcomes]
    # (event_id, target, strategy) -> page; what the leakage self-test compares.
    pages: dict[tuple[str, str, str], tuple[int, ...]]
    stats: dict[str, int | str]
    items: list[str]  # item index -> product id
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)  # what strategies report about themselves (cascade statistics)


_ANY_SIZE = 1 << 30  # size limits are the worker's business; evaluation reads files


class EventLog(NamedTuple):
    events: list[Event]
    items: list[str]  # item index -> product id
    item_ids: dict[str, int]  # product id -> item index
    rejected: Counter[str]  # events the worker's contract rejects, by reason (not replayed, counted)


StrategyFactory = Callable[[History, EventLog], list[Strategy]]
"""Strategies beyond the traditional ones (the cascade), built once the log and its ``History`` exist."""


def load_events(records: Iterable[ReplayRecord], known_items: Iterable[str] = ()) -> EventLog:
    """Decode replay records (time-ordered ClickEvent JSON) with the worker's own contract; count what it
    rejects by reason.

    ``known_items`` (a catalog's products) get ids first, whether the log mentions them or not: coverage is then
    over the same item universe however much of the log is replayed (what a page may show is ``History.known``).
    """
    item_ids: dict[str, int] = {pid: i for i, pid in enumerate(dict.fromkeys(known_items))}
    rejected: Counter[str] = Counter()
    events: list[Event] = []
    for record in records:
        try:  # the worker's own contract: a log the worker would dead-letter is not scored either
            click = decode_event(record.value, max_bytes=_ANY_SIZE)
        except InvalidEvent as exc:
            rejected[exc.reason.value] += 1
            continue
        # Searches carry no product: folded into the session (its last query) but never scored.
        item = item_ids.setdefault(click.product_id, len(item_ids)) if click.product_id is not None else -1
        events.append(Event(click, item))
    if any(a.ts > b.ts for a, b in itertools.pairwise(events)):
        events.sort(key=lambda e: e.ts)  # stable: same-second events keep log order
    return EventLog(events, list(item_ids), item_ids, rejected)


def clickstream_positions(group: list[Event], history: History, config: EvalConfig) -> list[Scored]:
    out: list[Scored] = []
    done: set[tuple[str, str, str]] = set()
    for e in group:
        click = e.click
        if click.product_id is None or (config.cutoff_ms is not None and click.ts < config.cutoff_ms):
            continue
        seen = history.session_items.get(click.session_id)
        if not seen:
            continue  # the session's first second: nothing to personalise from
        product = click.product_id
        assert product is not None
        targets: list[str] = []
        if product not in seen:
            targets.append(NOVEL)
        if click.event_type in ("cart", "purchase"):
            targets.append(CART)
        elif click.event_type == "view":
            targets.append(VIEW)
        for target in targets:
            if (click.session_id, product, target) in done:
                continue  # the same product twice in the same second of a session: one position
            done.add((click.session_id, product, target))
            exclude = frozenset(seen) if target == NOVEL else frozenset()
            out.append(
                Scored(click.event_id, click.session_id, frozenset([product]), exclude, (target,), click.session_id)
            )
    return out


def transaction_positions(group: list[Event], history: History, config: EvalConfig) -> list[Scored]:
    invoices: dict[str, list[ClickEvent]] = {}
    for e in group:
        if e.click.user_id is None or e.click.product_id is None:
            continue
        if config.cutoff_ms is not None and e.ts < config.cutoff_ms:
            continue
        invoices.setdefault(e.click.session_id, []).append(e.click)
    out: list[Scored] = []
    for lines in invoices.values():
        user = lines[0].user_id
        assert user is not None
        targets = (INVOICE, RETURNING) if user in history.own else (INVOICE,)
        relevant = frozenset(e.product_id for e in lines if e.product_id is not None)
        out.append(Scored(lines[0].event_id, user, relevant, frozenset(), targets, user))
    return out


@dataclass(slots=True)
class PageCheck:
    """Products shown before their first event (must stay 0: the fair-universe protocol)."""

    unknown: int = 0


def build_page(strategy: Strategy, history: History, position: Scored, k: int, check: PageCheck) -> list[str]:
    """``k`` products: the strategy's own, then the latest product's category, then popularity, without
    ``exclude`` or repeats."""
    want = k + len(position.exclude)
    page: list[str] = []
    taken = set(position.exclude)
    proposed = strategy.page_candidates(position.context, want, position.exclude)
    fill = itertools.chain(
        history.category_popular(history.current_category(position.context), DEPTH), history.popular(DEPTH)
    )
    for item in itertools.chain(proposed, fill):
        if item not in taken:
            taken.add(item)
            page.append(item)
            if item not in history.known:
                check.unknown += 1
            if len(page) == k:
                break
    return page


def new_history(log: EventLog, fmt: SourceFormat, config: EvalConfig) -> History:
    """An empty past for replaying ``log`` (the worker's parameters from ``config``; contexts by customer on
    transactions)."""
    return History(
        t0=log.events[0].ts if log.events else 0,
        pop_half_life_s=config.pop_half_life_s,
        context_half_life_s=config.context_half_life_s,
        context_by_user=fmt is SourceFormat.ONLINE_RETAIL,
        window=config.covis_window,
    )


def replay(
    log: EventLog,
    *,
    fmt: SourceFormat,
    config: EvalConfig,
    progress: Callable[[int], None] | None = None,
    extra: StrategyFactory | None = None,
    traditional: bool = True,
    targets: frozenset[str] | None = None,
) -> tuple[list[Strategy], dict[tuple[str, str], Outcomes], dict[tuple[str, str, str], tuple[int, ...]], Counter[str]]:
    """Score every position (of ``targets``, default all) with the traditional strategies and ``extra``.
    The counter holds the positions per target and ``unknown on pages`` (see ``PageCheck``)."""
    events = log.events
    clickstream = fmt is not SourceFormat.ONLINE_RETAIL
    history = new_history(log, fmt, config)
    check = PageCheck()
    strategies: list[Strategy] = []
    if traditional:
        strategies += clickstream_strategies(history) if clickstream else transaction_strategies(history)
    if extra is not None:
        strategies += extra(history, log)
    positions_of = clickstream_positions if clickstream else transaction_positions
    outcomes: dict[tuple[str, str], Outcomes] = {}
    pages: dict[tuple[str, str, str], tuple[int, ...]] = {}
    counts: Counter[str] = Counter()
    for ts, grouped in itertools.groupby(events, key=lambda e: e.ts):
        if config.until_ms is not None and ts >= config.until_ms:
            break
        group = list(grouped)
        for position in positions_of(group, history, config):
            if targets is not None:
                position = dataclasses.replace(position, targets=tuple(t for t in position.targets if t in targets))
                if not position.targets:
                    continue
            for strategy in strategies:
                if not strategy.scores(position.cluster):
                    continue
                products = build_page(strategy, history, position, config.k, check)
                hit, ndcg = dcg_hit(products, position.relevant, config.k)
                categories = {history.ranker.category_of(0, p) for p in products}
                diversity = len(categories) / config.k
                page = tuple(log.item_ids[p] for p in products)
                for target in position.targets:
                    o = outcomes.setdefault((target, strategy.name), Outcomes())
                    o.hits.append(hit)
                    o.ndcgs.append(ndcg)
                    o.diversities.append(diversity)
                    o.clusters.append(position.cluster)
                    o.pages.append(page)
                    o.events.append(position.event_id)
                    pages[(position.event_id, target, strategy.name)] = page
            for target in position.targets:
                counts[target] += 1
        for e in group:  # only now does the group become the past
            history.observe(e.click)
        if progress is not None:
            progress(len(group))
    counts["unknown on pages"] = check.unknown
    return strategies, outcomes, pages, counts


def evaluate(
    path: Path,
    fmt: SourceFormat | None = None,
    *,
    config: EvalConfig | None = None,
    limit: int | None = None,
    show_progress: bool = False,
    extra: StrategyFactory | None = None,
    traditional: bool = True,
    targets: frozenset[str] | None = None,
    known_items: Sequence[str] = (),
) -> EvalRun:
    started = time.perf_counter()
    source = read_source(path, fmt, limit=limit)
    fmt = fmt or detect_format(path)
    if config is None:
        config = TRANSACTION_CONFIG if fmt is SourceFormat.ONLINE_RETAIL else CLICKSTREAM_CONFIG
    log = load_events(source.records, known_items)
    events, items = log.events, log.items
    loaded = time.perf_counter()
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(events), unit="ev", desc="replay", leave=False, mininterval=1.0)
    strategies, outcomes, pages, counts = replay(
        log,
        fmt=fmt,
        config=config,
        progress=bar.update if bar is not None else None,
        extra=extra,
        traditional=traditional,
        targets=targets,
    )
    if bar is not None:
        bar.close()
    replayed = time.perf_counter()
    order = [NOVEL, CART, VIEW] if fmt is not SourceFormat.ONLINE_RETAIL else [INVOICE, RETURNING]
    stats: dict[str, int | str] = {
        "events": len(events),
        "sessions": len({e.click.session_id for e in events}),
        "users": len({e.click.user_id for e in events if e.click.user_id is not None}),
        "items": len(items),
        "categories": len({e.click.category for e in events if e.click.category}),
        "first event": iso_time(events[0].ts) if events else "-",
        "last event": iso_time(events[-1].ts) if events else "-",
    }
    if config.cutoff_ms is not None:
        stats["scored from"] = iso_time(config.cutoff_ms)
    if config.until_ms is not None:
        stats["scored until (excluded)"] = iso_time(config.until_ms)
    for target in order:
        stats[f"scored: {target}"] = counts[target]
    stats["products on a page before their first event"] = counts["unknown on pages"]
    stats.update({f"skipped rows: {reason}": n for reason, n in source.skipped.items()})
    stats["rejected events (the worker's contract)"] = sum(log.rejected.values())
    stats.update({f"rejected events: {reason}": n for reason, n in sorted(log.rejected.items())})
    return EvalRun(
        fmt=fmt,
        config=config,
        strategies=[(s.name, s.description) for s in strategies],
        targets=[t for t in order if counts[t]],
        outcomes=outcomes,
        pages=pages,
        stats=stats,
        items=items,
        seconds={"load": loaded - started, "replay": replayed - loaded},
        notes=[note for s in strategies for note in s.notes()],
    )


def iso_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
