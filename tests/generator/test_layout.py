"""Adaptive placements: the page's kinds chosen per session (buy-again, continue-shopping, generated themes), the
purchase history the worker keeps for buy-again, and the theme writer writing only what the page shows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

from models.context import PLACEMENTS, PlacementKind
from models.teacher import TeacherInput
from streams.catalog.artifacts import Catalog
from streams.catalog.products import Product
from streams.catalog.vocabulary import Keyword
from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.contracts.storefront import Arm, ItemSource
from streams.generator.assembly import OWN_FALLBACK_THEME, StorefrontAssembler
from streams.generator.layout import OwnShelf, page_layout
from streams.generator.planners import CascadePlanner
from streams.worker.state import TOP_PURCHASED, SessionState
from tests.worker.test_sessions import T0, Feed, ev, tracker


def context(*events: tuple[str, str], purchased: Sequence[str] = ()) -> SessionContext:
    recent = [RecentItem(p, t) for p, t in events]
    return SessionContext(recent, [], [], [], None, {}, 0.0, purchased=list(purchased))


def req(ctx: SessionContext, ranker: RankerCandidates | None = None) -> RegenRequest:
    return RegenRequest("s", "u", 1, "first_signal", 1, ctx, ranker or RankerCandidates())


def test_the_layout_follows_what_the_session_has() -> None:
    themed = tuple(PLACEMENTS)
    assert page_layout(context()) == themed
    browsing = context(("a", "view"), ("b", "view"))
    assert page_layout(browsing) == (OwnShelf.CONTINUE_SHOPPING, *themed[:3])
    buyer = context(("a", "view"), ("b", "purchase"), purchased=["b"])
    assert page_layout(buyer) == (OwnShelf.BUY_AGAIN, OwnShelf.CONTINUE_SHOPPING, *themed[:2])
    # Online Retail: every line a purchase; nothing viewed and not bought, so no continue-shopping shelf.
    customer = context(("a", "purchase"), ("b", "purchase"), purchased=["a", "b"])
    assert page_layout(customer) == (OwnShelf.BUY_AGAIN, *themed[:3])


def test_the_worker_keeps_the_purchase_history_and_the_request_carries_it() -> None:
    f = Feed(tracker(min_events=1))
    f(ev(1, T0, "purchase", product_id="x"))
    f(ev(2, T0 + 1, "view", product_id="y"))
    f(ev(3, T0 + 2, "purchase", product_id="z"))
    f(ev(4, T0 + 3, "purchase", product_id="z"))
    assert max(f.s.purchased, key=f.s.purchased.__getitem__) == "z"  # bought twice
    assert set(f.s.purchased) == {"x", "z"}  # views are not purchases
    sent = next(r for r in reversed(f.requests) if r is not None)
    assert sent.context.purchased[0] in {"x", "z"}
    assert RegenRequest.from_json(sent.to_json()) == sent
    for i in range(TOP_PURCHASED + 5):
        f(ev(10 + i, T0 + 10 + i, "purchase", product_id=f"q{i}"))
    assert len(f.s.purchased) == TOP_PURCHASED
    assert SessionState.from_bytes(f.s.to_bytes()) == f.s


def test_a_state_written_before_purchases_were_kept_still_reads() -> None:
    state = SessionState(user_id="u", recent=[("a", 0)])
    raw = state.to_bytes()
    head, body_and_rest = raw[:3], raw[3:]
    n = int.from_bytes(head[1:3], "little")
    fields = orjson.loads(body_and_rest[:n])[:17]  # the old format stopped at regen_offset
    body = orjson.dumps(fields)
    old = bytes([head[0]]) + len(body).to_bytes(2, "little") + body + body_and_rest[n:]
    assert SessionState.from_bytes(old).purchased == {}


def test_buy_again_shows_purchases_that_every_other_placement_hides() -> None:
    ctx = context(("p1", "purchase"), ("p2", "purchase"), ("v1", "view"), purchased=["p2", "p1"])
    ranker = RankerCandidates(covisited=[(p, 1.0) for p in ["p1", "p2", "v1", "c1", "c2", "c3", "c4"]])
    page = StorefrontAssembler(retriever=None, products=lambda _: None, items_per_placement=2).assemble(
        req(ctx, ranker), arm=Arm.CONTROL
    )
    shelves = {p.kind: p for p in page.placements}
    assert [i.product_id for i in shelves["buy_again"].items] == ["p2", "p1"]
    assert {i.source for i in shelves["buy_again"].items} == {ItemSource.PURCHASE_HISTORY}
    assert [i.product_id for i in shelves["continue_shopping"].items][:1] == ["v1"]
    others = [i.product_id for p in page.placements if p.kind not in ("buy_again",) for i in p.items]
    assert not {"p1", "p2"} & set(others)


def test_continue_shopping_is_most_recent_first_spans_two_placements_and_falls_back_when_hidden() -> None:
    viewed = [(f"v{i}", "view") for i in range(7)]
    ctx = context(*viewed, ("v3", "view"), ("c", "cart"), ("v5", "purchase"))
    ranker = RankerCandidates(popular=[(f"pop{i}", 1.0) for i in range(20)])
    assembler = StorefrontAssembler(retriever=None, products=lambda _: None, items_per_placement=2)
    shelf = assembler.assemble(req(ctx, ranker), arm=Arm.TEACHER).placements[0]
    assert shelf.kind == "continue_shopping" and shelf.theme == "Continue shopping"
    # 2 x 2 items: still in the cart first, then the views, most recent first; the bought "v5" left out
    assert [i.product_id for i in shelf.items] == ["c", "v3", "v6", "v4"]
    # The evaluation's novel-product target hides the session's own products: the shelf says it shows none.
    hidden = assembler.assemble(req(ctx, ranker), arm=Arm.TEACHER, hide=frozenset([*(p for p, _ in viewed), "c"]))
    fallback = hidden.placements[0]
    assert fallback.theme == OWN_FALLBACK_THEME and fallback.fallback
    assert [i.source for i in fallback.items] == [ItemSource.POPULARITY, ItemSource.POPULARITY]


class RecordingWriter:
    """A teacher that records which placements it was asked to write for."""

    def __init__(self) -> None:
        self.placements: list[PlacementKind] = []

    def themes(self, contexts: list[TeacherInput]) -> list[str]:
        self.placements += [c.facts.placement for c in contexts]
        return ["Popular things"] * len(contexts)

    def keywords(self, contexts: list[TeacherInput], themes: list[str], candidates: list[list[str]]) -> list[list[str]]:
        return [c[:3] for c in candidates]


def test_the_theme_writer_writes_only_the_generated_placements_the_page_shows() -> None:
    products = [Product(p, f"thing {p}", "home.thing", None, 1.0) for p in ("a", "b")]
    keywords = [Keyword(f"thing {i}", "phrase", "home.thing", 1) for i in range(4)]
    rng = np.random.default_rng(0)
    catalog = Catalog(
        products,
        rng.standard_normal((2, 8)).astype(np.float32),
        keywords,
        rng.standard_normal((4, 8)).astype(np.float32),
    )
    writer = RecordingWriter()
    planner = CascadePlanner(writer=writer, catalog=catalog, arm=Arm.TEACHER, version=None)
    browsing = context(("a", "view"))
    buyer = context(("a", "view"), ("b", "purchase"), purchased=["b"])
    pages = planner.plan_contexts([context(), browsing, buyer])
    assert [[p.kind for p in page] for page in pages] == [list(PLACEMENTS), list(PLACEMENTS[:3]), list(PLACEMENTS[:2])]
    assert writer.placements == [*PLACEMENTS, *PLACEMENTS[:3], *PLACEMENTS[:2]]
