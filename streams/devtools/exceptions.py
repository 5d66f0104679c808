"""Errors of the developer tools."""

from __future__ import annotations

from streams.contracts.errors import VitrineError


class BrokerError(VitrineError):
    """The local Kafka broker could not be prepared, started or reached."""
