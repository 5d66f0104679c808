"""A table store with the values written since the last flush kept in front of it, as objects.

Why: on RocksDB every read of a Faust store is a lookup and a decode, and the session worker mostly reads back
what it wrote moments ago (a session's next event, the signals of products just seen). Writes still go straight
to the store, so the store holds exactly what it held without the cache; the cache only answers reads of keys
written since ``forget``, which the worker calls at each changelog flush and when a rebalance completes (a
changelog restore writes the store behind the cache's back). Not a library: Faust has no read cache for its
stores, and this one has to follow the worker's flushes.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, MutableMapping
from typing import TypeVar, overload

V = TypeVar("V")
D = TypeVar("D")


class WriteThroughCache(MutableMapping[bytes, V]):
    """``store`` (a Faust table's data, or any mapping), reads served from the values written since ``forget``."""

    def __init__(self, store: MutableMapping[bytes, V]) -> None:
        self.store = store
        self.recent: dict[bytes, V] = {}

    def __getitem__(self, key: bytes) -> V:
        try:
            return self.recent[key]
        except KeyError:
            return self.store[key]

    @overload
    def get(self, key: bytes) -> V | None: ...
    @overload
    def get(self, key: bytes, default: V | D) -> V | D: ...
    def get(self, key: bytes, default: V | D | None = None) -> V | D | None:
        value = self.recent.get(key)
        return value if value is not None else self.store.get(key, default)

    def __setitem__(self, key: bytes, value: V) -> None:
        self.store[key] = value
        self.recent[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.recent.pop(key, None)
        del self.store[key]

    def __contains__(self, key: object) -> bool:
        return key in self.recent or key in self.store

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)

    def items(self) -> ItemsView[bytes, V]:
        """The store's own scan (one pass over its entries, not a lookup per key)."""
        return self.store.items()

    def forget(self) -> None:
        """Drop the kept values: after a flush (bounding the memory) or a write behind the cache's back."""
        self.recent.clear()
