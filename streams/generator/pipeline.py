"""The generator: regeneration requests in, storefront updates out.

Requests are taken in micro-batches (``VITRINE_GENERATOR_BATCH_MAX`` within
``VITRINE_GENERATOR_BATCH_WAIT_S``) so the model runs batched across sessions. Within a batch several
requests of one session collapse to the newest, and so does a request behind which a newer one of its session
waits in the partition read at assignment (``streams.generator.backlog``); a request whose version is not above the
last one published for its session is dropped (a redelivery after a crash, or an older request arriving late).
Each session is hashed to an experiment arm (salted by ``VITRINE_EXPERIMENT_ID``, see
streams.contracts.experiment), and the page is planned (themes and keywords), retrieved,
fused and published keyed by session. A batch is planned and assembled under the merchandising rules in force
when it is served (``streams.generator.merch``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from models.context import MerchRules
from streams.contracts.experiment import DEFAULT_EXPERIMENT_ID, assign_arm
from streams.contracts.regen import RegenRequest
from streams.contracts.storefront import Arm, StorefrontUpdate
from streams.generator.assembly import PlacementPlan, StorefrontAssembler
from streams.generator.merch import MerchBook
from streams.runtime import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PagePlan:
    """A planner's answer for one request; ``degraded`` says what failed while planning it."""

    placements: list[PlacementPlan]
    degraded: list[str] = field(default_factory=list)
    generation_ms: float = 0.0


class Planner(Protocol):
    """Writes themes and keywords for whole pages, a batch of requests at a time."""

    arm: Arm
    version: str | None

    def plan(self, requests: Sequence[RegenRequest], rules: MerchRules | None = None) -> list[PagePlan]: ...


def coalesce(
    requests: Sequence[RegenRequest],
    published: Callable[[str], int],
    queued: Callable[[RegenRequest], int] = lambda _request: 0,
) -> list[RegenRequest]:
    """The newest request per session, if it is newer than what was published for it and no newer one of its
    session waits behind it (``queued``: the newest version known to wait in the request's partition, 0: none)."""
    newest: dict[str, RegenRequest] = {}
    for request in requests:
        current = newest.get(request.session_id)
        if current is None or request.version > current.version:
            newest[request.session_id] = request
    latest = [r for r in newest.values() if r.version >= queued(r)]
    metrics.COALESCED.inc(len(requests) - len(latest))
    fresh = [r for r in latest if r.version > published(r.session_id)]
    metrics.STALE.inc(len(latest) - len(fresh))
    return fresh


class StorefrontGenerator:
    """The per-batch work, free of Kafka so tests and benchmarks can drive it directly."""

    def __init__(
        self,
        *,
        assembler: StorefrontAssembler,
        planner: Planner | None,
        control_share: float = 0.1,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        merch: MerchBook | None = None,
    ) -> None:
        """``merch``: the rule set the merch-rules follower keeps current; none: no rules."""
        self.assembler = assembler
        self.merch = merch if merch is not None else MerchBook()
        self.planner = planner
        self.control_share = control_share
        self.experiment_id = experiment_id

    def generate(self, requests: Sequence[RegenRequest]) -> list[StorefrontUpdate]:
        treatment = self.planner.arm if self.planner is not None else Arm.CONTROL
        arms = [
            assign_arm(
                r.session_id, experiment_id=self.experiment_id, control_share=self.control_share, treatment=treatment
            )
            for r in requests
        ]
        rules = self.merch.active(int(time.time() * 1000))
        planned = [r for r, arm in zip(requests, arms, strict=True) if arm is not Arm.CONTROL]
        plans: dict[str, PagePlan] = {}
        if planned and self.planner is not None:
            try:
                written = self.planner.plan(planned, rules.context())
                plans = {r.session_id: p for r, p in zip(planned, written, strict=True)}
            except Exception as exc:  # a failing model degrades pages, never the worker (logged with its trace)
                log.exception("planner failed; traditional fallback for the batch")
                reason = f"planner: {type(exc).__name__}: {exc}"
                plans = {r.session_id: PagePlan([], [reason]) for r in planned}
        updates = []
        version = self.planner.version if self.planner is not None else None
        for request, arm in zip(requests, arms, strict=True):
            plan = plans.get(request.session_id)
            update = self.assembler.assemble(
                request,
                arm=arm,
                plans=plan.placements if plan is not None else None,
                model_version=version if arm is not Arm.CONTROL else None,
                generation_ms=plan.generation_ms if plan is not None else 0.0,
                degraded_reasons=plan.degraded if plan is not None else (),
                rules=rules,
            ).model_copy(update={"experiment_id": self.experiment_id})
            updates.append(update)
            metrics.STOREFRONTS.labels(update.arm.value).inc()
            metrics.FALLBACK_PLACEMENTS.inc(sum(p.fallback for p in update.placements))
            for reason in update.degraded_reasons:
                metrics.DEGRADED.labels(reason.split(":", 1)[0]).inc()
        return updates
