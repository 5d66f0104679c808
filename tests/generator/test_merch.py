"""Merchandising rules on the page: an excluded category or brand is on no placement, a boosted one goes first, the
writer reads the rules in force (validity window, tombstones), and a page breaking an exclude is counted.
Small in-memory catalog, no vector store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.context import MerchRules, PlacementKind
from streams.catalog.products import Product
from streams.contracts.merch_rule import MerchRule
from streams.contracts.regen import RankerCandidates, RecentItem, RegenRequest, SessionContext
from streams.contracts.storefront import Arm, StorefrontUpdate
from streams.generator import coherence
from streams.generator.app import apply_merch_rule
from streams.generator.assembly import PlacementPlan, StorefrontAssembler
from streams.generator.merch import ActiveRules, MerchBook
from streams.generator.pipeline import PagePlan, StorefrontGenerator
from streams.runtime import metrics
from streams.runtime.dlq import DeadLetters, Rejected
from tests.factories import placement, storefront
from tests.generator.test_coherence import FixedRetriever

PHONE = "electronics.smartphone"
AUDIO = "electronics.audio.headphone"
KITCHEN = "appliances.kitchen.blender"
THEMED = {k.value for k in PlacementKind}

PRODUCTS = {
    p.product_id: p
    for p in (
        *(Product(f"p{i}", f"phone {i}", PHONE, "acme" if i % 2 else "other", 100.0 + i) for i in range(10)),
        *(Product(f"a{i}", f"headphone {i}", AUDIO, "Sony", 50.0 + i) for i in range(10)),
        *(Product(f"k{i}", f"blender {i}", KITCHEN, "bosch", 30.0 + i) for i in range(30)),
    )
}


def request(session: str = "s") -> RegenRequest:
    """A phone shopper: phones lead every ranker list, kitchen products trail."""
    phones = [(f"p{i}", 10.0 - i) for i in range(10)]
    audio = [(f"a{i}", 5.0 - i / 10) for i in range(10)]
    kitchen = [(f"k{i}", 1.0 - i / 40) for i in range(30)]
    ranker = RankerCandidates(
        popular=phones + audio + kitchen,
        by_category={PHONE: phones, AUDIO: audio, KITCHEN: kitchen},
        covisited=phones[:5] + audio[:3],
    )
    ctx = SessionContext([RecentItem("p0", "view")], [PHONE], ["acme"], [], None, {"view": 1}, 0.0)
    return RegenRequest(
        session_id=session, user_id=None, version=1, reason="first_signal", event_ts=1, context=ctx, ranker=ranker
    )


def assembler() -> StorefrontAssembler:
    """Retrieval finds phones and headphones for every placement's keywords."""
    hits = [f"p{i}" for i in range(10)] + [f"a{i}" for i in range(10)]
    return StorefrontAssembler(retriever=FixedRetriever(hits, set()), products=PRODUCTS.get, items_per_placement=4)


def plans() -> list[PlacementPlan]:
    return [PlacementPlan(kind=k, theme=f"theme {k.value}", keywords=["kw"]) for k in PlacementKind]


def shown(update: StorefrontUpdate) -> list[Product]:
    return [PRODUCTS[p] for p in update.product_ids()]


def test_an_excluded_brand_or_category_is_on_no_placement_of_either_arm() -> None:
    for arm, planned in ((Arm.CONTROL, None), (Arm.TEACHER, plans())):
        free = assembler().assemble(request(), arm=arm, plans=planned)
        assert any(p.brand == "acme" for p in shown(free))  # the control: acme is what this shopper gets
        assert any(p.category == AUDIO for p in shown(free))

        no_acme = assembler().assemble(request(), arm=arm, plans=planned, rules=ActiveRules(exclude_brands={"acme"}))
        assert shown(no_acme) and not any(p.brand == "acme" for p in shown(no_acme))

        rules = ActiveRules(exclude_categories=("electronics",))  # a prefix: phones and headphones
        no_electronics = assembler().assemble(request(), arm=arm, plans=planned, rules=rules)
        assert {p.category for p in shown(no_electronics)} == {KITCHEN}
        assert all(len(p.items) == 4 for p in no_electronics.placements if p.kind in THEMED)


def hero(update: StorefrontUpdate) -> list[Product]:
    return [PRODUCTS[i.product_id] for p in update.placements if p.kind == PlacementKind.HERO.value for i in p.items]


def test_a_boosted_category_goes_first_on_every_themed_placement() -> None:
    free = assembler().assemble(request(), arm=Arm.CONTROL)
    assert not any(p.category == KITCHEN for p in hero(free))  # the control: a phone shopper's hero

    rules = ActiveRules(boost_categories=("appliances.kitchen",))
    boosted = assembler().assemble(request(), arm=Arm.CONTROL, rules=rules)
    assert all(p.category == KITCHEN for p in hero(boosted))
    themed = [p for p in boosted.placements if p.kind in THEMED]
    assert all(PRODUCTS[p.items[0].product_id].category == KITCHEN for p in themed)


def test_a_boosted_brand_matches_whatever_its_case() -> None:
    free = assembler().assemble(request(), arm=Arm.TEACHER, plans=plans())
    assert hero(free)[0].brand != "Sony"
    rules = ActiveRules.of([MerchRule(rule_id="b", kind="boost", brand="SONY")])
    boosted = assembler().assemble(request(), arm=Arm.TEACHER, plans=plans(), rules=rules)
    assert all(p.brand == "Sony" for p in hero(boosted))


@dataclass
class RecordingPlanner:
    """Plans nothing (every placement falls back) and keeps the rules each batch was planned under."""

    arm: Arm = Arm.TEACHER
    version: str | None = "recording"
    seen: list[MerchRules | None] = field(default_factory=list)

    def plan(self, requests: Sequence[RegenRequest], rules: MerchRules | None = None) -> list[PagePlan]:
        self.seen.append(rules)
        return [PagePlan([]) for _ in requests]


def test_the_writer_reads_the_rules_in_force_and_pages_follow_set_and_deleted_rules() -> None:
    now = int(time.time() * 1000)
    book = MerchBook()
    book.apply("phones", MerchRule(rule_id="phones", kind="exclude", category=PHONE))
    book.apply("sony", MerchRule(rule_id="sony", kind="exclude", brand="sony", valid_from_ms=now - 1000))
    book.apply("later", MerchRule(rule_id="later", kind="boost", category="appliances", valid_from_ms=now + 3600_000))
    book.apply("over", MerchRule(rule_id="over", kind="boost", category="appliances", valid_until_ms=now - 1000))
    book.apply("spring", MerchRule(rule_id="spring", kind="campaign", campaign="Spring sale"))
    planner = RecordingPlanner()
    generator = StorefrontGenerator(assembler=assembler(), planner=planner, control_share=0.0, merch=book)

    (page,) = generator.generate([request()])
    # Brand rules are enforced, not shown: the writer was trained on category rules and campaigns only.
    assert planner.seen == [MerchRules(boost=(), exclude=(PHONE,), campaign="Spring sale")]
    assert {p.category for p in shown(page)} == {KITCHEN}
    assert metrics.MERCH_RULES.labels("held")._value.get() == 5
    assert metrics.MERCH_RULES.labels("active")._value.get() == 3

    book.apply("phones", None)  # a tombstone
    (page,) = generator.generate([request()])
    assert planner.seen[-1] == MerchRules(campaign="Spring sale")
    assert any(p.category == PHONE for p in shown(page))
    assert not any(p.brand == "Sony" for p in shown(page))


def test_an_item_of_an_excluded_brand_or_category_is_a_counted_violation() -> None:
    page = storefront([placement("hero", ["p1", "p2", "a1"]), placement("deals", ["k1"])])
    rules = ActiveRules(exclude_brands={"acme"}, exclude_categories=("electronics.audio",))
    found = coherence.violations(page, PRODUCTS.get, {}, rules)
    assert found[coherence.Rule.EXCLUDED] == 2  # p1 (acme) and a1 (audio); p2 is "other", k1 a blender
    assert coherence.violations(page, PRODUCTS.get, {})[coherence.Rule.EXCLUDED] == 0


@dataclass
class SentProducer:
    sent: list[tuple[str, bytes | None, bytes | None, Any]] = field(default_factory=list)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> None:
        self.sent.append((topic, key, value, headers))


def test_an_invalid_change_is_dead_lettered_and_leaves_the_rule_as_it_was() -> None:
    producer = SentProducer()
    dlq = DeadLetters(producer, "merch-dlq", 1024)
    book = MerchBook()
    rule = MerchRule(rule_id="r", kind="exclude", brand="acme")
    bad = b'{"rule_id": "r", "kind": "exclude", "brand": "acme", "valid_from_ms": 9, "valid_until_ms": 3}'

    async def apply(*values: bytes | None) -> None:
        for offset, value in enumerate(values):
            await apply_merch_rule(book, dlq, Rejected("merch-rules", 0, offset, b"r", value))

    asyncio.run(apply(rule.to_json(), bad))
    assert book.active(int(time.time() * 1000)) == ActiveRules(exclude_brands=frozenset({"acme"}))
    ((topic, key, value, headers),) = producer.sent
    assert (topic, key, value) == ("merch-dlq", b"r", bad)
    assert dict(headers)["vitrine.dlq.reason"] == b"inconsistent"
    assert dict(headers)["vitrine.dlq.detail"].endswith(b"valid_until_ms must be after valid_from_ms")

    asyncio.run(apply(None))  # a tombstone
    assert book.active(int(time.time() * 1000)) == ActiveRules()
