"""Which placements a page has, chosen per session from what the request carries.

The kinds (documented in the README, "Page layout"):

- ``buy_again``: the context's purchase history (``SessionContext.purchased``, by decayed purchase count), when it
  has one; the customer's own re-buys win Online Retail's next invoice (re-buy 0.684 hit@12, the teacher cascade
  0.461, docs/eval/online-retail.md).
- ``continue_shopping``: the session's recently viewed or carted products it has not bought (nor taken out of
  its cart), most recent first, when it has some; a REES46 cart follows a view of the same product and a purchase
  a cart (recently viewed 0.997 hit@12 on next cart/purchase, the cascade 0.342, docs/eval/rees46.md).
- the generated placements ``hero``, ``because_you_viewed``, ``explore``, ``deals`` (themes and keywords written
  per placement), in that order of priority, taking the slots left.

Rule: a page has ``PAGE_PLACEMENTS`` placements; the shopper's own shelves come first when the request has their
products, and the generated ones fill the rest, so the writer writes only the themed placements that are shown.
An own shelf may show up to ``OWN_SPAN`` placements' worth of products (a carousel), the share of the page the
re-buy placement row measured (re-buy on the first 75% of the page: 0.674 against the teacher cascade's 0.461
on Online Retail); short of one placement's worth it is topped up from the ranker lists.

Measured with the rule, the served (teacher, weighted-RRF) page against the best baseline, paired, 95% intervals
(docs/eval/rees46.md, online-retail.md as they stood before the learned ranker, every position scored): REES46
next cart/purchase 0.995 against recently viewed 0.997, -0.003
[-0.016, 0.007] (the page without own shelves: 0.342); next viewed item 0.473, +0.014 [0.009, 0.018] over
recently viewed; next novel product 0.158, +0.002 [-0.002, 0.006] over session-kNN (own shelves hidden there, as
the target excludes the session's products); Online Retail next invoice 0.658 (was 0.461), still below re-buy
0.684, -0.027 [-0.034, -0.021].
"""

from __future__ import annotations

from enum import StrEnum

from models.context import PLACEMENTS, PlacementKind
from streams.contracts.regen import SessionContext

PAGE_PLACEMENTS = 4
BOUGHT_EVENTS = frozenset({"cart", "purchase"})
CONTINUE_EVENTS = frozenset({"view", "cart"})


class OwnShelf(StrEnum):
    """Placements of the shopper's own products: no theme to write, no retrieval."""

    BUY_AGAIN = "buy_again"
    CONTINUE_SHOPPING = "continue_shopping"


Shelf = PlacementKind | OwnShelf
OWN_THEMES: dict[OwnShelf, str] = {OwnShelf.BUY_AGAIN: "Buy again", OwnShelf.CONTINUE_SHOPPING: "Continue shopping"}
OWN_SPAN: dict[OwnShelf, int] = {OwnShelf.BUY_AGAIN: 3, OwnShelf.CONTINUE_SHOPPING: 2}


def bought(ctx: SessionContext) -> set[str]:
    """Products the session carted or bought: kept off every placement but buy-again."""
    return {item.product_id for item in ctx.recent if item.event_type in BOUGHT_EVENTS}


def own_products(shelf: OwnShelf, ctx: SessionContext) -> list[str]:
    """An own shelf's products, best first: purchases by decayed count; products whose latest event is a view or
    a cart, most recent first, never one the session bought."""
    if shelf is OwnShelf.BUY_AGAIN:
        return list(ctx.purchased)
    latest: dict[str, str] = {}
    for item in reversed(ctx.recent):
        latest.setdefault(item.product_id, item.event_type)
    purchased = {item.product_id for item in ctx.recent if item.event_type == "purchase"}
    return [p for p, event in latest.items() if event in CONTINUE_EVENTS and p not in purchased]


def page_layout(ctx: SessionContext) -> tuple[Shelf, ...]:
    """The page's placements in page order: own shelves with products, then the generated ones."""
    own: list[Shelf] = [shelf for shelf in OwnShelf if own_products(shelf, ctx)]
    return (*own, *PLACEMENTS[: PAGE_PLACEMENTS - len(own)])


def written(layout: tuple[Shelf, ...]) -> tuple[PlacementKind, ...]:
    """The placements a theme writer writes for."""
    return tuple(kind for kind in layout if isinstance(kind, PlacementKind))
