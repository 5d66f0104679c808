"""Partitions whose consumer position stopped moving while they still have lag.

The lag gauge alone cannot tell a slow partition from one the consumer stopped fetching or the agent stopped
serving; a stall after a SIGKILL restart was seen once in CI with nothing in the log to say where it stood.
``StallWatch`` measures, per owned partition, how long the position has not moved with lag above zero, exports
it (``vitrine_partition_stalled_seconds``, alerted on in k8s) and, past ``warn_after_s``, the worker logs the
partition's consumer bookkeeping with it (``consumer_internals``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.runtime import metrics

Labels = tuple[str, str]  # (topic, partition), as the lag gauge's labels


@dataclass(slots=True)
class StallWatch:
    warn_after_s: float
    since: dict[Labels, tuple[int, float]] = field(default_factory=dict)  # position, and when it was first seen

    def observe(self, labels: Labels, position: int, lag: int, now: float) -> float:
        """Seconds the position has stood still with lag, 0 while it moves or nothing waits."""
        seen = self.since.get(labels)
        if lag == 0:  # caught up: a stall starts counting from the first look that finds lag waiting
            self.since.pop(labels, None)
            stalled = 0.0
        elif seen is None or seen[0] != position:
            self.since[labels] = (position, now)
            stalled = 0.0
        else:
            stalled = now - seen[1]
        metrics.STALLED.labels(*labels).set(stalled)
        return stalled

    def forget(self, labels: Labels) -> None:
        """A partition given away: its new owner reports it."""
        self.since.pop(labels, None)
        metrics.STALLED.remove(*labels)


def consumer_internals(consumer: Any, tp: Any) -> dict[str, object]:
    """Faust's own offsets for ``tp`` (faust-streaming 0.15.3 private fields, read only, for the stall log):
    what was read, committed and acked, and whether the flow is on."""
    acked = list(getattr(consumer, "_acked", {}).get(tp, ()))
    return {
        "read_offset": getattr(consumer, "_read_offset", {}).get(tp),
        "committed_offset": getattr(consumer, "_committed_offset", {}).get(tp),
        "acked_head": sorted(acked)[:3],
        "acked": len(acked),
        "gaps": len(getattr(consumer, "_gap", {}).get(tp, ())),
        "flow_active": getattr(consumer, "flow_active", None),
        "paused": tp in getattr(consumer, "_paused_partitions", ()),
    }
