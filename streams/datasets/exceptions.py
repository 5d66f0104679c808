"""Errors of the log readers."""

from __future__ import annotations

from streams.contracts.errors import VitrineError


class ReplayError(VitrineError):
    """An event log could not be read or replayed."""
