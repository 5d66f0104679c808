"""Prometheus metrics of the session worker (one registry, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()

EVENTS = Counter(
    "vitrine_events", "Valid clickstream events applied to session state.", ["event_type"], registry=REGISTRY
)
DUPLICATES = Counter(
    "vitrine_duplicate_events", "Redelivered events skipped (offset already applied).", registry=REGISTRY
)
DLQ = Counter("vitrine_dlq_events", "Events sent to the dead-letter topic.", ["reason"], registry=REGISTRY)
TRIGGERS = Counter("vitrine_regen_triggers", "Regeneration requests emitted.", ["reason"], registry=REGISTRY)
RESENT = Counter(
    "vitrine_regen_requests_resent",
    "Requests sent again because the event behind them was redelivered (same version).",
    registry=REGISTRY,
)
EXPIRED = Counter("vitrine_expired_sessions", "Idle sessions removed from the table.", registry=REGISTRY)
SESSIONS = Gauge("vitrine_sessions", "Sessions held in this worker's table partitions.", registry=REGISTRY)
STATE_BYTES = Gauge("vitrine_session_state_bytes", "Mean encoded size of one session state.", registry=REGISTRY)
LAG = Gauge("vitrine_consumer_lag", "Messages behind the high watermark.", ["topic", "partition"], registry=REGISTRY)
READY = Gauge("vitrine_ready", "1 once table recovery finished and the worker processes events.", registry=REGISTRY)
