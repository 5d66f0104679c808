"""What the preview page says changed between two versions of a page, and how it names products."""

from __future__ import annotations

from typing import Any

from streams.api.preview import changes, enrich


def placement(kind: str, theme: str, products: list[str], keywords: list[str] | None = None) -> dict[str, Any]:
    items = [{"product_id": p, "score": 1.0, "source": "retrieval"} for p in products]
    return {"kind": kind, "theme": theme, "keywords": keywords or ["k"], "items": items}


def page(*placements: dict[str, Any]) -> dict[str, Any]:
    return {"placements": list(placements)}


def test_changes_name_each_placement_that_differs() -> None:
    before = page(
        placement("hero", "A", ["1", "2", "3"]), placement("deals", "D", ["7"]), placement("explore", "E", [])
    )
    after = page(
        placement("hero", "B", ["3", "4"], ["new"]),
        placement("deals", "D", ["7"]),
        placement("because_you_viewed", "V", ["9"]),
    )
    assert changes(before, after) == [
        "hero: theme 'A' -> 'B'; keywords new; +1 / -2 items",
        "because_you_viewed: new placement",
        "explore: placement dropped",
    ]
    assert changes(None, after) == ["first version"]
    assert changes(after, after) == ["no visible change"]
    shuffled = page(placement("hero", "B", ["4", "3"], ["new"]), *after["placements"][1:])
    assert changes(after, shuffled) == ["hero: items reordered"]


def test_enrich_falls_back_to_the_product_id_without_a_catalog() -> None:
    shown = enrich(page(placement("hero", "A", ["1"])), None)
    assert shown["placements"][0]["items"][0] == {
        "product_id": "1",
        "score": 1.0,
        "source": "retrieval",
        "title": "1",
        "price": None,
    }
