"""Prometheus metrics of the session worker (one registry, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
DROPPED = Counter(
    "vitrine_messages_dropped",
    "Fetched messages Faust's read-offset filter dropped as already read (expected 0; see faust_fastpath).",
    ["topic"],
    registry=REGISTRY,
)
STALLED = Gauge(
    "vitrine_partition_stalled_seconds",
    "Seconds an owned partition's position has not moved while it has lag (0 while it moves).",
    ["topic", "partition"],
    registry=REGISTRY,
)
AGENT_CRASHES = Counter(
    "vitrine_agent_crashes",
    "Agent crashes (worker) or batches that failed every try (generator); 0 on bad input.",
    ["agent"],
    registry=REGISTRY,
)
READY = Gauge("vitrine_ready", "1 once table recovery finished and the worker processes events.", registry=REGISTRY)

# --- generator ------------------------------------------------------------------------------
STOREFRONTS = Counter("vitrine_storefronts", "Storefront updates published.", ["arm"], registry=REGISTRY)
DEGRADED = Counter(
    "vitrine_storefronts_degraded", "Degraded storefronts by what failed.", ["component"], registry=REGISTRY
)
FALLBACK_PLACEMENTS = Counter(
    "vitrine_fallback_placements", "Placements filled by the traditional strategy in a treated page.", registry=REGISTRY
)
COALESCED = Counter(
    "vitrine_requests_coalesced",
    "Requests superseded by a newer one of the same session in their batch or waiting behind them.",
    registry=REGISTRY,
)
STALE = Counter(
    "vitrine_requests_stale", "Requests dropped: version not above the last one published.", registry=REGISTRY
)
INVALID_REQUESTS = Counter(
    "vitrine_invalid_requests", "Regeneration requests that could not be decoded (skipped).", registry=REGISTRY
)
COHERENCE_VIOLATIONS = Counter(
    "vitrine_coherence_violations",
    "Published placements breaking a coherence rule (theme's price bound, brand or category; near-duplicate "
    "items; empty placement; diversity floor), by rule; 0 unless the candidates could not satisfy it.",
    ["rule"],
    registry=REGISTRY,
)
CATALOG_UPDATES = Counter("vitrine_catalog_updates", "Catalog price/stock updates applied.", registry=REGISTRY)
MERCH_RULE_UPDATES = Counter(
    "vitrine_merch_rule_updates", "Merchandising rules applied (set, changed or deleted).", registry=REGISTRY
)
MERCH_RULES = Gauge(
    "vitrine_merch_rules",
    "Merchandising rules held (read from the merch-rules topic and not deleted), and those in force at the last batch.",
    ["state"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "vitrine_generator_batch_size",
    "Requests per generator micro-batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
REQUEST_TO_PUBLISH = Histogram(
    "vitrine_request_to_publish_seconds",
    "From the request leaving the session worker to its storefront being handed to the producer.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

# --- quality filter (AIQA, models/quality.py) -----------------------------------------------
QUALITY_REJECTIONS = Counter(
    "vitrine_quality_rejections", "Generated placements rejected by the quality filter.", ["reason"], registry=REGISTRY
)
