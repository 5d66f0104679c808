"""Per-session state and its compact changelog encoding (target: well under 1 KB a session).

Vectors are kept as float16 bytes *in the state itself*, not only on the wire, so a state restored
from the changelog is bit-identical to the one that was written and a restarted worker continues
exactly where the old one stopped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import orjson

from streams.worker.intent import INTENT_DIM, Vector

FORMAT_VERSION = 1
_HEAD = struct.Struct("<BH")
ZERO_HALF = bytes(2 * INTENT_DIM)

RECENT_ITEMS = 8
TOP_CATEGORIES = 6
TOP_BRANDS = 6
TOP_PRICE_BANDS = 4
MAX_CART_CATEGORIES = 8
# Purchase history kept for the buy-again shelf, by decayed count. Kept deeper than a shelf shows, so a product
# bought again after a large basket is still counted: on the first 150,000 Online Retail lines the top 12 agree
# exactly with the full history's for 56% of customers keeping 12, 66% keeping 24, 80% keeping 48.
TOP_PURCHASED = 48


def to_half(v: Vector) -> bytes:
    """float16 storage: a quarter of the JSON size, and a cast is far cheaper than int8 scaling."""
    return v.astype(np.float16).tobytes()


def from_half(raw: bytes) -> Vector:
    return np.frombuffer(raw, dtype=np.float16).astype(np.float32)


@dataclass(slots=True)
class SessionState:
    """What the worker remembers of one shopping session; event times are epoch milliseconds."""

    user_id: str | None = None
    partition: int = -1
    last_offset: int = -1
    first_ts: int = 0
    last_ts: int = 0
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    recent: list[tuple[str, int]] = field(default_factory=list)
    categories: dict[str, float] = field(default_factory=dict)
    brands: dict[str, float] = field(default_factory=dict)
    price_bands: dict[str, float] = field(default_factory=dict)
    cart_categories: list[str] = field(default_factory=list)
    last_query: str | None = None
    intent_half: bytes = ZERO_HALF
    regen_intent_half: bytes = ZERO_HALF
    version: int = 0
    last_regen_ts: int = 0
    regen_offset: int = -1  # input offset of the event behind the current version, to re-send on redelivery
    last_reason: str | None = None
    drift_pending: bool = False
    purchased: dict[str, float] = field(default_factory=dict)  # product -> decayed purchase count
    # (input offset, reason) of the versions before the current one whose requests may not have reached Kafka yet
    # (made at or above the partition's committed offset), oldest first: entry i is version ``version - len + i``.
    # A SIGKILL can take several versions' requests out of the producer's buffer while RocksDB keeps the state.
    earlier_regens: list[tuple[int, str]] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return sum(self.counts)

    @property
    def intent(self) -> Vector:
        return from_half(self.intent_half)

    @property
    def regen_intent(self) -> Vector:
        return from_half(self.regen_intent_half)

    def logical(self) -> dict[str, Any]:
        """Everything but the Kafka position, for comparing with a state folded offline."""
        out = self.to_dict()
        del out["partition"], out["last_offset"], out["regen_offset"], out["earlier_regens"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_bytes(self) -> bytes:
        body = orjson.dumps(
            [
                self.user_id,
                self.partition,
                self.last_offset,
                self.first_ts,
                self.last_ts,
                self.counts,
                self.recent,
                self.categories,
                self.brands,
                self.price_bands,
                self.cart_categories,
                self.last_query,
                self.version,
                self.last_regen_ts,
                self.last_reason,
                self.drift_pending,
                self.regen_offset,
                self.purchased,
                self.earlier_regens,
            ]
        )
        return b"".join((_HEAD.pack(FORMAT_VERSION, len(body)), body, self.intent_half, self.regen_intent_half))

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionState:
        version, n = _HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise ValueError(f"session state format {version} is not {FORMAT_VERSION}")
        start = _HEAD.size
        fields = orjson.loads(data[start : start + n])
        vec = start + n
        width = len(ZERO_HALF)
        return cls(
            user_id=fields[0],
            partition=fields[1],
            last_offset=fields[2],
            first_ts=fields[3],
            last_ts=fields[4],
            counts=fields[5],
            recent=[(p, t) for p, t in fields[6]],
            categories=fields[7],
            brands=fields[8],
            price_bands=fields[9],
            cart_categories=fields[10],
            last_query=fields[11],
            version=fields[12],
            last_regen_ts=fields[13],
            last_reason=fields[14],
            drift_pending=fields[15],
            regen_offset=fields[16],
            purchased=fields[17] if len(fields) > 17 else {},  # states written before purchases were kept
            earlier_regens=[(o, r) for o, r in fields[18]] if len(fields) > 18 else [],
            intent_half=data[vec : vec + width],
            regen_intent_half=data[vec + width : vec + 2 * width],
        )
