"""Catalog changes in the stream: price and stock updates of one product, keyed by product id.

The topic is compacted, so it is also the current state of every override: a generator that starts
reads it from the beginning and is up to date, and applying an update twice changes nothing.
Wire format::

    {"product_id": "1004856", "in_stock": false, "price": 129.99, "ts": 1569888000000}

``in_stock`` and ``price`` are each optional; at least one must be given.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.contracts.errors import DlqReason, InvalidEvent, invalid_event


class CatalogUpdate(BaseModel):
    # Strict, like the clickstream: "in_stock": "no" must not become False by coercion.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    product_id: str = Field(min_length=1, max_length=64)
    in_stock: bool | None = None
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    ts: int = Field(ge=0)

    @model_validator(mode="after")
    def _says_something(self) -> CatalogUpdate:
        if self.in_stock is None and self.price is None:
            raise ValueError("a catalog update needs in_stock or price")
        return self

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


def decode_catalog_update(raw: bytes | None) -> CatalogUpdate:
    if raw is None:
        raise InvalidEvent(DlqReason.NULL_VALUE, "null value (tombstone): an override is changed, never deleted")
    try:
        return CatalogUpdate.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_event(exc, "update") from None
