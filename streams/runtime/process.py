"""What every Vitrine process does before its Faust worker starts."""

from __future__ import annotations

import asyncio
import logging

from streams.runtime.logs import configure_logging
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics

log = logging.getLogger(__name__)


def prepare_process(settings: Settings) -> None:
    """Logging, then the topics: a consumer that subscribes before its topic exists waits for a
    metadata refresh that can take minutes, so creating them first makes a fresh cluster work at once."""
    configure_logging(settings.operations.log_level, json=settings.operations.log_json)
    created = asyncio.run(ensure_topics(settings))
    if created:
        log.info("created topics", extra={"topics": created})
