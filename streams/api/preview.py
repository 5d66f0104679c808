"""What the preview page shows of a storefront: product titles and prices, and what changed since the last version.

Pure functions over the update's JSON (as kept in the API's table), so the page and its tests need no broker.
"""

from __future__ import annotations

from typing import Any

from streams.catalog.artifacts import Catalog

Page = dict[str, Any]


def enrich(page: Page, catalog: Catalog | None) -> Page:
    """The page with each item's title and price from the catalog (the product id when it is not there)."""
    placements = []
    for placement in page.get("placements", []):
        items = []
        for item in placement.get("items", []):
            product = catalog.product(item["product_id"]) if catalog is not None else None
            title = product.title if product is not None else item["product_id"]
            price = product.price if product is not None else None
            items.append({**item, "title": title, "price": price})
        placements.append({**placement, "items": items})
    return {**page, "placements": placements}


def changes(previous: Page | None, current: Page) -> list[str]:
    """One line per placement that differs from the previous version: theme, keywords, items in and out."""
    if previous is None:
        return ["first version"]
    before = {p["kind"]: p for p in previous.get("placements", [])}
    lines = []
    for placement in current.get("placements", []):
        kind = placement["kind"]
        old = before.pop(kind, None)
        if old is None:
            lines.append(f"{kind}: new placement")
            continue
        parts = []
        if old["theme"] != placement["theme"]:
            parts.append(f"theme {old['theme']!r} -> {placement['theme']!r}")
        if old["keywords"] != placement["keywords"]:
            parts.append("keywords " + ", ".join(placement["keywords"]))
        old_items = [i["product_id"] for i in old["items"]]
        new_items = [i["product_id"] for i in placement["items"]]
        added = len(set(new_items) - set(old_items))
        removed = len(set(old_items) - set(new_items))
        if added or removed:
            parts.append(f"+{added} / -{removed} items")
        elif old_items != new_items:
            parts.append("items reordered")
        if parts:
            lines.append(f"{kind}: " + "; ".join(parts))
    lines += [f"{kind}: placement dropped" for kind in before]
    return lines or ["no visible change"]
