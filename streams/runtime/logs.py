"""Structured logs: one JSON object per line, so log pipelines can filter by field."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import orjson

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class RateLimit(logging.Filter):
    """At most one record per (logger, message template) every ``interval_s`` from the noisy loggers.

    aiokafka logs every failed reconnect attempt at ERROR (aio-libs/aiokafka#496): a 15 s broker
    outage wrote 236,197 lines. The first of a burst passes; the next one to pass says how many were
    dropped in between (``suppressed``), so the count is never lost. The fast path's dropped-message
    warning is one per message, so it is limited too.
    """

    def __init__(
        self,
        interval_s: float = 10.0,
        prefixes: tuple[str, ...] = ("aiokafka", "kafka", "streams.runtime.faust_fastpath"),
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.prefixes = prefixes
        self._last: dict[tuple[str, object], float] = {}
        self._dropped: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.suppressed = dropped
        return True


def configure_logging(level: str, *, json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RateLimit())
    handler.setFormatter(
        JsonFormatter() if json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
