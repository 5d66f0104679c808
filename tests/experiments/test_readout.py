"""The experiment readout against a simulated shopper whose cart adds depend on the page it was shown.

Each session is assigned its arm by the generator's own bucket function, is shown three pages, and
after each page carts one of the page's items with an arm-dependent probability (the planted effect)
and some other product with an arm-independent one (noise the page cannot take credit for).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streams.cli import main
from streams.contracts.events import ClickEvent
from streams.contracts.experiment import assign_arm
from streams.contracts.storefront import Arm, StorefrontUpdate
from streams.experiments.readout import readout
from tests.factories import placement, storefront

EXPERIMENT = "exp-test"
PAGES = 3
NOISE = 0.05  # carts of products not on the page, same in both arms


def page(session: str, version: int, arm: Arm, ts: int, products: list[str], experiment: str) -> StorefrontUpdate:
    return storefront(
        [placement("hero", products)],
        session_id=session,
        version=version,
        arm=arm,
        event_ts=ts,
        experiment_id=experiment,
    )


def event(session: str, n: int, kind: str, product: str, ts: int) -> ClickEvent:
    return ClickEvent(event_id=f"{session}:{n}", session_id=session, event_type=kind, product_id=product, ts=ts)  # type: ignore[arg-type]


def simulate(
    p_shown: dict[Arm, float], *, sessions: int = 3000, seed: int = 1, experiment: str = EXPERIMENT
) -> tuple[list[StorefrontUpdate], list[ClickEvent]]:
    rng = random.Random(seed)
    updates, events = [], []
    for i in range(sessions):
        sid = f"s{i}"
        arm = assign_arm(sid, experiment_id=experiment, control_share=0.5, treatment=Arm.TEACHER)
        ts = 1_700_000_000_000 + i * 100_000
        events.append(event(sid, 0, "view", "p0", ts))  # the event that triggers the first page
        for version in range(1, PAGES + 1):
            shown = rng.sample(range(1000), 6)
            updates.append(page(sid, version, arm, ts, [f"p{p}" for p in shown], experiment))
            if rng.random() < p_shown[arm]:
                events.append(event(sid, 10 * version + 1, "cart", f"p{rng.choice(shown)}", ts + 500))
                if rng.random() < 0.5:
                    events.append(event(sid, 10 * version + 2, "purchase", f"p{shown[0]}", ts + 600))
            if rng.random() < NOISE:
                events.append(event(sid, 10 * version + 3, "cart", f"p{1000 + rng.randrange(100)}", ts + 700))
            ts += 1000
            events.append(event(sid, 10 * version + 4, "view", "p0", ts))  # triggers the next page
    return updates, events


def test_the_readout_finds_a_planted_lift_inside_its_interval() -> None:
    control, treatment = 0.10, 0.14
    updates, events = simulate({Arm.CONTROL: control, Arm.TEACHER: treatment})
    result = readout(updates, events, experiment_id=EXPERIMENT, resamples=500)
    shown = result.lift(Arm.TEACHER, "shown_carts_per_page_view").estimate
    planted = treatment / control - 1  # +40% shown-item cart adds per page view
    assert shown.low < planted < shown.high
    assert shown.low > 0
    total = result.lift(Arm.TEACHER, "carts_per_page_view").estimate
    planted_total = (treatment + NOISE) / (control + NOISE) - 1  # diluted by the noise carts: +27%
    assert total.low < planted_total < total.high
    assert total.low > 0
    arm = result.arm(Arm.CONTROL)
    assert arm.page_views == PAGES * arm.sessions
    assert arm.carts_per_page_view.low < control + NOISE < arm.carts_per_page_view.high
    assert arm.carts_per_session.low < PAGES * (control + NOISE) < arm.carts_per_session.high


def test_the_readout_finds_no_lift_when_none_was_planted() -> None:
    updates, events = simulate({Arm.CONTROL: 0.12, Arm.TEACHER: 0.12}, seed=2)
    result = readout(updates, events, experiment_id=EXPERIMENT, resamples=500)
    for metric in ("carts_per_page_view", "shown_carts_per_page_view", "carts_per_session"):
        lift = result.lift(Arm.TEACHER, metric).estimate
        assert lift.low < 0 < lift.high, metric


def test_only_behaviour_after_a_page_counts_and_redeliveries_count_once() -> None:
    first = page("a", 1, Arm.CONTROL, 1000, ["x"], EXPERIMENT)
    events = [
        event("a", 1, "cart", "x", 999),  # before any page: not an outcome of the experiment
        event("a", 2, "cart", "x", 1000),  # the same millisecond as the triggering event: not after it
        event("a", 3, "cart", "x", 1001),
        event("a", 4, "cart", "y", 1002),
        event("b", 5, "cart", "x", 1003),  # a session never exposed
    ]
    result = readout([first, first], events, experiment_id=EXPERIMENT, resamples=50)
    arm = result.arm(Arm.CONTROL)
    assert (arm.sessions, arm.page_views, arm.cart_adds, arm.shown_cart_adds) == (1, 1, 2, 1)
    assert result.lifts == []  # no treatment arm, no lift


def test_another_experiments_updates_and_sessions_in_two_arms_are_left_out() -> None:
    updates = [
        page("a", 1, Arm.CONTROL, 1000, ["x"], EXPERIMENT),
        page("b", 1, Arm.TEACHER, 1000, ["x"], "exp-old"),
        page("c", 1, Arm.CONTROL, 1000, ["x"], EXPERIMENT),
        page("c", 2, Arm.TEACHER, 2000, ["x"], EXPERIMENT),
    ]
    result = readout(updates, [], experiment_id=EXPERIMENT, resamples=50)
    assert [(a.arm, a.sessions) for a in result.arms] == [(Arm.CONTROL, 1)]
    assert result.mixed_sessions == 1
    assert {a.arm for a in readout(updates[:2], [], experiment_id=None, resamples=50).arms} == {
        Arm.CONTROL,
        Arm.TEACHER,
    }


def test_the_report_command_reads_files_and_prints_the_lift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    updates, events = simulate({Arm.CONTROL: 0.10, Arm.TEACHER: 0.30}, sessions=400)
    (tmp_path / "updates.jsonl").write_bytes(b"".join(u.to_json() + b"\n" for u in updates) + b"not json\n")
    (tmp_path / "events.jsonl").write_bytes(b"".join(e.to_json() + b"\n" for e in events))
    argv = ["experiment", "report", "--exposures", str(tmp_path / "updates.jsonl")]
    argv += ["--events", str(tmp_path / "events.jsonl"), "--experiment", EXPERIMENT, "--resamples", "200"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| teacher | shown_carts_per_page_view | +" in out
    assert "skipped 1 unreadable storefront update" in out
    assert main([*argv[:-4], "--experiment", "exp-none"]) == 1
