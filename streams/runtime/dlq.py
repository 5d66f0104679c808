"""Dead-lettering: one convention and one sender for every topic whose messages can be rejected."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from streams.contracts.errors import DlqReason
from streams.runtime import metrics

# Kafka's own per-record overhead and our headers stay far below this margin.
_HEADROOM = 16 * 1024


def dlq_headers(reason: DlqReason, detail: str, *, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka Connect's convention: the original bytes stay the value, the context goes in headers."""
    return [
        ("vitrine.dlq.reason", reason.value.encode()),
        ("vitrine.dlq.detail", detail.encode()[:1024]),
        ("vitrine.dlq.topic", topic.encode()),
        ("vitrine.dlq.partition", str(partition).encode()),
        ("vitrine.dlq.offset", str(offset).encode()),
    ]


class Producer(Protocol):
    """Faust's producer, as far as dead-lettering needs it."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class Rejected:
    """Where a rejected message came from, and what it was."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] = ()


@dataclass(slots=True)
class DeadLetters:
    """Sends rejected messages to ``topic``; never raises for the message's own size or content.

    A value too large for one produce request (the producer's 1 MB default, the reason it was rejected in
    the first place) is replaced by a reference: its origin, size and sha256 stay in the headers, with the
    original headers, so the message can be found in its source topic while retention keeps it.
    """

    producer: Producer
    topic: str
    max_value_bytes: int

    async def send(self, rejected: Rejected, reason: DlqReason, detail: str) -> None:
        metrics.DLQ.labels(reason.value).inc()
        headers = dlq_headers(
            reason, detail, topic=rejected.topic, partition=rejected.partition, offset=rejected.offset
        )
        original = rejected.headers.items() if isinstance(rejected.headers, Mapping) else rejected.headers
        kept = [(f"vitrine.orig.{name}", value) for name, value in original]
        if sum(len(n) + len(v) for n, v in kept) > _HEADROOM:
            kept = [("vitrine.dlq.headers_dropped", str(len(kept)).encode())]
        headers += kept
        value = rejected.value
        key = rejected.key
        if key is not None and len(key) > _HEADROOM:
            headers.append(("vitrine.dlq.key_sha256", hashlib.sha256(key).hexdigest().encode()))
            key = None
        if value is not None and len(value) > self.max_value_bytes:
            headers += [
                ("vitrine.dlq.value_ref", f"{rejected.topic}/{rejected.partition}/{rejected.offset}".encode()),
                ("vitrine.dlq.value_bytes", str(len(value)).encode()),
                ("vitrine.dlq.value_sha256", hashlib.sha256(value).hexdigest().encode()),
            ]
            value = b""
        await self.producer.send(self.topic, key, value, None, None, headers)
