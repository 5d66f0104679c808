"""The contracts' errors: one root for every Vitrine error, and why a message is dead-lettered."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ValidationError


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


def invalid_event(exc: ValidationError, what: str) -> InvalidEvent:
    """The first validation error of a JSON contract, as a reason and a one-line detail (``what``: a model-wide
    check's location). A model-wide check (no field location) is an inconsistency between fields."""
    err = exc.errors(include_url=False)[0]
    reason = {
        "json_invalid": DlqReason.INVALID_JSON,
        "model_type": DlqReason.NOT_AN_OBJECT,
        "missing": DlqReason.MISSING_FIELD,
    }.get(err["type"], DlqReason.INCONSISTENT if not err["loc"] else DlqReason.INVALID_FIELD)
    where = ".".join(str(p) for p in err["loc"]) or what
    return InvalidEvent(reason, f"{where}: {err['msg']}")
