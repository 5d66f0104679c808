"""Learned fusion: a LambdaMART model (LightGBM, ``objective="lambdarank"``) orders a placement's candidates.

The one definition of the feature vector, imported by serving (``streams.generator.assembly``), training
(``streams.evaluation.ranker_training``) and the evaluation (which assembles pages with the generator's own
assembler): a drift between them would silently ruin the model or the numbers.

A row is one (placement, candidate product). Candidates come from every channel the request carries: keyword
retrieval (per placement), the session-kNN list (``covisited``), the popular lists of the session's categories,
global popularity, the context's purchase history (buy-again) and its recent products. Each channel contributes its
rank and score (``MISSING_RANK`` and 0 when it does not propose the product); the rest describes the product against
the session: category, brand and price-band affinity (ranks in the context's lists), price against the session's
top band, and how recently and how often the session touched it. Everything is read from the request and the
catalog, both built from the past only, so a feature can never see the event it is trained to predict.

Without a model file, or with one that does not load, the page is fused by weighted reciprocal rank
(``streams.generator.fusion``): ``load_ranker`` reports the problem and returns None, the worker keeps serving.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models.context import PlacementKind, ProductLookup, price_band
from streams.contracts.errors import VitrineError
from streams.contracts.regen import RegenRequest
from streams.contracts.storefront import ItemSource
from streams.generator.layout import OwnShelf, Shelf

if TYPE_CHECKING:
    import lightgbm

log = logging.getLogger(__name__)

MODEL_FILE = "ranker.txt"
CARD_FILE = "ranker_card.json"
MISSING_RANK = 100.0  # beyond every list a request carries (24 per list): "this channel did not propose it"
SHELF_INDEX: dict[Shelf, int] = {
    PlacementKind.HERO: 0,
    PlacementKind.BECAUSE_YOU_VIEWED: 1,
    PlacementKind.EXPLORE: 2,
    PlacementKind.DEALS: 3,
    OwnShelf.BUY_AGAIN: 4,
    OwnShelf.CONTINUE_SHOPPING: 5,
}
FEATURES: tuple[str, ...] = (
    "shelf",  # SHELF_INDEX (categorical)
    "retrieval_rank",
    "retrieval_score",  # cosine of the placement's best keyword
    "covis_rank",
    "covis_score",  # session-kNN score over the list's top score
    "category_rank",
    "category_score",  # decayed popularity in its category over that list's top
    "category_list",  # which of the request's category lists (0: the latest product's category)
    "popular_rank",
    "popular_score",  # decayed popularity over the top product's
    "purchased_rank",  # position in the context's purchase history (buy-again)
    "recent_rank",  # position among the context's distinct recent products, most recent 0 (recency)
    "recent_count",  # the context's recent events on it
    "channels",  # how many channels propose it
    "category_affinity",  # rank of its category among the session's top categories
    "brand_affinity",  # rank of its brand among the session's top brands
    "band_affinity",  # rank of its price band among the session's top bands
    "price_ratio",  # log2 of its price over the middle of the session's top price band
)
CATEGORICAL = ("shelf",)
SHELVES: dict[str, Shelf] = {str(shelf): shelf for shelf in SHELF_INDEX}
_SHELF, _RETRIEVAL_RANK, _RETRIEVAL_SCORE, _CHANNELS = (
    FEATURES.index(name) for name in ("shelf", "retrieval_rank", "retrieval_score", "channels")
)


class RankerError(VitrineError):
    """A ranker model that cannot serve: missing, unreadable, or built for other features."""


Ranked = tuple[int, float]  # (rank in a channel, score)


def _ranked(pairs: Sequence[tuple[str, float]]) -> dict[str, Ranked]:
    top = max((s for _, s in pairs), default=0.0)
    out: dict[str, Ranked] = {}
    for rank, (product, score) in enumerate(pairs):
        out.setdefault(product, (rank, score / top if top > 0 else 0.0))
    return out


@dataclass(frozen=True, slots=True)
class PageSignals:
    """What a request says about every candidate of its page, indexed once per page (channels, affinities)."""

    covis: dict[str, Ranked]
    category: dict[str, tuple[int, float, int]]  # product -> (rank, score, which list)
    popular: dict[str, Ranked]
    purchased: dict[str, int]
    recent: dict[str, tuple[int, int]]  # product -> (rank, events)
    categories: dict[str, int]
    brands: dict[str, int]
    bands: dict[str, int]
    price_mid: float | None  # the middle of the session's top price band
    # product -> its row before the placement's own columns (shelf, retrieval): a page's placements share most
    # candidates, so each is described once per page (the bar: page assembly p99 at most 5 ms)
    rows: dict[str, tuple[float, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, request: RegenRequest) -> PageSignals:
        ctx, ranker = request.context, request.ranker
        category: dict[str, tuple[int, float, int]] = {}
        for index, pairs in enumerate(ranker.by_category.values()):
            for product, (rank, score) in _ranked(pairs).items():
                category.setdefault(product, (rank, score, index))
        recent: dict[str, tuple[int, int]] = {}
        for item in reversed(ctx.recent):
            rank, count = recent.get(item.product_id, (len(recent), 0))
            recent[item.product_id] = (rank, count + 1)
        price_mid = None
        if ctx.price_bands:
            low, _, high = ctx.price_bands[0].partition("-")
            try:
                price_mid = math.sqrt(max(float(low), 0.5) * float(high))
            except ValueError:
                price_mid = None
        return cls(
            covis=_ranked(ranker.covisited),
            category=category,
            popular=_ranked(ranker.popular),
            purchased={p: rank for rank, p in reversed(list(enumerate(ctx.purchased)))},
            recent=recent,
            categories={c: i for i, c in enumerate(ctx.categories)},
            brands={b: i for i, b in enumerate(ctx.brands)},
            bands={b: i for i, b in enumerate(ctx.price_bands)},
            price_mid=price_mid,
        )


@dataclass(frozen=True, slots=True)
class Candidates:
    """A placement's candidates in the order they were proposed, with its retrieval hits (product -> cosine)."""

    shelf: Shelf
    products: list[str]
    retrieval: Mapping[str, float] = field(default_factory=dict)


def feature_rows(signals: PageSignals, candidates: Candidates, products: ProductLookup) -> np.ndarray:
    """One row of ``FEATURES`` per candidate (float32: what LightGBM bins)."""
    cached = signals.rows
    listed = []
    for product in candidates.products:
        row = cached.get(product)
        if row is None:
            row = cached[product] = _product_row(signals, product, products)
        listed.append(row)
    rows = np.array(listed, dtype=np.float32).reshape(len(listed), len(FEATURES))
    rows[:, _SHELF] = SHELF_INDEX[candidates.shelf]
    if candidates.retrieval:
        index = {product: i for i, product in enumerate(candidates.products)}
        for rank, (product, score) in enumerate(candidates.retrieval.items()):
            at = index.get(product)
            if at is not None:
                rows[at, _RETRIEVAL_RANK] = rank
                rows[at, _RETRIEVAL_SCORE] = score
                rows[at, _CHANNELS] += 1
    return rows


def _product_row(signals: PageSignals, product: str, products: ProductLookup) -> tuple[float, ...]:
    """A candidate's features on this page but the placement's own (shelf, retrieval: left as not retrieved)."""
    covis = signals.covis.get(product)
    category = signals.category.get(product)
    popular = signals.popular.get(product)
    purchased = signals.purchased.get(product)
    recent = signals.recent.get(product)
    facts = products(product)
    cat = facts.category if facts is not None else None
    brand = facts.brand if facts is not None else None
    price = facts.price if facts is not None else None
    channels = (covis is not None) + (category is not None) + (popular is not None)
    channels += (purchased is not None) + (recent is not None)
    return (
        0.0,
        MISSING_RANK,
        0.0,
        covis[0] if covis else MISSING_RANK,
        covis[1] if covis else 0.0,
        category[0] if category else MISSING_RANK,
        category[1] if category else 0.0,
        category[2] if category else MISSING_RANK,
        popular[0] if popular else MISSING_RANK,
        popular[1] if popular else 0.0,
        purchased if purchased is not None else MISSING_RANK,
        recent[0] if recent else MISSING_RANK,
        recent[1] if recent else 0.0,
        channels,
        signals.categories.get(cat, MISSING_RANK) if cat is not None else MISSING_RANK,
        signals.brands.get(brand, MISSING_RANK) if brand is not None else MISSING_RANK,
        signals.bands.get(price_band(price), MISSING_RANK) if price is not None else MISSING_RANK,
        math.log2(max(price, 0.01) / signals.price_mid) if price is not None and signals.price_mid else 0.0,
    )


def best_source(signals: PageSignals, retrieval_ranks: Mapping[str, int], product: str) -> ItemSource:
    """The channel that ranks a product highest: what the published item names as its source."""
    ranks: list[tuple[int, ItemSource]] = []
    if product in retrieval_ranks:
        ranks.append((retrieval_ranks[product], ItemSource.RETRIEVAL))
    if product in signals.covis:
        ranks.append((signals.covis[product][0], ItemSource.COVISITATION))
    if product in signals.category:
        ranks.append((signals.category[product][0], ItemSource.CATEGORY))
    if product in signals.popular:
        ranks.append((signals.popular[product][0], ItemSource.POPULARITY))
    return min(ranks, key=lambda r: r[0])[1] if ranks else ItemSource.POPULARITY


class Scorer(Protocol):
    """What the assembler asks of a learned ranker: which shelves it orders, and scores for their candidates."""

    @property
    def shelves(self) -> frozenset[Shelf]: ...

    def scores(self, candidates: Candidates, rows: np.ndarray) -> np.ndarray: ...


class LearnedRanker:
    """A LightGBM ranking model, scored in process on one thread (a placement's few dozen rows).

    It orders only the shelves it was trained on (its card's ``shelves``): a shelf without a positive example in
    the training data (the session's own products on the next-novel-product target) keeps its served order."""

    def __init__(self, booster: lightgbm.Booster, *, version: str, shelves: frozenset[Shelf]) -> None:
        self._booster = booster
        self.version = version
        self._shelves = shelves

    @property
    def shelves(self) -> frozenset[Shelf]:
        return self._shelves

    @classmethod
    def load(cls, path: Path) -> LearnedRanker:
        """``path``: a model directory (``ranker.txt`` and its card) or the model file itself."""
        import lightgbm  # imported when a model is configured: fallback pages never need it

        model = path / MODEL_FILE if path.is_dir() else path
        if not model.is_file():
            raise RankerError(f"no ranker model at {model}")
        try:
            booster = lightgbm.Booster(model_file=str(model))
        except lightgbm.basic.LightGBMError as exc:
            raise RankerError(f"unreadable ranker model {model}: {exc}") from None
        names = tuple(booster.feature_name())
        if names != FEATURES:
            raise RankerError(f"ranker model {model} was trained on other features ({len(names)}: {names[:3]}...)")
        card = model.with_name(CARD_FILE)
        try:
            meta = json.loads(card.read_text())
            shelves = frozenset(SHELVES[name] for name in meta["shelves"])
            version = str(meta["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RankerError(f"unreadable ranker card {card}: {type(exc).__name__}: {exc}") from None
        return cls(booster, version=version, shelves=shelves)

    def scores(self, candidates: Candidates, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0)
        return np.asarray(self._booster.predict(rows, num_threads=1))


def load_ranker(path: Path | None, problems: list[str]) -> LearnedRanker | None:
    """The configured model, or None (weighted reciprocal-rank fusion) with the reason added to ``problems``."""
    if path is None:
        return None
    try:
        ranker = LearnedRanker.load(path)
    except RankerError as exc:
        problems.append(f"ranker: {exc}; weighted reciprocal-rank fusion instead")
        log.warning(problems[-1])
        return None
    log.info("learned ranker loaded", extra={"path": str(path), "version": ranker.version})
    return ranker
