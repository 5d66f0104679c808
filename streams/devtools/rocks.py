"""A RocksDB database of session states read as a mapping, as Faust's RocksDB store reads a partition's database
(rocksdict, values through the session codec): the walks of ``streams.worker.scan`` tested and measured on a
real database without a Faust app around it."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, MutableMapping
from pathlib import Path
from typing import cast

from rocksdict import Rdict

from streams.worker.state import SessionState


class RocksStates(MutableMapping[bytes, SessionState]):
    def __init__(self, path: Path) -> None:
        self.db = Rdict(str(path))

    def close(self) -> None:
        self.db.close()

    def __getitem__(self, key: bytes) -> SessionState:
        raw = self.db.get(key)
        if raw is None:
            raise KeyError(key)
        return SessionState.from_bytes(cast(bytes, raw))

    def __setitem__(self, key: bytes, state: SessionState) -> None:
        self.db[key] = state.to_bytes()

    def __delitem__(self, key: bytes) -> None:
        del self.db[key]

    def __iter__(self) -> Iterator[bytes]:
        return (cast(bytes, key) for key in self.db.keys())  # noqa: SIM118 - an Rdict iterates its items

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> ItemsView[bytes, SessionState]:
        return _Snapshot(self)


class _Snapshot(ItemsView[bytes, SessionState]):
    """One RocksDB iterator over keys and values, as Faust's store walks a database: what it yields is the database
    as it was when the iterator opened (a key-by-key ``self[key]`` would read every value fresh)."""

    _mapping: RocksStates

    def __iter__(self) -> Iterator[tuple[bytes, SessionState]]:
        for key, raw in self._mapping.db.items():
            yield cast(bytes, key), SessionState.from_bytes(cast(bytes, raw))
