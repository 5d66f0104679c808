"""``vitrine``: the command line of the session worker and its tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streams.exceptions import VitrineError
from streams.settings import Settings

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _speed(text: str) -> float:
    """``max`` (as fast as possible), ``realtime``, or a factor such as ``10`` (10x real time)."""
    if text == "max":
        return 0.0
    if text == "realtime":
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be max, realtime or a number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("speed factor must be positive")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vitrine",
        description="Real-time storefront personalisation on Kafka. Settings come from VITRINE_* environment "
        "variables (and KAFKA_BOOTSTRAP_SERVERS); see README.md.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "worker",
        help="run the session worker (Faust agent, sessions table, web endpoints)",
        description="Consume the clickstream, keep per-session state in a changelog-backed table, "
        "publish regeneration requests, and serve /livez, /readyz and /metrics on VITRINE_WEB_PORT.",
    )

    sub.add_parser(
        "topics",
        help="create the clickstream, regeneration and dead-letter topics if missing",
        description="Idempotent: existing topics are left as they are.",
    )

    b = sub.add_parser(
        "broker",
        help="run a local single-node Kafka broker (KRaft) until interrupted",
        description="Fetches Apache Kafka from Maven Central once, then starts it on 127.0.0.1.",
    )
    b.add_argument("--data-dir", type=Path, default=Path("var/kafka"), help="log dir of the broker (wiped)")

    r = sub.add_parser(
        "replay",
        help="stream an event log into the clickstream topic",
        description="Formats: REES46 CSV, UCI Online Retail II CSV(.gz), the project's JSONL. "
        "Events are keyed by session; per-session order is preserved.",
    )
    r.add_argument("path", type=Path, help="event log file")
    r.add_argument("--format", choices=["rees46", "online-retail", "jsonl"], help="default: from the file's header")
    r.add_argument("--speed", type=_speed, default=0.0, help="max (default), realtime, or a factor like 10")
    r.add_argument("--repeat", type=int, default=1, help="replay the log N times with distinct session ids")
    r.add_argument("--limit", type=int, help="stop after this many events")

    s = sub.add_parser(
        "simulate",
        help="fold a log offline through the trigger policy and report rates",
        description="No Kafka: the worker's own state and trigger code over a file, to tune "
        "VITRINE_TRIGGER_* settings. Prints regeneration rates per reason and state sizes.",
    )
    s.add_argument("path", type=Path)
    s.add_argument("--format", choices=["rees46", "online-retail", "jsonl"])

    e = sub.add_parser(
        "eval",
        help="offline replay evaluation of traditional storefront strategies",
        description="Replays a time-ordered log and scores the page each baseline strategy would show "
        "(popularity, category affinity, co-visitation, session-kNN, own history / re-buy) against what the "
        "shopper does next: hit rate, NDCG, coverage and diversity with bootstrap intervals. No Kafka.",
    )
    e.add_argument("path", type=Path, help="REES46 CSV, Online Retail II CSV(.gz) or the project's JSONL")
    e.add_argument("--format", choices=["rees46", "online-retail", "jsonl"], help="default: from the file's header")
    e.add_argument("--k", type=_positive, default=12, help="page size (default 12)")
    e.add_argument("--out", type=Path, help="write the Markdown report here (e.g. docs/eval/rees46.md)")
    e.add_argument("--limit", type=_positive, help="evaluate only the first N events of the log")
    e.add_argument(
        "--cutoff",
        help="score from this UTC date on (YYYY-MM-DD); earlier events only train "
        "(default: all events on clickstreams, 2010-09-01 on Online Retail)",
    )
    e.add_argument("--resamples", type=_positive, default=1000, help="bootstrap resamples (default 1000)")

    d = sub.add_parser(
        "demo",
        help="local broker + worker + replay of real data, printing what the worker asks for",
        description="Starts a Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the session "
        "worker, replays the REES46 log and prints regeneration requests as they arrive.",
    )
    d.add_argument("--data", type=Path, default=DEFAULT_DATA / "rees46" / "2019-Oct-head.csv")
    d.add_argument("--speed", type=_speed, default=0.0)
    d.add_argument("--show", type=int, default=12, help="how many requests to print in full")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return _run(args, settings)
    except ValidationError as exc:
        parser.exit(2, f"vitrine: invalid settings:\n{exc}\n")
    except (VitrineError, KafkaError) as exc:
        parser.exit(1, f"vitrine: error: {exc}\n")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "worker":
        from streams.worker import run_worker

        run_worker(settings)
    elif args.command == "topics":
        from streams.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    elif args.command == "broker":
        from streams.local_kafka import LocalKafka

        with LocalKafka(args.data_dir) as kafka:
            print(f"Kafka is up: export KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}  (Ctrl-C stops it)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                kafka.wait()
    elif args.command == "replay":
        from streams.replay import replay
        from streams.replay_sources import SourceFormat, read_source

        fmt = SourceFormat(args.format) if args.format else None
        log = read_source(args.path, fmt, repeat=args.repeat, limit=args.limit)
        summary = asyncio.run(replay(log.records, settings, speed=args.speed, skipped=log.skipped))
        print("\n".join(summary.lines()))
    elif args.command == "simulate":
        from streams.simulate import simulate

        print(simulate(args.path, args.format, settings))
    elif args.command == "eval":
        from streams.evaluation.cli import run_eval

        print(run_eval(args))
    elif args.command == "demo":
        from streams.demo import run_demo

        return run_demo(settings, data=args.data, speed=args.speed, show=args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
