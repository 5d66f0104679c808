"""Training examples from the event logs, cut where the worker itself would ask for a new page.

The log is folded through ``SessionTracker`` (the worker's own code path, see streams/worker/fold.py),
and every regeneration request becomes four contexts, one per placement, each giving a theme
example and a keyword example labelled by the teacher. The held-out split is by time: requests at or
after the time that leaves the latest ``test_fraction`` of events are test, so nothing learned comes from the future.

REES46 has no searches and no merchandising rules, so a fixed, seeded share of requests gets a
query (the latest item's brand and category, as a shopper would type it) or a rule set, so the
student learns to read those fields too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
from tqdm import tqdm

from models.candidates import CandidateIndex, placement_candidates, session_item_vectors
from models.context import (
    PLACEMENTS,
    ContextFacts,
    MerchRules,
    context_facts,
    format_keywords,
    keywords_input,
    render,
    theme_input,
)
from models.embedder import Embed
from models.teacher import Teacher, TeacherInput
from models.themes import ThemeReader, seen_brands
from streams.catalog.artifacts import Catalog
from streams.contracts.errors import InvalidEvent, VitrineError
from streams.contracts.events import ClickEvent, decode_event
from streams.contracts.regen import RegenRequest
from streams.contracts.storefront import Scope
from streams.datasets.readers import read_source
from streams.generator import coherence
from streams.runtime.settings import Settings
from streams.worker.sessions import SessionTracker
from streams.worker.state import SessionState

TRAIN_FILE, TEST_FILE, META_FILE = "train.jsonl", "test.jsonl", "meta.json"
QUERY_SHARE = 0.10
RULES_SHARE = 0.15
NEXT_PRODUCTS = 3  # outcomes per training request: the products a shopper touched next, as far as they go
CAMPAIGNS = ("summer sale", "black friday", "back to school", "new arrivals", "weekend offers", "clearance")


class DatasetError(VitrineError):
    """The event log or catalog cannot give a usable training set."""


@dataclass(frozen=True, slots=True)
class Example:
    task: str  # "theme" | "keywords"
    input: str
    target: str
    ts: int
    session_id: str
    placement: str
    split: str  # "train" | "test"
    candidates: list[str]

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Example:
        return cls(**orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class Cut:
    """A regeneration request with the time split it belongs to, and (training cuts) what the session touched next."""

    request: RegenRequest
    split: str
    next_products: tuple[str, ...] = ()


def load_events(path: Path, limit: int | None = None) -> list[ClickEvent]:
    log = read_source(path, limit=limit)
    events: list[ClickEvent] = []
    for rec in log.records:
        try:
            events.append(decode_event(rec.value, max_bytes=1 << 16))
        except InvalidEvent:
            continue
    if not events:
        raise DatasetError(f"{path}: no valid events")
    return events


def split_time(events: Sequence[ClickEvent], test_fraction: float) -> int:
    """First test timestamp: the latest ``test_fraction`` of the events are held out.

    A quantile of events, not of the clock: the REES46 extract is mostly its last 40 minutes, so the
    last fifth of its time span would hold nine tenths of the data.
    """
    stamps = sorted(e.ts for e in events)
    return stamps[min(len(stamps) - 1, int(len(stamps) * (1.0 - test_fraction)))]


def with_outcomes(cuts: Sequence[Cut], events: Sequence[ClickEvent], before: int, n: int = NEXT_PRODUCTS) -> list[Cut]:
    """Training cuts with the first ``n`` distinct new products their session touched after the request and before
    ``before`` (the test split: no outcome ever comes from the held-out time). Test cuts are left as they are."""
    by_session: dict[str, list[tuple[int, str]]] = {}
    for e in events:
        if e.product_id is not None and e.ts < before:
            by_session.setdefault(e.session_id, []).append((e.ts, e.product_id))
    out: list[Cut] = []
    for cut in cuts:
        if cut.split != "train":
            out.append(cut)
            continue
        request = cut.request
        known = {r.product_id for r in request.context.recent}  # novel products: what the page has to find
        seen: dict[str, None] = {}
        for ts, product in by_session.get(request.session_id, ()):
            if ts > request.event_ts and product not in known:
                seen.setdefault(product, None)
                if len(seen) == n:
                    break
        out.append(dataclasses.replace(cut, next_products=tuple(seen)))
    return out


def outcome_keywords(
    candidates: Sequence[str], next_products: Sequence[str], catalog: Catalog, scope: Scope | None = None
) -> list[str]:
    """For each product the session touched next, the candidate keyword nearest to it: retrieval ranks products by
    the cosine between keyword and product vectors, so that keyword is the one that would have brought it up.

    ``scope``: what the placement's theme promises. The page holds a placement to it, so a next product outside it
    could never be shown there, and a keyword chasing one only leaves the theme unfillable."""
    if scope is not None:
        next_products = [p for p in next_products if coherence.admits(scope, catalog.product(p))]
    rows = [r for r in (catalog.keyword_index(k) for k in candidates) if r is not None]
    products = [r for r in (catalog.product_index(p) for p in next_products) if r is not None]
    if not rows or not products:
        return []
    scores = catalog.product_vectors[products] @ catalog.keyword_vectors[rows].T
    return list(dict.fromkeys(catalog.keywords[rows[j]].keyword for j in scores.argmax(axis=1)))


def regen_cuts(events: Sequence[ClickEvent], settings: Settings, test_at: int) -> Iterator[Cut]:
    """Every request the worker's tracker would publish for this log, with its split."""
    tracker = SessionTracker.from_settings(settings)
    states: dict[str, SessionState] = {}
    for offset, event in enumerate(events):
        outcome = tracker.apply(states.get(event.session_id), event, partition=0, offset=offset)
        states[event.session_id] = outcome.state
        if outcome.request is not None:
            yield Cut(outcome.request, "test" if outcome.request.event_ts >= test_at else "train")


def _rng(request: RegenRequest, seed: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}:{request.session_id}:{request.version}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def augment(
    request: RegenRequest, catalog: Catalog, popular: Sequence[str], seed: int
) -> tuple[RegenRequest, MerchRules | None]:
    """Seeded per request: sometimes a query typed from the latest item, sometimes merchandising rules."""
    rng = _rng(request, seed)
    ctx = request.context
    if ctx.last_query is None and ctx.recent and rng.random() < QUERY_SHARE:
        product = catalog.product(ctx.recent[-1].product_id)
        if product is not None and (product.brand or product.category):
            words = [product.brand or "", (product.category or "").split(".")[-1].replace("_", " ")]
            ctx = dataclasses.replace(ctx, last_query=" ".join(w for w in words if w))
            request = dataclasses.replace(request, context=ctx)
    if rng.random() >= RULES_SHARE:
        return request, None
    session_categories = set(ctx.categories)
    choice = rng.randrange(3)
    if choice == 0:
        options = [c for c in popular[:40] if c not in session_categories]
        return request, MerchRules(boost=(rng.choice(options),)) if options else None
    if choice == 1 and ctx.categories:
        return request, MerchRules(exclude=(ctx.categories[0],))
    return request, MerchRules(campaign=rng.choice(CAMPAIGNS))


def item_vectors(request: RegenRequest, catalog: Catalog) -> npt.NDArray[np.float32]:
    return session_item_vectors([r.product_id for r in request.context.recent], catalog)


def build_examples(
    cuts: Sequence[Cut],
    catalog: Catalog,
    teacher: Teacher,
    embed: Embed,
    *,
    popular: Sequence[str],
    seed: int = 13,
    batch: int = 256,
) -> list[Example]:
    """Four placements per cut, a theme and a keywords example each. The theme is the teacher's; the keywords are
    the teacher's, led by the ``outcome_keywords`` of what the session touched next within the theme's scope when
    the cut has outcomes (the rules cannot know which of the context's keywords lead somewhere; the log does), kept
    to the teacher's count."""
    index = CandidateIndex(catalog.keywords, catalog.keyword_vectors)
    reader = ThemeReader(p.category for p in catalog.products if p.category)
    rows: list[tuple[Cut, RegenRequest, ContextFacts]] = []
    for cut in cuts:
        request, rules = augment(cut.request, catalog, popular, seed)
        for placement in PLACEMENTS:
            rows.append((cut, request, context_facts(request.context, placement, rules, catalog.product)))
    examples: list[Example] = []
    theme_cache: dict[str, npt.NDArray[np.float32]] = {}
    for start in tqdm(range(0, len(rows), batch), desc="teacher", unit="batch", mininterval=5.0):
        chunk = rows[start : start + batch]
        inputs = [TeacherInput(render(facts), facts) for _, _, facts in chunk]
        themes = teacher.themes(inputs)
        todo = [t for t in dict.fromkeys(themes) if t not in theme_cache]  # themes repeat a lot: embed each once
        if todo:
            theme_cache.update(zip(todo, embed(todo), strict=True))
        theme_vectors = [theme_cache[t] for t in themes]
        candidates = [
            placement_candidates(index, facts, item_vectors(request, catalog), theme_vectors[i])
            for i, (_, request, facts) in enumerate(chunk)
        ]
        keywords = teacher.keywords(inputs, themes, candidates)
        for (cut, request, facts), inp, theme, cands, kws in zip(
            chunk, inputs, themes, candidates, keywords, strict=True
        ):
            ts, sid, where = request.event_ts, request.session_id, facts.placement.value
            examples.append(Example("theme", theme_input(inp.context), theme, ts, sid, where, cut.split, []))
            kw_input = keywords_input(inp.context, theme)
            if cut.next_products and kws:
                scope = reader.scope(theme, seen_brands(facts, request.context.brands))
                led = outcome_keywords(cands, cut.next_products, catalog, scope)
                kws = list(dict.fromkeys([*led, *kws]))[: len(kws)]
            examples.append(Example("keywords", kw_input, format_keywords(kws), ts, sid, where, cut.split, cands))
    return examples


def write_examples(examples: Sequence[Example], out_dir: Path, meta: dict[str, object]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
        with (out_dir / name).open("wb") as fh:
            for ex in examples:
                if ex.split == split:
                    fh.write(ex.to_json() + b"\n")
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
