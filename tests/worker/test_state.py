"""The changelog encoding of a session: exact round trip, compact, versioned."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from streams.datasets.readers import read_source
from streams.runtime.settings import Settings
from streams.worker.fold import FoldResult, fold
from streams.worker.intent import INTENT_DIM, TaxonomyIntent
from streams.worker.sessions import SessionTracker
from streams.worker.state import FORMAT_VERSION, SessionState, from_half, to_half

SHARED_DATA = Path(os.environ.get("VITRINE_SHARED_DATA", "/work/shared/data"))
REES46 = SHARED_DATA / "rees46" / "2019-Oct-head.csv"


@pytest.fixture(scope="module")
def rees46_fold() -> FoldResult:
    if not REES46.exists():
        pytest.skip(f"{REES46} not available")
    settings = Settings()
    tracker = SessionTracker.from_settings(settings, intent_space=TaxonomyIntent())
    return fold(read_source(REES46).records, tracker, max_event_bytes=settings.worker.max_event_bytes)


def test_rees46_fold_is_complete(rees46_fold: FoldResult) -> None:
    with REES46.open() as fh:
        rows = sum(1 for _ in fh) - 1
    assert rees46_fold.events + sum(rees46_fold.invalid.values()) == rows
    assert not rees46_fold.invalid
    assert sum(s.n_events for s in rees46_fold.states.values()) == rees46_fold.events
    assert len(rees46_fold.states) > 1000


def test_round_trip_is_exact_for_every_rees46_session(rees46_fold: FoldResult) -> None:
    for state in rees46_fold.states.values():
        again = SessionState.from_bytes(state.to_bytes())
        assert again == state
        assert again.to_bytes() == state.to_bytes()
        assert np.array_equal(again.intent, state.intent)
        assert all(isinstance(item, tuple) for item in again.recent)


def test_round_trip_covers_generated_sessions(rees46_fold: FoldResult) -> None:
    generated = [s for s in rees46_fold.states.values() if s.version > 0]
    assert generated, "the REES46 head should trigger at least one regeneration"
    s = max(generated, key=lambda st: st.version)
    again = SessionState.from_bytes(s.to_bytes())
    assert (again.version, again.last_reason, again.last_regen_ts) == (s.version, s.last_reason, s.last_regen_ts)
    assert again.regen_intent_half == s.regen_intent_half != bytes(2 * INTENT_DIM)


def test_every_rees46_session_encodes_under_1kb(rees46_fold: FoldResult) -> None:
    sizes = {key: len(s.to_bytes()) for key, s in rees46_fold.states.items()}
    worst = max(sizes, key=sizes.__getitem__)
    assert sizes[worst] < 1024, f"session {worst!r} encodes to {sizes[worst]} bytes"


def test_hand_built_state_round_trips() -> None:
    intent = np.linspace(-1, 1, INTENT_DIM, dtype=np.float32)
    state = SessionState(
        user_id="ünïcode-user",
        partition=3,
        last_offset=123_456_789_012,
        first_ts=1,
        last_ts=2**53,
        counts=[5, 4, 3, 2, 1],
        recent=[("p1", 0), ("p2", 4)],
        categories={"a.b": 1.2345, "c": 0.01},
        brands={"x": 3.0},
        price_bands={"0-1": 0.5},
        cart_categories=["a.b", "z"],
        last_query='say "hi"\n',
        intent_half=to_half(intent),
        regen_intent_half=to_half(-intent),
        version=7,
        last_regen_ts=99,
        last_reason="search",
        drift_pending=True,
    )
    assert SessionState.from_bytes(state.to_bytes()) == state
    assert SessionState.from_bytes(SessionState().to_bytes()) == SessionState()


def test_half_precision_vectors() -> None:
    v = np.random.default_rng(0).standard_normal(INTENT_DIM).astype(np.float32)
    raw = to_half(v)
    assert len(raw) == 2 * INTENT_DIM
    back = from_half(raw)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, v, rtol=1e-3, atol=1e-3)
    assert to_half(back) == raw  # a stored vector is a fixed point


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, 255])
def test_wrong_format_version_is_rejected(version: int) -> None:
    data = bytearray(SessionState(user_id="u").to_bytes())
    assert data[0] == FORMAT_VERSION
    data[0] = version
    with pytest.raises(ValueError, match=f"format {version}"):
        SessionState.from_bytes(bytes(data))


def test_header_carries_body_length() -> None:
    data = SessionState(user_id="u" * 50).to_bytes()
    version, n = struct.unpack_from("<BH", data)
    assert version == FORMAT_VERSION
    assert len(data) == 3 + n + 2 * 2 * INTENT_DIM
