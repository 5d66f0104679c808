"""The framework's own ceiling: a Faust agent that only forwards each message to another topic.

Run by ``benchmarks.session_worker`` beside the raw aiokafka passthrough and the real worker, so
the report can tell the cost of Faust's per-message path from the cost of the session logic.
Writes ``<events> <seconds>`` to the result file once it has forwarded ``--events`` messages.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faust
from faust.types import StreamT

from streams.runtime.faust_app import quiet_worker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    args = ap.parse_args()

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        consumer_auto_offset_reset="earliest",
        producer_linger=0.01,
        stream_wait_empty=False,
        web_enabled=False,
        datadir=str(args.data_dir),
        autodiscover=False,
    )
    source = app.topic(args.source, key_serializer="raw", value_serializer="raw")
    sink = app.topic(args.sink, key_serializer="raw", value_serializer="raw")
    seen = 0
    start = 0.0

    @app.agent(source, concurrency=1)
    async def forward(stream: StreamT[bytes]) -> None:
        nonlocal seen, start
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)
            seen += 1
            if seen == 1:
                start = time.perf_counter()
            elif seen == args.events:
                await app.producer.flush()
                args.result.write_text(f"{seen - 1} {time.perf_counter() - start}")

    quiet_worker(app, "WARNING").execute_from_commandline()


if __name__ == "__main__":
    main()
