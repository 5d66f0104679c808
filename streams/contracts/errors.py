"""The contracts' errors: one root for every Vitrine error, and why a message is dead-lettered."""

from __future__ import annotations

from enum import StrEnum


class DlqReason(StrEnum):
    """Why an event went to the dead-letter topic; one Prometheus label value each."""

    OVERSIZED = "oversized"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    INCONSISTENT = "inconsistent"
    KEY_MISMATCH = "key_mismatch"
    NULL_VALUE = "null_value"
    IMPLAUSIBLE_TIME = "implausible_time"
    INVALID_REQUEST = "invalid_request"
    GENERATION_FAILED = "generation_failed"


class VitrineError(Exception):
    """Base of every error Vitrine raises on purpose."""


class InvalidEvent(VitrineError):
    """An input message that breaks its contract; it goes to a dead-letter topic with ``reason``."""

    def __init__(self, reason: DlqReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
