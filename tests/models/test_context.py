"""The context format shared by training and serving: layout, prefixes, keyword round trip, length."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from models.context import (
    KEYWORDS_PREFIX,
    MAX_ITEMS,
    THEME_PREFIX,
    MerchRules,
    PlacementKind,
    context_facts,
    format_keywords,
    in_categories,
    keywords_input,
    parse_keywords,
    render,
    theme_input,
)
from streams.contracts.regen import RecentItem, SessionContext


@dataclass(frozen=True)
class P:
    title: str
    category: str | None
    brand: str | None
    price: float | None


PRODUCTS = {
    "1": P("samsung smartphone", "electronics.smartphone", "samsung", 180.0),
    "2": P("samsung smartphone", "electronics.smartphone", "samsung", 200.0),
    "3": P("sony headphone", "electronics.audio.headphone", "sony", 70.0),
    "4": P("White Hanging Heart T-Light Holder", "holder", None, 2.55),
}


def _ctx(recent: list[tuple[str, str]], query: str | None = None) -> SessionContext:
    return SessionContext(
        recent=[RecentItem(p, t) for p, t in recent],
        categories=[],
        brands=[],
        price_bands=[],
        last_query=query,
        counts={},
        drift=0.0,
    )


def test_context_lists_recent_items_first_and_folds_repeats() -> None:
    ctx = _ctx([("1", "view"), ("2", "view"), ("1", "view"), ("3", "cart"), ("missing", "view")])
    text = render(context_facts(ctx, PlacementKind.HERO, None, PRODUCTS.get))
    assert text == "hero | cart audio.headphone sony 64-128 ; view electronics.smartphone samsung 128-256 x2"


def test_context_renders_query_rules_and_titles_without_breaking_the_layout() -> None:
    rules = MerchRules(boost=("appliances.kitchen.washer",), exclude=("kids",), campaign="Black | Friday")
    ctx = _ctx([("4", "purchase")], query="heart ; holder | red")
    text = render(context_facts(ctx, PlacementKind.DEALS, rules, PRODUCTS.get))
    assert text == (
        "deals | buy white hanging heart t-light 2-4 | q: heart holder red | boost: kitchen.washer "
        "| exclude: kids | campaign: black friday"
    )
    assert text.count("|") == 5


def test_context_keeps_at_most_max_items() -> None:
    products = {str(i): P(f"p{i}", f"dept.cat{i}", f"brand{i}", float(10 * i + 1)) for i in range(20)}
    ctx = _ctx([(str(i), "view") for i in range(20)])
    facts = context_facts(ctx, PlacementKind.EXPLORE, None, products.get)
    assert len(facts.items) == MAX_ITEMS
    assert facts.items[0].brand == "brand19"  # the most recent survives


def test_empty_session_still_gives_a_context() -> None:
    assert (
        render(context_facts(_ctx([]), PlacementKind.BECAUSE_YOU_VIEWED, None, PRODUCTS.get))
        == "because_you_viewed | no items"
    )


def test_task_prefixes() -> None:
    context = "hero | view electronics.smartphone samsung 128-256"
    assert theme_input(context) == THEME_PREFIX + context
    kw = keywords_input(context, "Popular Samsung | smartphones")
    assert kw.startswith(KEYWORDS_PREFIX + "popular samsung smartphones")
    assert kw.endswith(context)
    assert THEME_PREFIX != KEYWORDS_PREFIX


@pytest.mark.parametrize(
    "keywords", [["samsung smartphone"], ["a", "b c", "d e f g"], ["apple headphone", "headphone", "beats"]]
)
def test_keywords_round_trip(keywords: list[str]) -> None:
    assert parse_keywords(format_keywords(keywords)) == keywords


@pytest.mark.parametrize("bad", [["a|b"], [" padded"], ["two  spaces"], [""], ["same", "same"]])
def test_keywords_that_cannot_round_trip_are_refused(bad: list[str]) -> None:
    with pytest.raises(ValueError):
        format_keywords(bad)


def test_parse_keywords_tolerates_model_output() -> None:
    assert parse_keywords(" tv |  samsung   tv || tv | ") == ["tv", "samsung tv"]


def test_worst_case_context_length_is_bounded() -> None:
    """Free text is capped, items are capped: a hostile session cannot blow up the encoder's input."""
    long = "x" * 500
    products = {str(i): P(long, ".".join([long] * 5) + str(i), long + str(i), 1e9) for i in range(8)}
    rules = MerchRules(boost=(long,), exclude=(long,), campaign=long)
    ctx = _ctx([(str(i), "remove_from_cart") for i in range(8)], query=long)
    text = render(context_facts(ctx, PlacementKind.BECAUSE_YOU_VIEWED, rules, products.get))
    assert len(text) < 1500
    assert text.count(";") == MAX_ITEMS - 1


def test_a_rule_category_covers_its_subtree_only() -> None:
    assert in_categories("kids.toys", ["kids"]) and in_categories("kids", ["kids"])
    assert not in_categories("kidswear", ["kids"]) and not in_categories(None, ["kids"])
    assert not in_categories("kids.toys", [])
