"""Regeneration requests: what the session worker asks the generator for, keyed by session.

A request carries everything the generator needs (it never reads the session table), and a
version that only increases per session, so a consumer that sees a request twice, or an older one
after a newer one, can drop it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import orjson

from streams.ranker import RankerCandidates


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
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> RegenRequest:
        data = orjson.loads(raw)
        ctx = data.pop("context")
        ctx["recent"] = [RecentItem(**item) for item in ctx["recent"]]
        ranker = RankerCandidates.from_dict(data.pop("ranker", None) or {})
        return cls(context=SessionContext(**ctx), ranker=ranker, **data)
