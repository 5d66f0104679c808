"""The experiment readout: per arm, cart adds per page view and per session, and each treatment's lift.

Exposures are storefront updates: every version published to a session is one page view of that
session's arm. Behaviour is the clickstream. A session enters the experiment at its first exposure
(the event time of the event that triggered it); only what it did strictly after that counts, and a
cart add belongs to the newest page the session had been shown by then. A cart add "of a shown
item" is one whose product was on that page: the part of the behaviour the page can take credit for.

Intervals are the evaluation's cluster bootstrap (Poisson(1) weights per session, so a session's page
views move together). Arms hold disjoint sessions, so each treatment's lift over control,
``rate(treatment) / rate(control) - 1``, is resampled with independent draws per arm.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streams.contracts.events import ClickEvent
from streams.contracts.storefront import Arm, StorefrontUpdate
from streams.evaluation.metrics import Estimate, _cluster_index, _interval, _weights, bootstrap_mean

CART = "cart"
PURCHASE = "purchase"


@dataclass(slots=True)
class _Session:
    arm: Arm
    pages: list[tuple[int, int, frozenset[str]]] = field(default_factory=list)  # (event_ts, version, products)
    carts: list[int] = field(default_factory=list)  # per page: cart adds while it was the newest page
    shown_carts: list[int] = field(default_factory=list)
    purchases: int = 0


@dataclass(frozen=True, slots=True)
class ArmResult:
    arm: Arm
    sessions: int
    page_views: int
    cart_adds: int
    shown_cart_adds: int
    purchases: int
    carts_per_page_view: Estimate
    shown_carts_per_page_view: Estimate
    carts_per_session: Estimate
    purchases_per_session: Estimate


@dataclass(frozen=True, slots=True)
class Lift:
    arm: Arm
    metric: str
    estimate: Estimate  # relative: 0.05 is +5% over control


@dataclass(frozen=True, slots=True)
class Readout:
    experiment_id: str | None
    arms: list[ArmResult]
    lifts: list[Lift]
    mixed_sessions: int  # sessions seen in more than one arm (a changed split): left out

    def arm(self, arm: Arm) -> ArmResult:
        return next(a for a in self.arms if a.arm is arm)

    def lift(self, arm: Arm, metric: str) -> Lift:
        return next(lift for lift in self.lifts if lift.arm is arm and lift.metric == metric)

    def lines(self) -> list[str]:
        head = f"experiment {self.experiment_id or '(all)'}"
        if self.mixed_sessions:
            head += f"  ({self.mixed_sessions} sessions seen in two arms left out)"
        out = [
            head,
            "",
            "| arm | sessions | page views | cart adds | per page view [95% CI] | shown-item carts per page view "
            "| per session | purchases per session |",
            "|---|---:|---:|---:|---|---|---|---|",
        ]
        for a in self.arms:
            out.append(
                f"| {a.arm.value} | {a.sessions} | {a.page_views} | {a.cart_adds} | {a.carts_per_page_view} "
                f"| {a.shown_carts_per_page_view} | {a.carts_per_session} | {a.purchases_per_session} |"
            )
        if self.lifts:
            out += ["", "| treatment | metric | lift over control [95% CI] |", "|---|---|---|"]
            for lift in self.lifts:
                e = lift.estimate
                out.append(f"| {lift.arm.value} | {lift.metric} | {e.value:+.1%} [{e.low:+.1%}, {e.high:+.1%}] |")
        return out


METRICS = ("carts_per_page_view", "shown_carts_per_page_view", "carts_per_session", "purchases_per_session")


def readout(
    exposures: Iterable[StorefrontUpdate],
    events: Iterable[ClickEvent],
    *,
    experiment_id: str | None = None,
    resamples: int = 1000,
    seed: int = 7,
) -> Readout:
    """Join exposures with later behaviour; ``experiment_id`` keeps only that experiment's updates."""
    sessions, mixed = _exposed_sessions(exposures, experiment_id)
    for event in events:
        session = sessions.get(event.session_id)
        if session is None or event.event_type not in (CART, PURCHASE):
            continue
        starts = [ts for ts, _, _ in session.pages]
        page = bisect.bisect_left(starts, event.ts) - 1  # newest page triggered strictly before the event
        if page < 0:
            continue
        if event.event_type == PURCHASE:
            session.purchases += 1
            continue
        session.carts[page] += 1
        session.shown_carts[page] += event.product_id in session.pages[page][2]
    by_arm: dict[Arm, dict[str, _Session]] = defaultdict(dict)
    for sid, session in sessions.items():
        by_arm[session.arm][sid] = session
    arms = [_arm_result(arm, by_arm[arm], resamples, seed) for arm in Arm if arm in by_arm]
    lifts = []
    if Arm.CONTROL in by_arm:
        control = by_arm[Arm.CONTROL]
        for i, arm in enumerate(a for a in Arm if a in by_arm and a is not Arm.CONTROL):
            for metric in METRICS:
                c_point, c_draws = _rate_draws(*_rows(control, metric), resamples, seed)
                t_point, t_draws = _rate_draws(*_rows(by_arm[arm], metric), resamples, seed + 1 + i)
                ok = (c_draws > 0) & ~np.isnan(t_draws)
                point = t_point / c_point - 1 if c_point > 0 else math.nan
                lift = _interval(point, t_draws[ok] / c_draws[ok] - 1, 0.95) if ok.any() else None
                lifts.append(Lift(arm, metric, lift or Estimate(point, math.nan, math.nan)))
    return Readout(experiment_id, arms, lifts, mixed)


def _exposed_sessions(
    exposures: Iterable[StorefrontUpdate], experiment_id: str | None
) -> tuple[dict[str, _Session], int]:
    """Each session's pages in version order (a redelivered version counts once)."""
    pages: dict[str, dict[int, StorefrontUpdate]] = defaultdict(dict)
    for update in exposures:
        if experiment_id is None or update.experiment_id == experiment_id:
            pages[update.session_id].setdefault(update.version, update)
    sessions: dict[str, _Session] = {}
    mixed = 0
    for sid, versions in pages.items():
        ordered = [versions[v] for v in sorted(versions)]
        if len({u.arm for u in ordered}) > 1:
            mixed += 1
            continue
        session = _Session(ordered[0].arm)
        for u in ordered:
            session.pages.append((u.event_ts, u.version, frozenset(u.product_ids())))
        session.pages.sort(key=lambda p: (p[0], p[1]))
        session.carts = [0] * len(ordered)
        session.shown_carts = [0] * len(ordered)
        sessions[sid] = session
    return sessions, mixed


def _rows(sessions: dict[str, _Session], metric: str) -> tuple[list[float], list[str]]:
    """Per page view (clustered by session) or per session, the values whose mean is the metric."""
    if metric == "carts_per_session":
        return [float(sum(s.carts)) for s in sessions.values()], list(sessions)
    if metric == "purchases_per_session":
        return [float(s.purchases) for s in sessions.values()], list(sessions)
    column = "carts" if metric == "carts_per_page_view" else "shown_carts"
    values = [float(v) for s in sessions.values() for v in getattr(s, column)]
    clusters = [sid for sid, s in sessions.items() for _ in s.pages]
    return values, clusters


def _rate_draws(
    values: Sequence[float], clusters: Sequence[str], resamples: int, seed: int
) -> tuple[float, np.ndarray]:
    """The mean and its cluster-bootstrap draws: ``bootstrap_mean``'s resampling, which keeps its draws to
    itself; the lift needs them to divide treatment by control draw by draw."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return math.nan, np.full(resamples, math.nan)
    inverse, n = _cluster_index(clusters)
    sums = np.bincount(inverse, weights=x, minlength=n)
    counts = np.bincount(inverse, minlength=n).astype(np.float64)
    draws = []
    for w in _weights(np.random.default_rng(seed), resamples, n):
        num, den = w @ sums, w @ counts
        draws.append(np.divide(num, den, out=np.full_like(num, math.nan), where=den > 0))
    return float(x.mean()), np.concatenate(draws)


def _arm_result(arm: Arm, sessions: dict[str, _Session], resamples: int, seed: int) -> ArmResult:
    def estimate(metric: str) -> Estimate:
        return bootstrap_mean(*_rows(sessions, metric), resamples=resamples, seed=seed)

    return ArmResult(
        arm=arm,
        sessions=len(sessions),
        page_views=sum(len(s.pages) for s in sessions.values()),
        cart_adds=sum(sum(s.carts) for s in sessions.values()),
        shown_cart_adds=sum(sum(s.shown_carts) for s in sessions.values()),
        purchases=sum(s.purchases for s in sessions.values()),
        carts_per_page_view=estimate("carts_per_page_view"),
        shown_carts_per_page_view=estimate("shown_carts_per_page_view"),
        carts_per_session=estimate("carts_per_session"),
        purchases_per_session=estimate("purchases_per_session"),
    )
