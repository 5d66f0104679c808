"""Where the readout's inputs come from: files, or the topics themselves (read to their current end).

Unreadable messages are counted, not fatal: a readout over a live topic should not stop at one bad line.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from streams.contracts.errors import InvalidEvent
from streams.contracts.events import ClickEvent, decode_event
from streams.contracts.storefront import StorefrontUpdate
from streams.datasets.readers import SourceFormat, open_text, read_source
from streams.runtime.settings import Settings
from streams.runtime.topics import read_topic


@dataclass(slots=True)
class Inputs:
    exposures: list[StorefrontUpdate] = field(default_factory=list)
    events: list[ClickEvent] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def load_inputs(
    settings: Settings, *, exposures: Path | None, events: Path | None, events_format: SourceFormat | None = None
) -> Inputs:
    """Exposures from a JSONL file of storefront updates or ``VITRINE_STOREFRONT_TOPIC``; behaviour from an
    event log (any ``vitrine replay`` format) or ``VITRINE_CLICKSTREAM_TOPIC``."""
    inputs = Inputs()
    if exposures is not None:
        with open_text(exposures) as fh:
            raw_updates: list[bytes] = [line.encode() for line in fh if line.strip()]
    else:
        raw_updates = [r.value for r in asyncio.run(read_topic(settings, settings.topics.storefront_topic)) if r.value]
    for raw in raw_updates:
        try:
            inputs.exposures.append(StorefrontUpdate.from_json(raw))
        except ValidationError:
            inputs.skipped["unreadable storefront update"] += 1
    if events is not None:
        raw_events = [record.value for record in read_source(events, events_format).records]
    else:
        raw_events = [r.value for r in asyncio.run(read_topic(settings, settings.topics.clickstream_topic)) if r.value]
    for raw in raw_events:
        try:
            inputs.events.append(decode_event(raw, max_bytes=settings.worker.max_event_bytes))
        except InvalidEvent as exc:
            inputs.skipped[f"invalid event: {exc.reason.value}"] += 1
    return inputs
