"""``vitrine``: the command line of the session worker and its tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streams.contracts.errors import VitrineError
from streams.runtime.settings import Settings, describe_error

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REES46_HEAD = DEFAULT_DATA / "rees46" / "2019-Oct-head.csv"  # the default log of every command that takes one


def _writable(path: Path, *, directory: bool) -> Path:
    """Refuse an output path that cannot be written before any expensive work starts (a catalog build or a
    training run that fails on its last step wastes its whole run)."""
    probe = path if directory else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {probe} is not a directory")
    if not directory and path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, a file path is needed")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path}: cannot write under {probe} ({exc.strerror})") from exc
    return path


def output_dir(value: str) -> Path:
    return _writable(Path(value), directory=True)


def output_file(value: str) -> Path:
    return _writable(Path(value), directory=False)


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
        "generator",
        help="run the storefront generator (requests in, storefront updates out)",
        description="Consume regeneration requests in micro-batches, plan each page with the student model "
        "(or the catalog teacher when no model loads), retrieve products from Qdrant, fuse with the ranker "
        "signals in the request, and publish to VITRINE_STOREFRONT_TOPIC. Follows VITRINE_CATALOG_UPDATES_TOPIC "
        "for price and stock and VITRINE_MERCH_RULES_TOPIC for merchandising rules. Serves /livez, /readyz and "
        "/metrics on VITRINE_WEB_PORT.",
    )

    sub.add_parser(
        "api",
        help="serve storefronts over HTTP and the live preview page",
        description="Consume VITRINE_STOREFRONT_TOPIC into a changelog-backed table (highest version per session) "
        "and serve GET /storefronts/{session_id} (ETag, 304, 404 for an unknown session, forwarded to the instance "
        "that owns the session's partition), the live preview page /preview, and /livez, /readyz (after table "
        "recovery) and /metrics on VITRINE_WEB_PORT. Titles and prices come from VITRINE_CATALOG_DIR when set.",
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
    b.add_argument("--data-dir", type=output_dir, default=Path("var/kafka"), help="log dir of the broker (wiped)")

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
    e.add_argument("--out", type=output_file, help="write the Markdown report here (e.g. docs/eval/rees46.md)")
    e.add_argument("--limit", type=_positive, help="evaluate only the first N events of the log")
    e.add_argument(
        "--cutoff",
        help="score from this UTC date on (YYYY-MM-DD); earlier events only train "
        "(default: all events on clickstreams, 2010-09-01 on Online Retail)",
    )
    e.add_argument("--resamples", type=_positive, default=1000, help="bootstrap resamples (default 1000)")
    e.add_argument("--catalog", type=Path, help="catalog dir: adds the teacher cascade (fused) rows")
    e.add_argument("--model-dir", type=Path, help="student model dir: adds the student cascade row (with --catalog)")
    e.add_argument("--student-sample", type=float, help="share of sessions/customers the student row scores (0-1]")
    e.add_argument(
        "--tune",
        type=float,
        metavar="FRACTION",
        help="with --catalog: grid-search fusion weights on the earliest FRACTION of the log's events, report "
        "them scored on the rest (writes --out)",
    )
    e.add_argument(
        "--ranker",
        type=Path,
        help="with --catalog: a learned ranker dir (vitrine train-ranker) adds the teacher cascade (learned ranker) "
        "row; only positions at or after its training split are scored (every row)",
    )

    tr = sub.add_parser(
        "train-ranker",
        help="train the learned fusion (LightGBM LambdaMART) on the earlier part of a log's replay",
        description="Replays the log under the evaluation's protocol up to the split (clickstreams: the earliest "
        "FRACTION of the events; Online Retail: the report's cutoff), collects every placement's candidates and "
        "features from the generator's own assembly, and writes ranker.txt and ranker_card.json to --out.",
    )
    tr.add_argument("path", type=Path, help="REES46 CSV or Online Retail II CSV(.gz)")
    tr.add_argument("--format", choices=["rees46", "online-retail", "jsonl"], help="default: from the file's header")
    tr.add_argument("--catalog", type=Path, required=True, help="the catalog dir the evaluation uses")
    tr.add_argument("--out", type=output_dir, required=True, help="model dir, e.g. models/ranker/rees46")
    tr.add_argument("--fraction", type=float, default=0.6, help="clickstreams: share of events to train on (0.6)")
    tr.add_argument("--sample", type=float, default=1.0, help="hash share of sessions/customers to train on (1)")

    d = sub.add_parser(
        "demo",
        help="local broker + catalog + worker + generator + replay of real data, printing storefronts",
        description="Builds the catalog from the log on the first run (exporting the embedding model), starts a "
        "Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the session worker and the generator, replays the "
        "REES46 log and prints a sample of the storefronts published, with themes, keywords and products.",
    )
    d.add_argument("--data", type=Path, default=REES46_HEAD)
    d.add_argument("--speed", type=_speed, default=0.0)
    d.add_argument("--show", type=int, default=8, help="how many storefronts to print in full")

    c = sub.add_parser(
        "catalog",
        help="build the product catalog: products, embeddings, keyword vocabulary, Qdrant collection",
        description="Reads products from REES46 events, Online Retail II invoices and/or a product file "
        "(CSV or JSONL: product_id,title,category,brand,price[,in_stock]), embeds them with the ONNX embedder "
        "(VITRINE_EMBEDDER_DIR, exported first if missing), derives the keyword vocabulary, writes the artifacts "
        "and fills the Qdrant collection (VITRINE_QDRANT_URL, or local mode in OUT/qdrant). "
        "Without sources, the REES46 sample from the shared data is used.",
    )
    c.add_argument("--rees46", type=Path, action="append", default=[], help="REES46 event CSV")
    c.add_argument("--online-retail", type=Path, action="append", default=[], help="Online Retail II CSV(.gz)")
    c.add_argument("--products", type=Path, action="append", default=[], help="product file (CSV or JSONL)")
    c.add_argument(
        "--out", type=output_dir, default=Path("var/catalog"), help="artifacts directory (default var/catalog)"
    )
    c.add_argument("--limit", type=_positive, help="at most N products from each source")

    x = sub.add_parser(
        "export-embedder",
        help="export all-MiniLM-L6-v2 to ONNX for the runtime embedder (needs the train extra)",
        description="Writes model.onnx (pooling and normalisation inside), tokenizer.json and embedder_card.json, "
        "after checking the export against sentence-transformers.",
    )
    x.add_argument("--out", type=output_dir, help="target directory (default VITRINE_EMBEDDER_DIR, var/models/minilm)")

    t = sub.add_parser(
        "train-student",
        help="distil the catalog teacher into the ONNX student (needs the train extra)",
        description="Folds the log through the session tracker, labels each regeneration context with the "
        "offline catalog teacher, trains a tokenizer and a small T5, exports it with optimum-onnx (fp32, int8/, "
        "fp16), checks ONNX against PyTorch and scores the student against the teacher on the later part of the "
        "log. Intermediate files go to var/student; the model card records the numbers.",
    )
    t.add_argument(
        "--catalog",
        type=Path,
        action="append",
        help="catalog artifacts, one per --data, in the same order (default VITRINE_CATALOG_DIR or var/catalog)",
    )
    t.add_argument(
        "--data",
        type=Path,
        action="append",
        help="event log of a shop; repeat for one model over several shops (default the REES46 head)",
    )
    t.add_argument("--out", type=output_dir, help="model directory (default VITRINE_MODEL_DIR, models/student)")
    t.add_argument("--work-dir", type=output_dir, help="dataset, tokenizer, torch weights (default var/student)")
    t.add_argument("--steps", type=_positive, help="training steps (default 1000; --quick: 40)")
    t.add_argument(
        "--quick", action="store_true", help="tiny model, few requests and steps (default dirs under var/student-quick)"
    )
    t.add_argument("--init-from", type=Path, help="continue from a local PyTorch checkpoint directory")
    t.add_argument("--fp16-in-model-dir", action="store_true", help="write fp16/ into the model dir (else work dir)")
    t.add_argument(
        "--teacher",
        choices=["catalog", "openai"],
        default="catalog",
        help="who labels the contexts: the catalog rules, or an OpenAI-compatible endpoint "
        "(VITRINE_TEACHER_BASE_URL, _MODEL, _API_KEY; replies cached under the work dir)",
    )

    t.add_argument(
        "--outcomes",
        action="store_true",
        help="lead each training keyword target with the candidates nearest to the new products the session "
        "touched next (before the shop's test split), then the teacher's",
    )
    t.add_argument(
        "--teacher-events",
        choices=["none", "training"],
        default="none",
        help="what the labelling catalog teacher counts category co-occurrence from: none, as the generator builds "
        "it when it serves (the default: the student learns the choices it can make from its context), or the "
        "shop's training events (themes then name categories the context does not show)",
    )

    q = sub.add_parser(
        "teachers",
        help="compare the catalog teacher's labels with an OpenAI-compatible teacher's (needs the train extra)",
        description="Labels the same held-out regeneration requests with both teachers and judges every "
        "placement with the generator's quality filter.",
    )
    q.add_argument("--catalog", type=Path, help="catalog artifacts (default VITRINE_CATALOG_DIR or var/catalog)")
    q.add_argument("--data", type=Path, default=REES46_HEAD, help="event log")
    q.add_argument("--requests", type=_positive, default=50, help="held-out requests to label (4 placements each)")
    q.add_argument("--work-dir", type=output_dir, default=Path("var/teachers"), help="reply cache")
    q.add_argument("--out", type=output_file, help="also write the Markdown report here")
    ex = sub.add_parser(
        "experiment",
        help="experiment analysis: `vitrine experiment report`",
        description="Offline analysis of the arms the generator assigns (salted by VITRINE_EXPERIMENT_ID).",
    )
    ex_sub = ex.add_subparsers(dest="experiment_command", required=True, metavar="SUBCOMMAND")
    er = ex_sub.add_parser(
        "report",
        help="per arm: cart adds per page view and per session with 95%% intervals; lift over control",
        description="Joins exposures (storefront updates) with what each session did afterwards (cart adds, "
        "purchases) and prints, per arm, cart adds per page view and per session with 95%% cluster-bootstrap "
        "intervals, and each treatment's lift over control with its interval. Without files, reads "
        "VITRINE_STOREFRONT_TOPIC and VITRINE_CLICKSTREAM_TOPIC from the start to their current end.",
    )
    er.add_argument("--exposures", type=Path, help="JSONL of storefront updates (default: the storefront topic)")
    er.add_argument("--events", type=Path, help="event log, any replay format (default: the clickstream topic)")
    er.add_argument("--format", choices=["rees46", "online-retail", "jsonl"], help="of --events; default: detected")
    er.add_argument(
        "--experiment", help="experiment id to read out (default VITRINE_EXPERIMENT_ID; `all`: every update)"
    )
    er.add_argument("--resamples", type=_positive, default=1000, help="bootstrap resamples (default 1000)")

    sc = sub.add_parser(
        "schemas",
        help="write the JSON Schemas of the wire formats (clickstream, regeneration, storefront, catalog)",
        description="Generated from the models, so they always describe what the code accepts and emits. "
        "--check exits 1 when the files on disk differ from the models (as CI does).",
    )
    sc.add_argument("--out", type=Path, default=Path("schemas"), help="directory (default schemas/)")
    sc.add_argument("--check", action="store_true", help="compare instead of writing")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return _run(args, settings)
    except ValidationError as exc:
        parser.exit(2, f"vitrine: invalid settings: {describe_error(exc)}\n")
    except (VitrineError, KafkaError) as exc:
        parser.exit(1, f"vitrine: error: {exc}\n")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "worker":
        from streams.worker.app import run_worker

        run_worker(settings)
    elif args.command == "generator":
        from streams.generator.app import run_generator

        run_generator(settings)
    elif args.command == "api":
        from streams.api.app import run_api

        run_api(settings)
    elif args.command == "topics":
        from streams.runtime.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    elif args.command == "broker":
        from streams.devtools.local_kafka import LocalKafka

        with LocalKafka(args.data_dir) as kafka:
            print(f"Kafka is up: export KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}  (Ctrl-C stops it)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                kafka.wait()
    elif args.command == "replay":
        from streams.datasets.readers import SourceFormat, read_source
        from streams.devtools.replay import replay

        fmt = SourceFormat(args.format) if args.format else None
        log = read_source(args.path, fmt, repeat=args.repeat, limit=args.limit)
        summary = asyncio.run(replay(log.records, settings, speed=args.speed, skipped=log.skipped))
        print("\n".join(summary.lines()))
    elif args.command == "simulate":
        from streams.worker.simulate import simulate

        print(simulate(args.path, args.format, settings))
    elif args.command == "eval":
        from streams.evaluation.cli import run_eval

        print(run_eval(args))
    elif args.command == "train-ranker":
        from streams.evaluation.cli import run_train_ranker

        print(run_train_ranker(args))
    elif args.command == "demo":
        from streams.devtools.demo import run_demo

        return run_demo(settings, data=args.data, speed=args.speed, show=args.show)
    elif args.command == "catalog":
        from onnx_export.embedder_export import ensure_embedder
        from streams.catalog.build import CatalogSource, build_catalog
        from streams.catalog.products import ProductSource

        sources = [
            *(CatalogSource(ProductSource.REES46, path) for path in args.rees46),
            *(CatalogSource(ProductSource.ONLINE_RETAIL, path) for path in args.online_retail),
            *(CatalogSource(ProductSource.FILE, path) for path in args.products),
        ] or [CatalogSource(ProductSource.REES46, REES46_HEAD)]
        built = build_catalog(
            sources,
            args.out,
            settings,
            limit=args.limit,
            progress=sys.stderr.isatty(),
            prepare_embedder=ensure_embedder,
        )
        print("\n".join(built.lines()))
    elif args.command == "export-embedder":
        from onnx_export.embedder_export import export_embedder

        model = export_embedder(args.out or settings.catalog.embedder_dir)
        print(f"exported {model} (card: {model.parent / 'embedder_card.json'})")
    elif args.command == "train-student":
        logs = args.data or [REES46_HEAD]
        catalogs = args.catalog or [settings.catalog.catalog_dir or Path("var/catalog")]
        if len(catalogs) != len(logs):
            raise VitrineError(f"train-student: {len(logs)} --data but {len(catalogs)} --catalog; give one each")
        from onnx_export.pipeline import PipelineOptions, Shop, run_pipeline

        opts = PipelineOptions(
            shops=tuple(Shop(log, catalog) for log, catalog in zip(logs, catalogs, strict=True)),
            # A smoke run must never overwrite the real model: it gets its own directories.
            out_dir=args.out
            or (Path("var/student-quick/model") if args.quick else settings.generator.model_dir)
            or Path("models/student"),
            work_dir=args.work_dir or Path("var/student-quick" if args.quick else "var/student"),
            steps=args.steps,
            quick=args.quick,
            init_from=args.init_from,
            fp16_in_out_dir=args.fp16_in_model_dir,
            teacher=args.teacher,
            outcomes=args.outcomes,
            teacher_events=args.teacher_events,
            command=["vitrine", *sys.argv[1:]],
        )
        run_pipeline(opts, settings)
    elif args.command == "teachers":
        from onnx_export.teacher_compare import run_comparison

        report = run_comparison(
            args.catalog or settings.catalog.catalog_dir or Path("var/catalog"),
            args.data,
            settings,
            requests=args.requests,
            work_dir=args.work_dir,
            command=" ".join(["vitrine", *sys.argv[1:]]),
        )
        print(report, end="")
        if args.out:
            args.out.write_text(report)
    elif args.command == "experiment":
        from streams.datasets.readers import SourceFormat
        from streams.experiments.readout import readout
        from streams.experiments.sources import load_inputs

        inputs = load_inputs(
            settings,
            exposures=args.exposures,
            events=args.events,
            events_format=SourceFormat(args.format) if args.format else None,
        )
        experiment = args.experiment or settings.generator.experiment_id
        result = readout(
            inputs.exposures,
            inputs.events,
            experiment_id=None if experiment == "all" else experiment,
            resamples=args.resamples,
        )
        print("\n".join(result.lines()))
        print(f"\n{len(inputs.exposures)} storefront updates, {len(inputs.events)} events read", end="")
        print("".join(f"; skipped {n} {why}" for why, n in sorted(inputs.skipped.items())))
        if not result.arms:
            print(f"no exposures of experiment {experiment!r} (--experiment all reads every update)")
            return 1
    elif args.command == "schemas":
        from streams.contracts.schemas import stale_schemas, write_schemas

        if args.check:
            stale = stale_schemas(args.out)
            print("schemas up to date" if not stale else "stale: " + ", ".join(stale) + " (run vitrine schemas)")
            return 1 if stale else 0
        print("\n".join(f"wrote {path}" for path in write_schemas(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
