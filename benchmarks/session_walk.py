"""How long a walk of every session holds the worker's event loop: the one-shot expiry scan the worker ran until
2026-12-07 against the chunked walk of ``streams.worker.scan``.

    python -m benchmarks.session_walk --sessions 400000 --runs 3

A RocksDB database (rocksdict, as Faust's store) is filled with ``--sessions`` real session states: REES46 folded
through the worker's step, each state copied under new session ids; ``--idle-share`` of them are idle (with a
30-minute TTL walked every 30 s, about 2% of the sessions cross the horizon between two walks). While each walk runs,
a ticker coroutine asks for the loop every millisecond, as the worker's events, flushes and ``/metrics`` do; the
longest wait it sees is the longest stall the walk caused. Reported per walk, median over ``--runs`` alternated
rounds: the walk's wall time, the longest stall, and the sessions found idle (the same for both).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from streams.cli import REES46_HEAD
from streams.datasets.readers import read_source
from streams.devtools.rocks import RocksStates
from streams.runtime.settings import Settings
from streams.worker.fold import fold
from streams.worker.intent import load_intent_space
from streams.worker.scan import idle_sessions
from streams.worker.sessions import SessionTracker
from streams.worker.state import SessionState

HORIZON = 1 << 62  # above every real timestamp; active copies are moved above it (see fill)


def real_states(data: Path) -> list[SessionState]:
    settings = Settings()
    tracker = SessionTracker.from_settings(settings, intent_space=load_intent_space(None))
    return list(
        fold(read_source(data).records, tracker, max_event_bytes=settings.worker.max_event_bytes).states.values()
    )


def fill(store: RocksStates, states: list[SessionState], n: int, idle_share: float) -> None:
    every = round(1 / idle_share)
    for i in range(n):
        state = states[i % len(states)]
        last_ts = state.last_ts if i % every == 0 else HORIZON + state.last_ts
        store.db[f"session-{i:09d}".encode()] = dataclasses.replace(state, partition=0, last_ts=last_ts).to_bytes()


async def one_shot(store: RocksStates) -> int:
    """The worker's expiry until 2026-12-07: every state decoded in one list comprehension on the loop."""
    return len([k for k, s in store.items() if s.last_ts < HORIZON and s.partition in {0}])


async def chunked(store: RocksStates) -> int:
    found = 0
    async for _ in idle_sessions(store, horizon_ms=HORIZON, owned=lambda: {0}, copy_keys=False, stop=lambda: False):
        found += 1
    return found


async def timed(walk: str, store: RocksStates) -> tuple[float, float, int]:
    """(wall s, longest loop stall s, idle sessions found)."""
    longest = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    found = await (one_shot(store) if walk == "one-shot" else chunked(store))
    wall = time.perf_counter() - started
    done.set()
    await tick
    return wall, longest, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REES46_HEAD)
    ap.add_argument("--sessions", type=int, default=400_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle-share", type=float, default=0.02)
    args = ap.parse_args()

    states = real_states(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        store = RocksStates(Path(tmp) / "sessions")
        try:
            fill(store, states, args.sessions, args.idle_share)
            mean_bytes = statistics.mean(len(s.to_bytes()) for s in states)
            print(
                f"{args.sessions:,} sessions in RocksDB ({len(states):,} real REES46 states, {mean_bytes:.0f} B mean), "
                f"{args.idle_share:.0%} idle"
            )
            results: dict[str, list[tuple[float, float, int]]] = {"one-shot": [], "chunked": []}
            for _ in range(args.runs):
                for walk in results:
                    results[walk].append(asyncio.run(timed(walk, store)))
        finally:
            store.close()
    print("walk       wall s (runs)              longest loop stall ms (runs)     idle found")
    for walk, rows in results.items():
        walls, stalls = [r[0] for r in rows], [r[1] * 1000 for r in rows]
        print(
            f"{walk:<9}  {statistics.median(walls):6.2f} ({' / '.join(f'{w:.2f}' for w in walls)})"
            f"    {statistics.median(stalls):8.1f} ({' / '.join(f'{s:.1f}' for s in stalls)})"
            f"    {rows[0][2]:,}"
        )


if __name__ == "__main__":
    main()
