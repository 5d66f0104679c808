"""Coherence a merchandiser can trust: items honour their theme, near-duplicates collapse, no placement is empty,
a per-kind diversity floor, and violations are counted. Small in-memory catalogs, no vector store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from models.context import PlacementKind
from models.themes import ThemeReader
from streams.catalog.products import Product
from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.contracts.storefront import Arm, Placement, Scope, StorefrontUpdate
from streams.generator import coherence
from streams.generator.assembly import PlacementPlan, StorefrontAssembler
from streams.generator.retrieval import Hit
from streams.runtime import metrics
from streams.runtime.settings import Settings
from tests.factories import placement, storefront

PHONE = "electronics.smartphone"
BLENDER = "appliances.kitchen.blender"


def catalog(*products: Product) -> dict[str, Product]:
    return {p.product_id: p for p in products}


def phone(pid: str, brand: str | None, price: float, title: str | None = None) -> Product:
    return Product(pid, title or f"{brand or ''} smartphone {pid}".strip(), PHONE, brand, price)


@dataclass
class FixedRetriever:
    """Returns the same hits for every placement's keywords (what a keyword search found)."""

    hits: list[str]
    out_of_stock: set[str]

    def search(
        self, placements: Sequence[Sequence[str]], *, exclude: set[str] | frozenset[str] = frozenset()
    ) -> list[list[Hit]]:
        found = [Hit(p, 1.0 - i / 100, "kw") for i, p in enumerate(self.hits) if p not in exclude]
        return [list(found) for _ in placements]


def request(ranker: RankerCandidates, recent: Sequence[str] = ("seen",)) -> RegenRequest:
    ctx = SessionContext([RecentItem(p, "view") for p in recent], [PHONE], [], [], None, {"view": 1}, 0.0)
    return RegenRequest(
        session_id="s", user_id=None, version=1, reason="first_signal", event_ts=1, context=ctx, ranker=ranker
    )


def assembler(products: dict[str, Product], hits: list[str], n: int = 3, **kw: object) -> StorefrontAssembler:
    return StorefrontAssembler(
        retriever=FixedRetriever(hits, set()),
        products=products.get,
        items_per_placement=n,
        **kw,  # type: ignore[arg-type]
    )


def hero_plan(theme: str, scope: Scope) -> list[PlacementPlan]:
    return [PlacementPlan(kind=PlacementKind.HERO, theme=theme, keywords=["kw"], scope=scope)]


def hero(update: StorefrontUpdate) -> Placement:
    return next(p for p in update.placements if p.kind == PlacementKind.HERO.value)


def test_the_theme_reader_reads_price_bound_brand_and_the_target_category() -> None:
    reader = ThemeReader([PHONE, BLENDER, "electronics.audio.headphone"])
    assert reader.scope("Deals on smartphones under $256", []) == Scope(categories=[PHONE], max_price=256.0)
    assert reader.scope("Premium Apple smartphones", ["apple", "samsung"]) == Scope(categories=[PHONE], brand="apple")
    # the anchor is named first, the target last
    assert reader.scope("Because you viewed smartphones: headphones", []).categories == ["electronics.audio.headphone"]
    assert reader.scope("Trending now", ["apple"]) == Scope()


def test_a_deals_theme_shows_nothing_above_its_price_bound() -> None:
    """The make-demo page: "Deals on smartphones under $256" showing phones at $370-$1,155."""
    products = catalog(*(phone(f"p{i}", "samsung", price) for i, price in enumerate([370, 1155, 199, 250, 120, 990])))
    page = assembler(products, hits=["p0", "p1", "p2", "p3", "p4", "p5"]).assemble(
        request(RankerCandidates()),
        arm=Arm.TEACHER,
        plans=hero_plan("Deals on smartphones under $256", Scope(categories=[PHONE], max_price=256.0)),
    )
    shown = hero(page)
    assert shown.theme == "Deals on smartphones under $256"
    assert [i.product_id for i in shown.items] == ["p2", "p3", "p4"]
    assert all(products[i.product_id].price <= 256 for i in shown.items)  # type: ignore[operator]


def test_a_brand_theme_shows_only_its_brand_and_category() -> None:
    """ "Premium Apple smartphones" showing unbranded phones, and a blender in a smartphone hero."""
    products = catalog(
        phone("nobrand", None, 154),
        Product("blender", "braun blender", BLENDER, "braun", 60),
        phone("a1", "apple", 900),
        phone("a2", "apple", 1000),
        phone("a3", "apple", 1100),
        phone("s1", "samsung", 800),
    )
    ranker = RankerCandidates(covisited=[("blender", 9.0), ("nobrand", 8.0), ("s1", 7.0)])
    page = assembler(products, hits=["nobrand", "s1", "a1", "a2", "a3"]).assemble(
        request(ranker),
        arm=Arm.TEACHER,
        plans=hero_plan("Premium Apple smartphones", Scope(categories=[PHONE], brand="apple")),
    )
    assert {i.product_id for i in hero(page).items} == {"a1", "a2", "a3"}
    broken = coherence.violations(page, products.get, {})
    assert not {coherence.Rule.BRAND, coherence.Rule.CATEGORY} & set(broken)


def test_near_duplicates_collapse_to_one_across_the_page() -> None:
    """Four items of one title and price side by side: one of them is shown."""
    same = [phone(f"d{i}", "samsung", 199.0, title="samsung galaxy a10") for i in range(4)]
    others = [phone(f"o{i}", "samsung", 100.0 + i) for i in range(12)]
    products = catalog(*same, *others)
    ranker = RankerCandidates(covisited=[(p.product_id, 10.0 - i / 10) for i, p in enumerate(same + others)])
    page = StorefrontAssembler(retriever=None, products=products.get, items_per_placement=3).assemble(
        request(ranker), arm=Arm.CONTROL
    )
    shown = page.product_ids()
    assert sum(p.startswith("d") for p in shown) == 1
    assert coherence.violations(page, products.get, {})[coherence.Rule.DUPLICATE] == 0


def test_a_theme_the_candidates_cannot_honour_falls_back_and_no_placement_is_empty() -> None:
    """No phone under $50 anywhere: the deals theme is not shown; every placement is filled from the ranker lists,
    and each item says which list it came from."""
    products = catalog(*(phone(f"p{i}", "samsung", 300.0 + i) for i in range(20)))
    ranker = RankerCandidates(
        popular=[(f"p{i}", 1.0) for i in range(10)], by_category={PHONE: [(f"p{i}", 1.0) for i in range(10, 20)]}
    )
    page = assembler(products, hits=["p0", "p1", "p2"]).assemble(
        request(ranker), arm=Arm.TEACHER, plans=hero_plan("Deals on smartphones under $50", Scope(max_price=50.0))
    )
    first = hero(page)
    assert first.fallback and first.scope == Scope() and first.theme == "Picked for you"
    assert "theme_unfilled" in first.quality.reasons
    assert all(len(p.items) == 3 for p in page.placements)
    assert {i.source.value for p in page.placements for i in p.items} <= {
        "retrieval",
        "category",
        "popularity",
        "recently_viewed",
    }


@pytest.mark.parametrize(("floor", "brands"), [(1, 1), (2, 2), (3, 3)])
def test_the_diversity_floor_is_a_setting_per_kind(floor: int, brands: int) -> None:
    """A category theme's items share a category; the floor then asks for distinct brands."""
    products = catalog(
        *(phone(f"s{i}", "samsung", 100.0 + i) for i in range(5)),
        phone("a1", "apple", 900),
        phone("x1", "xiaomi", 150),
    )
    hits = ["s0", "s1", "s2", "s3", "s4", "a1", "x1"]
    settings = Settings().replace(diversity_floor={"hero": floor})
    page = assembler(products, hits, diversity_floor=settings.generator.diversity_floor).assemble(
        request(RankerCandidates()), arm=Arm.TEACHER, plans=hero_plan("Popular smartphones", Scope(categories=[PHONE]))
    )
    shown = [products[i.product_id] for i in hero(page).items]
    assert len(shown) == 3 and len({p.brand for p in shown}) == brands
    assert shown[0].product_id == "s0"  # the best candidate stays first


def test_the_diversity_floor_setting_is_validated_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VITRINE_DIVERSITY_FLOOR", '{"deals": 2, "explore": 3}')
    assert Settings().generator.diversity_floor == {"deals": 2, "explore": 3}
    with pytest.raises(ValueError, match="diversity_floor"):
        Settings().replace(diversity_floor={"sidebar": 2})
    with pytest.raises(ValueError, match="diversity_floor"):
        Settings().replace(diversity_floor={"hero": 0})


def test_violations_are_counted_per_rule_on_a_page_and_in_prometheus() -> None:
    products = catalog(
        phone("a", "apple", 900), phone("b", "samsung", 100, title="x"), phone("c", "lg", 100, title="x")
    )
    scope = Scope(categories=[PHONE], brand="apple", max_price=500.0)
    bad = storefront([placement("hero", "abc", scope=scope), placement("explore", ())])
    found = coherence.violations(bad, products.get, {"hero": 2})
    assert found == {
        coherence.Rule.PRICE_BOUND: 1,  # a at 900
        coherence.Rule.BRAND: 2,  # b, c
        coherence.Rule.DUPLICATE: 1,  # c repeats b's title and price
        coherence.Rule.EMPTY_PLACEMENT: 1,
    }  # the floor does not apply where the theme names both category and brand

    def empty_count() -> float:
        sample = metrics.REGISTRY.get_sample_value("vitrine_coherence_violations_total", {"rule": "empty_placement"})
        return sample or 0.0

    before = empty_count()
    # One known product for four placements (a stream's first seconds): the page is published, what broke counted.
    lone = StorefrontAssembler(retriever=None, products=products.get, items_per_placement=3)
    lone.assemble(request(RankerCandidates(popular=[("a", 1.0)])), arm=Arm.CONTROL)
    assert empty_count() == before + 3


def test_products_without_the_counted_fact_do_not_break_the_floor() -> None:
    """Online Retail has no brands: a category theme's brandless items are not one brand repeated."""
    products = catalog(*(Product(f"b{i}", f"bag {i}", "bag", None, 2.0 + i) for i in range(5)))
    page = assembler(products, hits=[f"b{i}" for i in range(5)], diversity_floor={"hero": 3}).assemble(
        request(RankerCandidates()), arm=Arm.TEACHER, plans=hero_plan("Popular bags", Scope(categories=["bag"]))
    )
    assert [i.product_id for i in hero(page).items] == ["b0", "b1", "b2"]
    assert coherence.violations(page, products.get, {"hero": 3})[coherence.Rule.DIVERSITY_FLOOR] == 0
