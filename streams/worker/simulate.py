"""Offline trigger tuning: regeneration rate of the configured policy and of its neighbours."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

from streams.datasets.readers import ReplayRecord, SourceFormat, read_source
from streams.runtime.settings import Settings
from streams.worker.fold import FoldResult, fold
from streams.worker.sessions import SessionTracker
from streams.worker.trigger import TriggerPolicy


def _run(records: list[ReplayRecord], settings: Settings, policy: TriggerPolicy) -> FoldResult:
    tracker = SessionTracker.from_settings(settings, policy=policy)
    return fold(records, tracker, max_event_bytes=settings.worker.max_event_bytes)


def _row(label: str, r: FoldResult) -> str:
    per_session = r.requests / max(1, len(r.states))
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.triggers.items()))
    return f"| {label} | {r.requests:,} | {r.requests / max(1, r.events):.3f} | {per_session:.2f} | {reasons} |"


def simulate(path: Path, fmt: str | None, settings: Settings) -> str:
    log = read_source(path, SourceFormat(fmt) if fmt else None)
    policy = TriggerPolicy.from_settings(settings)
    base = _run(log.records, settings, policy)
    sizes = sorted(len(s.to_bytes()) for s in base.states.values())
    lines = [
        f"{path.name}: {base.events:,} events, {len(base.states):,} sessions, invalid {dict(base.invalid)}",
        f"state bytes: median {statistics.median(sizes):.0f}, "
        f"p99 {sizes[int(0.99 * (len(sizes) - 1))]}, max {sizes[-1]}",
        "",
        "| policy | requests | per event | per session | by reason |",
        "|---|---|---|---|---|",
        _row(f"configured {policy}", base),
    ]
    variants = {
        "min_events=2": replace(policy, min_events=2),
        "min_events=5": replace(policy, min_events=5),
        "drift_high=0.25,low=0.15": replace(policy, drift_high=0.25, drift_low=0.15),
        "drift_high=0.5,low=0.3": replace(policy, drift_high=0.5, drift_low=0.3),
        "no hysteresis (low=high)": replace(policy, drift_low=policy.drift_high),
        "cooldown=0s": replace(policy, cooldown_ms=0),
        "cooldown=300s": replace(policy, cooldown_ms=300_000),
    }
    lines += [_row(label, _run(log.records, settings, p)) for label, p in variants.items()]
    return "\n".join(lines)
