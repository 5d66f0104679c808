"""Running the session worker and generator processes."""

from __future__ import annotations

import asyncio
import logging

import faust

from streams.app import create_app
from streams.logs import configure_logging
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


def _prepare(settings: Settings) -> None:
    configure_logging(settings.log_level, json=settings.log_json)
    # A consumer that subscribes before its topic exists waits for a metadata refresh that can take
    # minutes; creating the topics first makes a fresh cluster work on the first start.
    created = asyncio.run(ensure_topics(settings))
    if created:
        log.info("created topics", extra={"topics": created})


def run_worker(settings: Settings) -> None:
    _prepare(settings)
    app, _ = create_app(settings)
    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


def run_generator(settings: Settings) -> None:
    from streams.generator_app import create_generator_app

    _prepare(settings)
    app, _ = create_generator_app(settings)
    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
