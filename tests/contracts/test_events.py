"""The event contract: every dead-letter reason is reachable, with a detail precise enough to act on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.contracts.errors import DlqReason, InvalidEvent
from streams.contracts.events import ClickEvent, decode_event

MAX = 8192

VALID: dict[str, Any] = {
    "event_id": "rees46:12",
    "session_id": "a1b2",
    "user_id": "5412",
    "event_type": "view",
    "product_id": "1004856",
    "price": 130.76,
    "category": "electronics.smartphone",
    "brand": "samsung",
    "ts": 1569888000000,
}


def encode(**changes: Any) -> bytes:
    """VALID with ``changes`` applied; a value of ``...`` removes the field."""
    data = {k: v for k, v in {**VALID, **changes}.items() if v is not ...}
    return orjson.dumps(data)


def reject(raw: bytes, *, key: bytes | None = None, max_bytes: int = MAX) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, max_bytes=max_bytes, key=key)
    assert str(info.value).startswith(f"{info.value.reason}: ")
    return info.value


def test_valid_event_decodes_every_field() -> None:
    event = decode_event(encode(), max_bytes=MAX, key=b"a1b2")
    assert event.model_dump() == {**VALID, "query": None}


# --- oversized -----------------------------------------------------------------------------------


def test_oversized_reports_size_and_limit() -> None:
    raw = encode()
    err = reject(raw, max_bytes=len(raw) - 1)
    assert err.reason is DlqReason.OVERSIZED
    assert err.detail == f"{len(raw)} bytes > limit {len(raw) - 1}"


def test_message_of_exactly_the_limit_is_accepted() -> None:
    raw = encode()
    assert decode_event(raw, max_bytes=len(raw)).session_id == "a1b2"


def test_size_is_checked_before_parsing() -> None:
    assert reject(b"not json at all", max_bytes=4).reason is DlqReason.OVERSIZED


# --- invalid json / not an object ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"\xff\xfe", b'{"price": NaN}', b'{"ts": 1e999}'])
def test_invalid_json(raw: bytes) -> None:
    err = reject(raw)
    assert err.reason is DlqReason.INVALID_JSON
    assert err.detail  # orjson's message, which names line and column
    assert "line 1" in err.detail


@pytest.mark.parametrize(
    ("raw", "kind"), [(b"[1, 2]", "list"), (b'"view"', "str"), (b"42", "int"), (b"null", "NoneType")]
)
def test_not_an_object_names_the_json_type(raw: bytes, kind: str) -> None:
    err = reject(raw)
    assert err.reason is DlqReason.NOT_AN_OBJECT
    assert err.detail == f"top-level JSON is {kind}"


# --- missing / invalid fields -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["event_id", "session_id", "event_type", "ts"])
def test_missing_required_field_is_named(name: str) -> None:
    err = reject(encode(**{name: ...}))
    assert err.reason is DlqReason.MISSING_FIELD
    assert err.detail.startswith(f"{name}: ")
    assert "required" in err.detail.lower()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": -0.01}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": "cheap"}, "price"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": -1}, "ts"),
        ({"ts": 1.5}, "ts"),
        ({"event_id": ""}, "event_id"),
        ({"session_id": "x" * 129}, "session_id"),
        ({"product_id": 1004856}, "product_id"),
        ({"product_id": "p" * 65}, "product_id"),
        ({"event_type": "search", "query": "   "}, "query"),
        ({"user_id": ["5412"]}, "user_id"),
        ({"category": {"path": "a.b"}}, "category"),
    ],
)
def test_invalid_field_is_named(changes: dict[str, Any], field: str) -> None:
    err = reject(encode(**changes))
    assert err.reason is DlqReason.INVALID_FIELD
    assert err.detail.startswith(f"{field}: ")


def test_nan_price_as_a_string_is_not_coerced() -> None:
    # JSON has no NaN literal; the string "NaN" is rejected as a string (strict mode), before finiteness.
    err = reject(encode(price="NaN"))
    assert err.reason is DlqReason.INVALID_FIELD
    assert err.detail == "price: Input should be a valid number"


def test_negative_price_detail_gives_the_bound() -> None:
    assert "greater than or equal to 0" in reject(encode(price=-3)).detail


# --- event type and consistency -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["click", "VIEW", "", 3, None])
def test_unknown_event_type_echoes_the_input(value: object) -> None:
    err = reject(encode(event_type=value))
    assert err.reason is DlqReason.UNKNOWN_EVENT_TYPE
    assert err.detail.startswith("event_type: ")
    assert err.detail.endswith(f"(got {value!r})")


def test_search_without_query_is_inconsistent() -> None:
    err = reject(encode(event_type="search", product_id=...))
    assert err.reason is DlqReason.INCONSISTENT
    assert err.detail == "search event needs a query"


@pytest.mark.parametrize("event_type", ["view", "cart", "remove_from_cart", "purchase"])
def test_product_event_without_product_id_is_inconsistent(event_type: str) -> None:
    for raw in (encode(event_type=event_type, product_id=...), encode(event_type=event_type, product_id=None)):
        err = reject(raw)
        assert err.reason is DlqReason.INCONSISTENT
        assert err.detail == f"{event_type} event needs a product_id"


def test_search_needs_no_product_id() -> None:
    event = decode_event(encode(event_type="search", product_id=..., query="red shoes"), max_bytes=MAX)
    assert (event.event_type, event.product_id, event.query) == ("search", None, "red shoes")


# --- key --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", b"other", b"A1B2", b"a1b2 "])
def test_key_mismatch(key: bytes) -> None:
    err = reject(encode(), key=key)
    assert err.reason is DlqReason.KEY_MISMATCH
    assert "session_id" in err.detail


def test_no_key_means_no_key_check() -> None:
    assert decode_event(encode(), max_bytes=MAX, key=None).session_id == "a1b2"


def test_validation_errors_take_precedence_over_the_key() -> None:
    assert reject(encode(price=-1), key=b"wrong").reason is DlqReason.INVALID_FIELD


def test_padded_session_id_keyed_by_itself_is_not_a_mismatch() -> None:
    """Ids are opaque: a padded id keyed by itself is kept as it is, not stripped into a mismatch."""
    event = decode_event(encode(session_id=" s1 "), max_bytes=MAX, key=b" s1 ")
    assert event.session_id == " s1 "


# --- round trip and forward compatibility ---------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"event_type": "search", "product_id": ..., "query": "4k tv", "price": ..., "brand": ...},
        {"event_type": "cart", "user_id": ..., "category": ..., "brand": ..., "price": 0.0},
        {"event_type": "remove_from_cart", "price": 1e9},
        {"event_type": "purchase", "ts": 0},
    ],
)
def test_round_trip_through_to_json(changes: dict[str, Any]) -> None:
    event = decode_event(encode(**changes), max_bytes=MAX)
    raw = event.to_json()
    assert b"null" not in raw  # None fields are left out of the wire format
    again = decode_event(raw, max_bytes=MAX, key=event.session_id.encode())
    assert again == event
    assert again.to_json() == raw


def test_unknown_fields_are_ignored() -> None:
    event = decode_event(encode(campaign="autumn", nested={"a": [1, 2]}, ts_iso="2019-10-01"), max_bytes=MAX)
    assert event == ClickEvent.model_validate(VALID)
    assert b"campaign" not in event.to_json()


def test_event_is_immutable() -> None:
    event = decode_event(encode(), max_bytes=MAX)
    with pytest.raises(ValueError, match="frozen"):
        event.ts = 5
