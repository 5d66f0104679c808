"""What is scored when.

The log is replayed in time order, one group of events sharing a timestamp at a time: first every
scored position of the group gets its pages (built from ``History`` as it stood before the group),
then the whole group is folded into ``History``. So no count, session or customer history a page
is built from includes the event scored, anything at the same second, or anything later.

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
from streams.contracts.events import decode_event
from streams.datasets.readers import ReplayRecord, SourceFormat, detect_format, read_source
from streams.evaluation.history import NO_CATEGORY, Event, History
from streams.evaluation.metrics import dcg_hit
from streams.evaluation.strategies import Strategy, clickstream_strategies, transaction_strategies

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
    resamples: int = 1000
    seed: int = 7


CLICKSTREAM_CONFIG = EvalConfig()
TRANSACTION_CONFIG = EvalConfig(
    cutoff_ms=int(datetime(2010, 9, 1, tzinfo=UTC).timestamp() * 1000),
    pop_half_life_s=30 * 86400.0,
    context_half_life_s=180 * 86400.0,
)


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored position: a page is built for ``context`` and judged against ``relevant``."""

    event_id: str
    context: str | None
    relevant: frozenset[int]
    exclude: frozenset[int]
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
    categories: list[str]  # category index -> category name


StrategyFactory = Callable[[History, EventLog], list[Strategy]]
"""Strategies beyond the traditional ones (the cascade), built once the log and its ``History`` exist."""


def load_events(records: Iterable[ReplayRecord], known_items: Iterable[str] = ()) -> EventLog:
    """Decode replay records (time-ordered ClickEvent JSON) into integer-id events; skip searches.

    ``known_items`` (a catalog's products) get ids first, whether the log mentions them or not: a strategy
    that shows catalog products then sees the same item universe however much of the log is replayed.
    """
    item_ids: dict[str, int] = {pid: i for i, pid in enumerate(dict.fromkeys(known_items))}
    cat_ids: dict[str, int] = {}
    events: list[Event] = []
    for record in records:
        try:  # the worker's own contract: a log the worker would dead-letter is not scored either
            click = decode_event(record.value, max_bytes=_ANY_SIZE)
        except InvalidEvent:
            continue
        if click.product_id is None:
            continue
        item = item_ids.setdefault(click.product_id, len(item_ids))
        cat = cat_ids.setdefault(click.category, len(cat_ids)) if click.category else NO_CATEGORY
        events.append(
            Event(
                index=len(events),
                event_id=click.event_id,
                ts=click.ts,
                session=click.session_id,
                user=click.user_id,
                kind=click.event_type,
                item=item,
                category=cat,
                brand=click.brand,
            )
        )
    if any(a.ts > b.ts for a, b in itertools.pairwise(events)):
        events.sort(key=lambda e: e.ts)  # stable: same-second events keep log order
    return EventLog(events, list(item_ids), list(cat_ids))


def clickstream_positions(group: list[Event], history: History, config: EvalConfig) -> list[Scored]:
    out: list[Scored] = []
    done: set[tuple[str, int, str]] = set()
    for e in group:
        if config.cutoff_ms is not None and e.ts < config.cutoff_ms:
            continue
        seen = history.session_items.get(e.session)
        if not seen:
            continue  # the session's first second: nothing to personalise from
        targets: list[str] = []
        if e.item not in seen:
            targets.append(NOVEL)
        if e.kind in ("cart", "purchase"):
            targets.append(CART)
        elif e.kind == "view":
            targets.append(VIEW)
        for target in targets:
            if (e.session, e.item, target) in done:
                continue  # the same product twice in the same second of a session: one position
            done.add((e.session, e.item, target))
            exclude = frozenset(seen) if target == NOVEL else frozenset()
            out.append(Scored(e.event_id, e.session, frozenset([e.item]), exclude, (target,), e.session))
    return out


def transaction_positions(group: list[Event], history: History, config: EvalConfig) -> list[Scored]:
    invoices: dict[str, list[Event]] = {}
    for e in group:
        if e.user is None or (config.cutoff_ms is not None and e.ts < config.cutoff_ms):
            continue
        invoices.setdefault(e.session, []).append(e)
    out: list[Scored] = []
    for lines in invoices.values():
        user = lines[0].user
        assert user is not None
        targets = (INVOICE, RETURNING) if user in history.context_items else (INVOICE,)
        relevant = frozenset(e.item for e in lines)
        out.append(Scored(lines[0].event_id, user, relevant, frozenset(), targets, user))
    return out


def build_page(strategy: Strategy, history: History, position: Scored, k: int) -> tuple[int, ...]:
    want = k + len(position.exclude)
    page: list[int] = []
    taken = set(position.exclude)
    proposed = strategy.page_candidates(position.context, want, position.exclude)
    for item in itertools.chain(proposed, history.popular(want + k)):
        if item not in taken:
            taken.add(item)
            page.append(item)
            if len(page) == k:
                break
    return tuple(page)


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
    """Score every position (of ``targets``, default all) with the traditional strategies and ``extra``."""
    events = log.events
    clickstream = fmt is not SourceFormat.ONLINE_RETAIL
    history = History(
        n_items=len(log.items),
        t0=events[0].ts if events else 0,
        pop_half_life_s=config.pop_half_life_s,
        context_half_life_s=config.context_half_life_s,
        context_by_user=not clickstream,
    )
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
                page = build_page(strategy, history, position, config.k)
                hit, ndcg = dcg_hit(page, position.relevant, config.k)
                categories = {history.item_category.get(i, NO_CATEGORY) for i in page}
                diversity = len(categories) / config.k
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
            history.observe(e)
        if progress is not None:
            progress(len(group))
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
        "sessions": len({e.session for e in events}),
        "users": len({e.user for e in events if e.user is not None}),
        "items": len(items),
        "categories": len({e.category for e in events if e.category != NO_CATEGORY}),
        "first event": iso_time(events[0].ts) if events else "-",
        "last event": iso_time(events[-1].ts) if events else "-",
    }
    if config.cutoff_ms is not None:
        stats["scored from"] = iso_time(config.cutoff_ms)
    if config.until_ms is not None:
        stats["scored until (excluded)"] = iso_time(config.until_ms)
    for target in order:
        stats[f"scored: {target}"] = counts[target]
    stats.update({f"skipped rows: {reason}": n for reason, n in source.skipped.items()})
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
