"""Generator batching rules: coalescing per session, stale versions, stable arms; the update schema."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from streams.contracts.experiment import assign_arm, stable_bucket
from streams.contracts.regen import RegenRequest, SessionContext
from streams.contracts.storefront import Arm, ItemSource, Quality, StorefrontUpdate
from streams.generator.assembly import StorefrontAssembler
from streams.generator.pipeline import StorefrontGenerator, coalesce
from streams.runtime.settings import Settings
from tests.factories import items, placement, storefront


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


def test_coalesce_drops_a_request_behind_which_a_newer_one_of_its_session_waits() -> None:
    batch = [request("a", 1), request("b", 2), request("c", 5)]
    waiting = {"a": 3, "b": 2, "c": 4}  # b's newest is this one; c's waiting one is older (it will be stale)
    fresh = coalesce(batch, lambda s: 0, lambda r: waiting[r.session_id])
    assert sorted((r.session_id, r.version) for r in fresh) == [("b", 2), ("c", 5)]


def arms(sessions: list[str], share: float, treatment: Arm, experiment: str = "exp-1") -> list[Arm]:
    return [assign_arm(s, experiment_id=experiment, control_share=share, treatment=treatment) for s in sessions]


def test_arms_are_stable_per_session_and_split_by_the_control_share() -> None:
    sessions = [f"s{i}" for i in range(4000)]
    drawn = arms(sessions, 0.1, Arm.GENERATIVE)
    assert drawn == arms(sessions, 0.1, Arm.GENERATIVE)
    share = drawn.count(Arm.CONTROL) / len(drawn)
    assert 0.08 < share < 0.12
    assert set(arms(sessions, 0.0, Arm.TEACHER)) == {Arm.TEACHER}
    assert set(arms(sessions, 1.0, Arm.TEACHER)) == {Arm.CONTROL}


def test_a_new_experiment_id_draws_an_independent_split() -> None:
    sessions = [f"s{i}" for i in range(4000)]
    first = [a is Arm.CONTROL for a in arms(sessions, 0.5, Arm.TEACHER, "exp-1")]
    second = [a is Arm.CONTROL for a in arms(sessions, 0.5, Arm.TEACHER, "exp-2")]
    agree = sum(a == b for a, b in zip(first, second, strict=True)) / len(sessions)
    assert 0.45 < agree < 0.55  # independent halves agree half the time; the same salt would agree always


def test_the_unsalted_bucket_is_the_plain_blake2b_the_evaluation_samples_with() -> None:
    digest = hashlib.blake2b(b"s1", digest_size=8).digest()
    assert stable_bucket("s1") == int.from_bytes(digest, "big") / 2**64
    assert stable_bucket("s1", "exp-1") != stable_bucket("s1")


def test_the_generator_salts_arms_with_its_experiment_and_stamps_it_on_every_update() -> None:
    """A control-only generator (no planner, no retriever) still assigns arms and names the experiment."""
    assembler = StorefrontAssembler(retriever=None, products=lambda _: None)
    requests = [request(f"s{i}", 1) for i in range(50)]
    generator = StorefrontGenerator(assembler=assembler, planner=None, control_share=0.5, experiment_id="exp-9")
    updates = generator.generate(requests)
    assert {u.experiment_id for u in updates} == {"exp-9"}
    assert all(u.arm is Arm.CONTROL for u in updates)  # no planner: every arm is control
    assert StorefrontUpdate.from_json(updates[0].to_json()).experiment_id == "exp-9"


def test_the_experiment_id_fits_the_hash_key() -> None:
    assert Settings(experiment_id="exp-7").generator.experiment_id == "exp-7"
    with pytest.raises(ValidationError):
        Settings(experiment_id="x" * 65)  # BLAKE2b keys stop at 64 bytes


def test_storefront_update_round_trips_and_lists_its_products_in_page_order() -> None:
    update = storefront(
        [
            placement("hero", ("1", "2")),
            placement(
                "deals",
                theme="d",
                items=items(["3"], ItemSource.POPULARITY),
                quality=Quality(ok=False, reasons=["duplicate_theme"]),
                fallback=True,
            ),
        ],
        user_id="u",
        version=2,
        arm=Arm.GENERATIVE,
    )
    assert StorefrontUpdate.from_json(update.to_json()) == update
    assert update.product_ids() == ["1", "2", "3"]
