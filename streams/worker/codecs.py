"""Faust codecs for our table values, so changelogs carry our compact encodings."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from streams.worker.ranker import ProductSignal
from streams.worker.state import SessionState

SESSION_STATE_CODEC = "vitrine_session"
PRODUCT_SIGNAL_CODEC = "vitrine_signal"


class SessionStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        state: SessionState = obj
        return state.to_bytes()

    def _loads(self, s: bytes) -> Any:
        return SessionState.from_bytes(s)


class ProductSignalCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        signal: ProductSignal = obj
        return signal.to_bytes()

    def _loads(self, s: bytes) -> Any:
        return ProductSignal.from_bytes(s)


codecs.register(SESSION_STATE_CODEC, SessionStateCodec())
codecs.register(PRODUCT_SIGNAL_CODEC, ProductSignalCodec())
