"""The ranker's top-list rebuilds in the worker's per-event step, with 4 partitions as a worker holds them.

    python -m benchmarks.ranker_index --repeat 4 --rounds 3

Folds REES46 (``--repeat`` passes, distinct session ids) through the worker's own step
(``streams.worker.sessions.WorkerStep``), each session on the partition Kafka's default partitioner gives
it, with one request's candidate lists read per request as the worker does. Two rankers alternate, round
after round: the default (top lists rebuilt every 500 updates of a partition) and one that never rebuilds
(``stale_after=10**9``, the floor: lists go stale, so it is a measuring stick, not an option). ``--store
dict`` keeps the signals as objects, the cheapest store there is; ``--store encoded`` keeps them as bytes and
decodes on every read and encodes on every write, as the worker's RocksDB-backed table does (RocksDB's own
lookups not included). Run it on two commits to compare a change to the rebuild against its baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from aiokafka.partitioner import murmur2

from streams.cli import DEFAULT_DATA
from streams.contracts.events import decode_event
from streams.datasets.readers import ReplayRecord, read_source
from streams.runtime.settings import Settings
from streams.worker.intent import load_intent_space
from streams.worker.ranker import ProductSignal, RankerSignals
from streams.worker.sessions import SessionTracker, WorkerStep
from streams.worker.state import SessionState
from streams.worker.trigger import TriggerPolicy

PARTITIONS = 4


class EncodedStore(MutableMapping[bytes, ProductSignal]):
    """Signals kept encoded, decoded on each read: what a table over RocksDB costs in Python."""

    def __init__(self) -> None:
        self.raw: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> ProductSignal:
        return ProductSignal.from_bytes(self.raw[key])

    def __setitem__(self, key: bytes, value: ProductSignal) -> None:
        self.raw[key] = value.to_bytes()

    def __delitem__(self, key: bytes) -> None:
        del self.raw[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def fold_us_per_event(records: list[ReplayRecord], settings: Settings, stale_after: int, store: str) -> float:
    ranker = RankerSignals(
        {} if store == "dict" else EncodedStore(),
        half_life_s=settings.worker.ranker_half_life_s,
        per_list=settings.worker.ranker_candidates,
        stale_after=stale_after,
    )
    tracker = SessionTracker(
        intent_space=load_intent_space(None),
        policy=TriggerPolicy.from_settings(settings),
        half_life_s=settings.worker.affinity_half_life_s,
    )
    step = WorkerStep(tracker, ranker)
    events = [decode_event(r.value, max_bytes=settings.worker.max_event_bytes, key=r.key or b"") for r in records]
    partitions = [(murmur2(r.key or b"") & 0x7FFFFFFF) % PARTITIONS for r in records]
    states: dict[str, SessionState | None] = {}
    start = time.perf_counter()
    for offset, (event, partition) in enumerate(zip(events, partitions, strict=True)):
        done = step.apply(states.get(event.session_id), event, partition=partition, offset=offset)
        states[event.session_id] = done.state
    return (time.perf_counter() - start) / len(events) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA / "rees46" / "2019-Oct-head.csv")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--store", choices=["dict", "encoded"], default="dict")
    args = ap.parse_args()
    settings = Settings()
    records = read_source(args.data, repeat=args.repeat).records
    default, floor = [], []
    for _ in range(args.rounds):
        default.append(fold_us_per_event(records, settings, stale_after=500, store=args.store))
        floor.append(fold_us_per_event(records, settings, stale_after=10**9, store=args.store))
    print(f"{len(records):,} events, {PARTITIONS} partitions, {args.store} store, {args.rounds} rounds (µs an event)")
    print(f"  rebuild every 500 updates  {statistics.median(default):7.1f}  runs {[round(v) for v in default]}")
    print(f"  never rebuilt (floor)      {statistics.median(floor):7.1f}  runs {[round(v) for v in floor]}")
    print(f"  ratio                      {statistics.median(default) / statistics.median(floor):7.2f}")


if __name__ == "__main__":
    main()
