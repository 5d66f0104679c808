"""Bad clickstream messages of every kind issue 10 names, built from valid ones (seeded, reproducible)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from streams.contracts.errors import DlqReason
from streams.datasets.readers import ReplayRecord

Maker = Callable[[random.Random, dict[str, Any], bytes], tuple[bytes, bytes | None]]


def _dumps(data: object) -> bytes:
    return orjson.dumps(data)


def _null(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    return key, None


def _oversized(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    return key, _dumps({**good, "pad": "x" * rng.randint(8192, 20_000)})


def _invalid_json(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    raw = _dumps(good)
    return key, raw[: rng.randint(1, len(raw) - 1)]


def _not_an_object(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    return key, _dumps(rng.choice([list(good.values()), good["session_id"], good["ts"], None, True]))


def _missing(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    drop = rng.choice(["event_id", "session_id", "event_type", "ts"])
    data = {k: v for k, v in good.items() if k != drop}
    return key, _dumps(data)


def _invalid_field(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    """Types a lax parser would coerce (strings for numbers, booleans and floats for times), or out of range."""
    field, value = rng.choice(
        [
            ("price", str(rng.uniform(0, 500))),
            ("price", -rng.uniform(0.01, 500)),
            ("ts", True),
            ("ts", False),
            ("ts", float(good["ts"])),
            ("ts", str(good["ts"])),
            ("ts", -rng.randint(1, 10**6)),
            ("product_id", rng.randint(1, 10**7)),
            ("user_id", rng.randint(1, 10**7)),
            ("brand", "b" * 200),
        ]
    )
    return key, _dumps({**good, field: value})


def _unknown_type(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    return key, _dumps({**good, "event_type": rng.choice(["wishlist", "VIEW", "click", ""])})


def _inconsistent(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    data = {k: v for k, v in good.items() if k not in ("product_id", "query")}
    data["event_type"] = rng.choice(["view", "cart", "purchase", "search"])
    return key, _dumps(data)


def _key_mismatch(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    return key + b"-other", _dumps(good)


def _implausible(rng: random.Random, good: dict[str, Any], key: bytes) -> tuple[bytes, bytes | None]:
    return key, _dumps({**good, "ts": good["ts"] * rng.choice([1000, 1_000_000])})  # micro- and nanoseconds


KINDS: dict[DlqReason, Maker] = {
    DlqReason.NULL_VALUE: _null,
    DlqReason.OVERSIZED: _oversized,
    DlqReason.INVALID_JSON: _invalid_json,
    DlqReason.NOT_AN_OBJECT: _not_an_object,
    DlqReason.MISSING_FIELD: _missing,
    DlqReason.INVALID_FIELD: _invalid_field,
    DlqReason.UNKNOWN_EVENT_TYPE: _unknown_type,
    DlqReason.INCONSISTENT: _inconsistent,
    DlqReason.KEY_MISMATCH: _key_mismatch,
    DlqReason.IMPLAUSIBLE_TIME: _implausible,
}


def interleave(valid: list[ReplayRecord], n_bad: int, seed: int) -> list[tuple[bytes, bytes | None, DlqReason | None]]:
    """``valid`` in order, with ``n_bad`` bad messages (every kind, round robin) at random places between."""
    rng = random.Random(seed)
    kinds = list(KINDS.items())
    bad: list[tuple[bytes, bytes | None, DlqReason | None]] = []
    for i in range(n_bad):
        template = rng.choice(valid)
        reason, make = kinds[i % len(kinds)]
        key, value = make(rng, orjson.loads(template.value), template.key or b"")
        bad.append((key, value, reason))
    out: list[tuple[bytes, bytes | None, DlqReason | None]] = [(r.key or b"", r.value, None) for r in valid]
    for item in bad:
        out.insert(rng.randint(0, len(out)), item)
    return out
