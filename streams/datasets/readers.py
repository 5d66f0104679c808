"""Readers that turn event logs on disk into messages for the clickstream topic.

- REES46 CSV (``event_time, event_type, product_id, category_id, category_code, brand, price,
  user_id, user_session``): one event per row, ``user_session`` is the session; the category is
  ``category_code``, falling back to ``category_id`` when the code is empty.
- UCI Online Retail II CSV / CSV.GZ: each invoice line is a ``purchase`` of that stock code, the
  invoice is the session and the customer the user. The data has no taxonomy, so the category is
  the description's last word ("... T-LIGHT HOLDER" -> ``holder``), a crude but useful head noun.
  Cancellations (``C`` invoices) and lines without a positive quantity are skipped and counted.
- JSONL in the project's own event format: lines are sent verbatim (malformed ones too, so the
  worker's dead-letter path can be exercised end to end), keyed by ``session_id`` when readable.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TextIO

import orjson

from streams.contracts.events import ClickEvent
from streams.datasets.exceptions import ReplayError


class SourceFormat(StrEnum):
    REES46 = "rees46"
    ONLINE_RETAIL = "online-retail"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    key: bytes | None
    value: bytes
    ts: int | None


@dataclass(slots=True)
class SourceLog:
    records: list[ReplayRecord]
    skipped: Counter[str] = field(default_factory=Counter)


def detect_format(path: Path) -> SourceFormat:
    name = path.name.lower()
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        return SourceFormat.JSONL
    with open_text(path) as fh:
        header = fh.readline()
    if header.startswith("event_time,event_type"):
        return SourceFormat.REES46
    if header.startswith("Invoice,StockCode"):
        return SourceFormat.ONLINE_RETAIL
    raise ReplayError(f"{path}: cannot tell the format from its header {header.strip()[:80]!r}")


def read_source(path: Path, fmt: SourceFormat | None = None, *, repeat: int = 1, limit: int | None = None) -> SourceLog:
    """Load a log. CSV logs come time-ordered (stable, so same-timestamp rows keep file order) and can be
    repeated; JSONL is sent as written, byte for byte, so that malformed lines reach the worker."""
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt is SourceFormat.JSONL:
        if repeat != 1:
            raise ReplayError(f"{path}: --repeat needs a CSV log; JSONL lines are replayed verbatim")
        log = SourceLog(list(_read_jsonl(path)))
    else:
        reader = _rees46_events if fmt is SourceFormat.REES46 else _online_retail_events
        log = SourceLog([])
        events = sorted(reader(path, log.skipped), key=lambda e: e.ts)
        log.records = [ReplayRecord(e.session_id.encode(), e.to_json(), e.ts) for e in _repeat(events, repeat)]
    if limit is not None:
        log.records = log.records[:limit]
    return log


def _repeat(events: list[ClickEvent], times: int) -> Iterator[ClickEvent]:
    """Pass ``r`` gets its own session and event ids and follows pass ``r-1`` in time."""
    yield from events
    if not events or times <= 1:
        return
    span = events[-1].ts - events[0].ts + 1000
    for r in range(1, times):
        suffix = f"~r{r}"
        for e in events:
            yield e.model_copy(
                update={"session_id": e.session_id + suffix, "event_id": e.event_id + suffix, "ts": e.ts + r * span}
            )


def open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def head_noun(description: str) -> str | None:
    """Online Retail has no taxonomy: the description's last word stands in for its category (shared by the
    replay reader and the catalog, so events and products agree)."""
    words = description.split()
    return words[-1].lower() if words else None


@lru_cache(maxsize=8192)  # logs are time-ordered and timestamps repeat: strptime dominates otherwise
def _parse_time(text: str) -> int:
    dt = datetime.strptime(text.removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def rees46_category(row: dict[str, str]) -> str | None:
    """The taxonomy path, or the numeric ``category_id`` where the path is empty (97% of the cosmetics shop's
    rows): events and catalog products then share one category key, and no event loses its category."""
    return row.get("category_code") or row.get("category_id") or None


def _rees46_events(path: Path, skipped: Counter[str]) -> Iterator[ClickEvent]:
    with open_text(path) as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            try:
                yield ClickEvent(
                    event_id=f"{path.stem}:{line_no}",
                    session_id=row["user_session"],
                    user_id=row["user_id"] or None,
                    event_type=row["event_type"],  # type: ignore[arg-type]
                    product_id=row["product_id"],
                    price=float(row["price"]) if row["price"] else None,
                    category=rees46_category(row),
                    brand=row["brand"] or None,
                    ts=_parse_time(row["event_time"]),
                )
            except (ValueError, KeyError) as exc:
                skipped[f"invalid row: {type(exc).__name__}"] += 1


def _online_retail_events(path: Path, skipped: Counter[str]) -> Iterator[ClickEvent]:
    with open_text(path) as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            invoice = row["Invoice"]
            if invoice.startswith("C"):
                skipped["cancellation"] += 1
                continue
            try:
                if int(row["Quantity"]) <= 0:
                    skipped["non-positive quantity"] += 1
                    continue
                description = row["Description"].strip()
                customer = row["Customer ID"]
                yield ClickEvent(
                    event_id=f"{path.name.split('.')[0]}:{line_no}",
                    session_id=f"inv-{invoice}",
                    user_id=customer.removesuffix(".0") if customer else None,
                    event_type="purchase",
                    product_id=row["StockCode"],
                    price=float(row["Price"]),
                    category=head_noun(description),
                    ts=_parse_time(row["InvoiceDate"]),
                )
            except (ValueError, KeyError) as exc:
                skipped[f"invalid row: {type(exc).__name__}"] += 1


def _read_jsonl(path: Path) -> Iterator[ReplayRecord]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for raw_line in fh:
            line = raw_line.rstrip(b"\r\n")
            if not line.strip():
                continue
            key: bytes | None = None
            ts: int | None = None
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict):
                if isinstance(data.get("session_id"), str):
                    key = data["session_id"].encode()
                if isinstance(data.get("ts"), int):
                    ts = data["ts"]
            yield ReplayRecord(key, line, ts)
