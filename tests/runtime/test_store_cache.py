"""The worker's read cache in front of a table store: the store ends the same, reads see the latest write."""

from __future__ import annotations

import random

from streams.runtime.store_cache import WriteThroughCache


def test_the_store_holds_what_it_would_without_the_cache() -> None:
    """One random run of writes, in-place updates, deletes and flushes, on a cached and a plain store."""
    rng = random.Random(3)
    plain: dict[bytes, list[int]] = {}
    backing: dict[bytes, list[int]] = {}
    cached = WriteThroughCache(backing)
    for step in range(5000):
        key = f"k{rng.randrange(40)}".encode()
        op = rng.random()
        if op < 0.6:  # read, update in place, write back (as observe and the step do)
            for store in (plain, cached):
                value = store.get(key) or []
                value.append(step)
                store[key] = value
        elif op < 0.7 and key in plain:
            del plain[key]
            del cached[key]
        elif op < 0.75:
            cached.forget()
        assert (key in cached) == (key in plain)
        assert cached.get(key) == plain.get(key)
    assert backing == plain and dict(cached.items()) == plain and len(cached) == len(plain)


def test_a_write_behind_the_cache_shows_only_after_forget() -> None:
    """A changelog restore writes the store directly: the worker forgets the cache when a rebalance completes."""
    backing: dict[bytes, str] = {}
    cached = WriteThroughCache(backing)
    cached[b"s"] = "written"
    backing[b"s"] = "restored"
    assert cached[b"s"] == "written"
    cached.forget()
    assert cached[b"s"] == "restored" and cached.get(b"missing", "none") == "none"


def test_reads_of_recent_writes_do_not_reach_the_store() -> None:
    class CountingStore(dict[bytes, int]):
        reads = 0

        def __getitem__(self, key: bytes) -> int:
            CountingStore.reads += 1
            return super().__getitem__(key)

        def get(self, key: bytes, default: object = None) -> object:  # type: ignore[override]
            CountingStore.reads += 1
            return super().get(key, default)

    cached = WriteThroughCache(CountingStore())
    cached[b"a"] = 1
    assert cached[b"a"] == 1 and cached.get(b"a") == 1 and CountingStore.reads == 0
    cached.forget()
    assert cached.get(b"a") == 1 and CountingStore.reads == 1
