"""The clickstream event contract and its decoder.

Wire format: one JSON object per Kafka message, keyed by ``session_id``::

    {"event_id": "rees46:12", "session_id": "a1b2", "user_id": "5412", "event_type": "view",
     "product_id": "1004856", "query": null, "price": 130.76,
     "category": "electronics.smartphone", "brand": "samsung", "ts": 1569888000000}

- ``event_type`` is one of view, cart, remove_from_cart, purchase, search.
- ``product_id`` is required for every type but search; ``query`` is required for search.
- ``category`` is a dot-separated taxonomy path (``electronics.audio.headphone``).
- ``ts`` is the event time in epoch milliseconds (UTC), an integer. Unknown fields are ignored, so
  producers can add fields without breaking older workers.

Types are strict: nothing is coerced (``"price": "12.5"`` and ``"ts": true`` are rejected, not read as
12.5 and 1 ms), and ``ts`` must be plausible against the Kafka message's own timestamp (see
``PlausibleTime``): a ``ts`` in microseconds would otherwise move event time decades ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from streams.contracts.errors import DlqReason, InvalidEvent

EventType = Literal["view", "cart", "remove_from_cart", "purchase", "search"]
# Free text is trimmed (a blank query says nothing); ids are not (see ClickEvent.model_config).
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
EVENT_TYPES: tuple[EventType, ...] = ("view", "cart", "remove_from_cart", "purchase", "search")


class ClickEvent(BaseModel):
    # No whitespace stripping: ids are opaque and session_id must equal the message key byte for byte.
    # Strict: a producer sending strings for numbers or booleans for times has a bug we must not hide.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    event_id: str = Field(min_length=1, max_length=128)
    session_id: str = Field(min_length=1, max_length=128)
    user_id: str | None = Field(default=None, max_length=128)
    event_type: EventType
    product_id: str | None = Field(default=None, min_length=1, max_length=64)
    query: Text | None = Field(default=None, max_length=256)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    category: str | None = Field(default=None, max_length=256)
    brand: str | None = Field(default=None, max_length=128)
    ts: int = Field(ge=0, description="Event time, epoch milliseconds.")

    @model_validator(mode="after")
    def _check_type_fields(self) -> ClickEvent:
        if self.event_type == "search":
            if self.query is None:
                raise ValueError("search event needs a query")
        elif self.product_id is None:
            raise ValueError(f"{self.event_type} event needs a product_id")
        return self

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


@dataclass(frozen=True, slots=True)
class PlausibleTime:
    """The window ``ts`` must fall in, relative to a reference time (the message's Kafka timestamp).

    ``max_ahead_ms`` catches unit errors (microseconds, nanoseconds) and broken clocks; ``max_age_ms``
    (None: unlimited, for replays of old logs) catches seconds sent as milliseconds.
    """

    max_ahead_ms: int
    max_age_ms: int | None = None

    def check(self, ts: int, reference_ms: int) -> None:
        if ts > reference_ms + self.max_ahead_ms:
            ahead = (ts - reference_ms) / 1000
            raise InvalidEvent(DlqReason.IMPLAUSIBLE_TIME, f"ts {ts} is {ahead:.0f}s ahead of {reference_ms}")
        if self.max_age_ms is not None and ts < reference_ms - self.max_age_ms:
            behind = (reference_ms - ts) / 1000
            raise InvalidEvent(DlqReason.IMPLAUSIBLE_TIME, f"ts {ts} is {behind:.0f}s behind {reference_ms}")


def decode_event(
    raw: bytes | None,
    *,
    max_bytes: int,
    key: bytes | None = None,
    window: PlausibleTime | None = None,
    reference_ms: int | None = None,
) -> ClickEvent:
    """Parse and validate one message; raise ``InvalidEvent`` with a precise reason otherwise.

    With a ``window``, ``ts`` is checked against ``reference_ms`` (the message timestamp; required then).
    """
    if raw is None:
        raise InvalidEvent(DlqReason.NULL_VALUE, "null value (a tombstone has no place in the clickstream)")
    if len(raw) > max_bytes:
        raise InvalidEvent(DlqReason.OVERSIZED, f"{len(raw)} bytes > limit {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(DlqReason.INVALID_JSON, str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEvent(DlqReason.NOT_AN_OBJECT, f"top-level JSON is {type(data).__name__}")
    try:
        event = ClickEvent.model_validate(data)
    except ValidationError as exc:
        raise _classify(exc) from None
    if key is not None and key != event.session_id.encode():
        raise InvalidEvent(DlqReason.KEY_MISMATCH, "message key differs from session_id")
    if window is not None:
        if reference_ms is None:
            raise ValueError("a plausible-time window needs a reference time")
        window.check(event.ts, reference_ms)
    return event


def _classify(exc: ValidationError) -> InvalidEvent:
    """Map pydantic's first error to one of our reasons, keeping its field and message."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "event"
    detail = f"{where}: {err['msg']}"
    if err["type"] == "missing":
        return InvalidEvent(DlqReason.MISSING_FIELD, detail)
    if err["loc"] == ("event_type",):
        return InvalidEvent(DlqReason.UNKNOWN_EVENT_TYPE, f"{detail} (got {err.get('input')!r})")
    if not err["loc"]:
        return InvalidEvent(DlqReason.INCONSISTENT, err["msg"].removeprefix("Value error, "))
    return InvalidEvent(DlqReason.INVALID_FIELD, detail)
