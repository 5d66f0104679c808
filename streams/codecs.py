"""The Faust codec for session states, so the changelog carries our compact encoding."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from streams.session_state import SessionState

SESSION_STATE_CODEC = "vitrine_session"


class SessionStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        state: SessionState = obj
        return state.to_bytes()

    def _loads(self, s: bytes) -> Any:
        return SessionState.from_bytes(s)


codecs.register(SESSION_STATE_CODEC, SessionStateCodec())
