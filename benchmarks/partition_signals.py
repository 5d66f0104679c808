"""How partition-local ranker signals thin out as the partition count grows, on the same traffic.

    python -m benchmarks.partition_signals --partitions 1,4,8,16

Sessions go to partitions as Kafka's default partitioner puts them (murmur2 of the session id), and each
partition's events are folded through the worker's own step with a ranker of its own, as a worker holds
them. Reported per partition count, means over partitions: the overlap of the partition's top-24 popular
list with the one of all traffic (one partition), and the share of the co-visit neighbours (of products
with any) that the partition's table holds. What the figures follow is events per partition (within the
popularity half-life), not the partition count itself.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from aiokafka.partitioner import murmur2

from streams.cli import REES46_HEAD
from streams.datasets.readers import ReplayRecord, read_source
from streams.runtime.settings import Settings
from streams.worker.fold import fold
from streams.worker.intent import load_intent_space
from streams.worker.ranker import RankerSignals, split_key
from streams.worker.sessions import SessionTracker


def partition_of(key: bytes, n: int) -> int:
    """Kafka's default partitioner for a keyed message."""
    return (murmur2(key) & 0x7FFFFFFF) % n


def signals(records: list[ReplayRecord], settings: Settings) -> RankerSignals:
    """One partition's ranker after folding ``records`` through the worker's step."""
    ranker = RankerSignals(
        {}, half_life_s=settings.worker.ranker_half_life_s, per_list=settings.worker.ranker_candidates
    )
    tracker = SessionTracker.from_settings(settings, intent_space=load_intent_space(None))
    fold(records, tracker, max_event_bytes=settings.worker.max_event_bytes, ranker=ranker)
    return ranker


def neighbours(ranker: RankerSignals) -> dict[str, set[str]]:
    return {split_key(k)[1]: set(s.neighbours) for k, s in ranker.store.items() if s.neighbours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REES46_HEAD)
    ap.add_argument("--partitions", default="1,4,8,16")
    args = ap.parse_args()

    settings = Settings()
    records = read_source(args.data).records
    now = max(r.ts or 0 for r in records)
    n = settings.worker.ranker_candidates
    whole = signals(records, settings)
    top = {p for p, _ in whole.popular(0, n, now)}
    all_neighbours = neighbours(whole)
    print(f"{len(records):,} events; top-{n} popular list and co-visit neighbours against one partition")
    print("partitions  events/partition  popular overlap@24  co-visit neighbours kept")
    for count in (int(p) for p in args.partitions.split(",")):
        overlaps, kept = [], []
        for part in range(count):
            mine = [r for r in records if partition_of(r.key or b"", count) == part]
            ranker = signals(mine, settings)
            overlaps.append(len(top & {p for p, _ in ranker.popular(0, n, now)}) / n)
            local = neighbours(ranker)
            kept += [len(local.get(p, set())) / len(ns) for p, ns in all_neighbours.items()]
        print(
            f"{count:>10}  {len(records) / count:>16,.0f}  {statistics.mean(overlaps):>18.2f}  "
            f"{statistics.mean(kept):>24.2f}"
        )


if __name__ == "__main__":
    main()
