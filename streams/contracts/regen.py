"""Regeneration requests: what the session worker asks the generator for, keyed by session.

A request carries everything the generator needs (it never reads the session table), and a
version that only increases per session, so a consumer that sees a request twice, or an older one
after a newer one, can drop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True, slots=True)
class RankerCandidates:
    """What the traditional rankers propose for one session, carried inside its regeneration request.

    The generator never reads the worker's tables: a request holds everything needed to fill or fuse a page.
    Scores are decayed popularity (``popular``, ``by_category``) and weighted co-visit counts (``covisited``).
    """

    popular: list[tuple[str, float]] = field(default_factory=list)
    by_category: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    covisited: list[tuple[str, float]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RankerCandidates:
        def pairs(raw: object) -> list[tuple[str, float]]:
            return [(str(p), float(s)) for p, s in raw]  # type: ignore[attr-defined]

        by_category = data.get("by_category") or {}
        return cls(
            popular=pairs(data.get("popular") or []),
            by_category={c: pairs(v) for c, v in by_category.items()},  # type: ignore[attr-defined]
            covisited=pairs(data.get("covisited") or []),
        )


@dataclass(frozen=True, slots=True)
class RecentItem:
    product_id: str
    event_type: str


@dataclass(frozen=True, slots=True)
class SessionContext:
    recent: list[RecentItem]
    categories: list[str]
    brands: list[str]
    price_bands: list[str]
    last_query: str | None
    counts: dict[str, int]
    drift: float
    # Products the context bought, by decayed purchase count (most first): the buy-again shelf. A request written
    # before this field existed has none.
    purchased: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegenRequest:
    session_id: str
    user_id: str | None
    version: int
    reason: str
    event_ts: int
    context: SessionContext
    ranker: RankerCandidates = field(default_factory=RankerCandidates)
    requested_at_ms: int = field(default=0, compare=False)

    def to_json(self) -> bytes:
        # orjson encodes dataclasses itself, the same bytes as ``asdict`` first at a tenth of the cost (asdict
        # deep-copies every list: 13% of the session worker's time in a py-spy profile).
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> RegenRequest:
        data = orjson.loads(raw)
        ctx = data.pop("context")
        ctx["recent"] = [RecentItem(**item) for item in ctx["recent"]]
        ranker = RankerCandidates.from_dict(data.pop("ranker", None) or {})
        return cls(context=SessionContext(**ctx), ranker=ranker, **data)
