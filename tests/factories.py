"""Fixture factories for the page contract: every test builds pages with these, naming only what it tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.contracts.storefront import Arm, Item, ItemSource, Placement, Quality, StorefrontUpdate


def items(products: Sequence[str], source: ItemSource = ItemSource.RETRIEVAL, *, ranked: bool = False) -> list[Item]:
    """Score 1.0 each, or ``1 / rank`` with ``ranked``."""
    return [Item(product_id=p, score=1.0 / (i + 1) if ranked else 1.0, source=source) for i, p in enumerate(products)]


def placement(kind: str = "hero", products: Sequence[str] = ("p",), **fields: Any) -> Placement:
    """A healthy generated placement of ``products``; ``fields`` override any other field."""
    values: dict[str, Any] = {
        "theme": "t",
        "keywords": ["k"],
        "items": items(products),
        "quality": Quality(ok=True),
        "fallback": False,
    }
    return Placement(kind=kind, **{**values, **fields})


def storefront(placements: Sequence[Placement], **fields: Any) -> StorefrontUpdate:
    """Version 1 of session ``s`` on the teacher arm, every time 1 ms; ``fields`` override any field."""
    values: dict[str, Any] = {
        "session_id": "s",
        "user_id": None,
        "version": 1,
        "event_ts": 1,
        "requested_at_ms": 1,
        "published_at_ms": 1,
        "trigger": "first_signal",
        "arm": Arm.TEACHER,
        "degraded": False,
    }
    return StorefrontUpdate(placements=list(placements), **{**values, **fields})
