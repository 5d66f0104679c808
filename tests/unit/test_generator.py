"""Generator batching rules: coalescing per session, stale versions, stable arms; the update schema."""

from __future__ import annotations

from streams.contracts.regen import RegenRequest, SessionContext
from streams.contracts.storefront import Arm, Item, ItemSource, Placement, Quality, StorefrontUpdate
from streams.generator.pipeline import arm_for, coalesce


def request(session: str, version: int) -> RegenRequest:
    ctx = SessionContext([], [], [], [], None, {}, 0.0)
    return RegenRequest(
        session_id=session, user_id=None, version=version, reason="first_signal", event_ts=1, context=ctx
    )


def test_coalesce_keeps_the_newest_request_per_session_and_drops_what_was_published() -> None:
    batch = [request("a", 1), request("b", 4), request("a", 3), request("a", 2), request("c", 1)]
    published = {"b": 4, "c": 0}
    fresh = coalesce(batch, lambda s: published.get(s, 0))
    assert sorted((r.session_id, r.version) for r in fresh) == [("a", 3), ("c", 1)]


def test_arms_are_stable_per_session_and_split_by_the_control_share() -> None:
    sessions = [f"s{i}" for i in range(4000)]
    arms = [arm_for(s, 0.1, Arm.GENERATIVE) for s in sessions]
    assert arms == [arm_for(s, 0.1, Arm.GENERATIVE) for s in sessions]
    share = arms.count(Arm.CONTROL) / len(arms)
    assert 0.08 < share < 0.12
    assert {arm_for(s, 0.0, Arm.TEACHER) for s in sessions} == {Arm.TEACHER}
    assert {arm_for(s, 1.0, Arm.TEACHER) for s in sessions} == {Arm.CONTROL}


def test_storefront_update_round_trips_and_lists_its_products_in_page_order() -> None:
    update = StorefrontUpdate(
        session_id="s",
        user_id="u",
        version=2,
        event_ts=1,
        requested_at_ms=2,
        published_at_ms=3,
        trigger="search",
        arm=Arm.GENERATIVE,
        placements=[
            Placement(
                kind="hero",
                theme="t",
                keywords=["k"],
                items=[Item(product_id=p, score=1.0, source=ItemSource.RETRIEVAL) for p in ("1", "2")],
                quality=Quality(ok=True),
                fallback=False,
            ),
            Placement(
                kind="deals",
                theme="d",
                keywords=[],
                items=[Item(product_id="3", score=0.5, source=ItemSource.POPULARITY)],
                quality=Quality(ok=False, reasons=["duplicate_theme"]),
                fallback=True,
            ),
        ],
        degraded=False,
    )
    assert StorefrontUpdate.from_json(update.to_json()) == update
    assert update.product_ids() == ["1", "2", "3"]
