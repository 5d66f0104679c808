"""Walking every session without stalling the worker.

Expiry and the session gauge read the whole table, which on RocksDB with hundreds of thousands of sessions is
seconds of decoding; done in one go on the event loop it holds back every event, flush and `/metrics` answer
meanwhile. So the walk goes in chunks and yields to the loop between them, and stops when a rebalance begins
(the partitions it walks may be leaving; the next run starts over).

What a walk may see changes under it. Faust's RocksDB store walks its partitions' databases one after the other,
each through an iterator that reads the database as it was when the walk reached it, so a state seen there may be
older than the session's last event: a session found idle is read again before it is called idle. A Python dict
(the memory store) cannot be iterated while it changes, so there the keys are copied first (references only) and
each state is read when it is checked. The store's dict of partition databases changes only in a rebalance, and the
walk stops as soon as one begins (the flag is set before the stores revoke); should it change anyway, the walk
ends there as if stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Container, Iterator, Mapping

from streams.worker.state import SessionState

CHUNK = 1_000  # states decoded between two yields: a few milliseconds of the loop


def _walk(store: Mapping[bytes, SessionState], copy_keys: bool) -> Iterator[tuple[bytes, SessionState | None]]:
    if copy_keys:
        return ((key, store.get(key)) for key in list(store.keys()))
    return iter(store.items())


async def idle_sessions(
    store: Mapping[bytes, SessionState],
    *,
    horizon_ms: int,
    owned: Callable[[], Container[int]],
    copy_keys: bool,
    stop: Callable[[], bool],
    chunk: int = CHUNK,
) -> AsyncIterator[tuple[bytes, SessionState]]:
    """Sessions last seen before ``horizon_ms`` in an ``owned()`` partition, as they are when yielded: act on one
    before awaiting anything, and it is still idle. ``copy_keys``: the store cannot be iterated while it changes.

    Each decoded state is let go at once (holding a chunk of them doubled the walk's time)."""

    def idle(state: SessionState | None, partitions: Container[int]) -> bool:
        return state is not None and state.last_ts < horizon_ms and state.partition in partitions

    partitions = owned()
    try:
        for walked, (key, seen) in enumerate(_walk(store, copy_keys), 1):
            if idle(seen, partitions):
                current = seen if copy_keys else store.get(key)  # a live walk may be older than the last event
                if current is not None and idle(current, partitions):
                    yield key, current
            if walked % chunk == 0:
                await asyncio.sleep(0)
                if stop():
                    return
                partitions = owned()
    except RuntimeError as exc:
        if not _changed_under(exc):
            raise  # otherwise the store's partitions changed under the walk: the next run starts over


async def count_keys(store: Mapping[bytes, object], *, stop: Callable[[], bool], chunk: int = 10 * CHUNK) -> int | None:
    """How many keys a store that can be iterated while it changes (RocksDB) holds, counted without decoding a
    value; None when a rebalance stopped the count."""
    n = 0
    try:
        for n, _ in enumerate(store.keys(), 1):
            if n % chunk == 0:
                await asyncio.sleep(0)
                if stop():
                    return None
    except RuntimeError as exc:
        if not _changed_under(exc):
            raise
        return None
    return n


def _changed_under(exc: RuntimeError) -> bool:
    """The dict an iteration walked changed size (Faust's RocksDB store walks its dict of partition databases)."""
    return "changed size during iteration" in str(exc)
