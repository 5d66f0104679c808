"""The project's own broker launcher, as the demo uses it: twice on the same directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.devtools.exceptions import BrokerError
from streams.devtools.local_kafka import LocalKafka, wait_for_metadata

pytestmark = pytest.mark.kafka


def test_broker_starts_again_on_the_directory_of_an_earlier_run_and_stops(tmp_path: Path) -> None:
    for _ in range(2):  # the second start used to fail: the old log dir carried another cluster id
        with LocalKafka(tmp_path / "kafka", heap="256m") as kafka:
            asyncio.run(wait_for_metadata(kafka.bootstrap, timeout_s=10))
        with pytest.raises(BrokerError):
            asyncio.run(wait_for_metadata(kafka.bootstrap, timeout_s=1.5))
