"""What every reliability scenario asserts, and the figures RELIABILITY.md reports."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from streams.contracts.regen import RegenRequest
from streams.runtime.settings import Settings
from streams.runtime.topics import read_topic
from tests.conftest import WorkerProcess
from tests.worker.test_app import wait_for_changelog

Expected = dict[bytes, dict[str, object]]


@dataclass(frozen=True, slots=True)
class Figures:
    events: int
    sessions: int
    requests: int
    duplicate_requests: int
    recovery_s: float | None = None

    def line(self, scenario: str) -> str:
        rec = f", recovery {self.recovery_s:.1f}s" if self.recovery_s is not None else ""
        return (
            f"RELIABILITY {scenario}: {self.events} events, {self.sessions} sessions equal to the reference, 0 lost, "
            f"{self.requests} requests ({self.duplicate_requests} re-sent copies), 0 versions lost{rec}"
        )


def assert_no_request_version_lost(settings: Settings, expected: Expected) -> tuple[int, int]:
    """Each session's requests carry every version from 1 to the reference's, in order; copies allowed."""
    records = asyncio.run(read_topic(settings, settings.topics.regen_topic))
    versions: dict[str, list[int]] = {}
    for r in records:
        if r.value is None:
            continue
        req = RegenRequest.from_json(r.value)
        versions.setdefault(req.session_id, []).append(req.version)
    lost = []
    for key, state in expected.items():
        want = int(state["version"])  # type: ignore[call-overload]
        got = versions.get(key.decode(), [])
        if sorted(set(got)) != list(range(1, want + 1)):
            lost.append((key, want, got))
    assert not lost, f"{len(lost)} sessions lost request versions, e.g. {lost[0]}"
    total = sum(len(v) for v in versions.values())
    copies = sum(n - 1 for c in versions.values() for n in Counter(c).values())
    return total, copies


def assert_sessions_equal(
    settings: Settings, expected: Expected, timeout_s: float = 60, *, workers: Sequence[WorkerProcess] = ()
) -> None:
    """On a mismatch the message carries each worker's progress and log tail: CI keeps nothing else."""
    try:
        wait_for_changelog(settings, expected, timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{''.join(_evidence(w) for w in workers)}") from None


def _evidence(worker: WorkerProcess) -> str:
    try:
        processed = f"{worker.endpoint.processed():.0f} events processed"
    except OSError:
        processed = "not answering"
    return f"\n--- {worker.log_path.name} (exit {worker.proc.poll()}, {processed}):\n{worker.log_tail(6000)}"


def wait_for(check: object, timeout_s: float, what: str) -> float:
    """Seconds until ``check()`` held."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not {what} within {timeout_s:.0f}s")
