"""Dead-lettering: one convention for every topic whose messages can be rejected."""

from __future__ import annotations

from streams.contracts.errors import DlqReason


def dlq_headers(reason: DlqReason, detail: str, *, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka Connect's convention: the original bytes stay the value, the context goes in headers."""
    return [
        ("vitrine.dlq.reason", reason.value.encode()),
        ("vitrine.dlq.detail", detail.encode()[:1024]),
        ("vitrine.dlq.topic", topic.encode()),
        ("vitrine.dlq.partition", str(partition).encode()),
        ("vitrine.dlq.offset", str(offset).encode()),
    ]
