"""One root exception for the package, so callers can catch Vitrine errors apart from bugs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.events import DlqReason


class VitrineError(Exception):
    """Base of every error Vitrine raises on purpose."""


class InvalidEvent(VitrineError):
    """An input message that breaks the event contract; it goes to the dead-letter topic."""

    def __init__(self, reason: DlqReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerError(VitrineError):
    """The local Kafka broker could not be prepared, started or reached."""


class ReplayError(VitrineError):
    """An event log could not be read or replayed."""
