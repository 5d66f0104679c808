"""``vitrine train-student``: dataset -> teacher labels -> tokenizer -> training -> ONNX export -> evaluation.

Everything between the raw log and the committed model directory, in one deterministic command.
Intermediate artifacts (examples, tokenizer, PyTorch weights) stay under ``work_dir`` (var/student);
only ONNX files, config, tokenizer and the model card go to ``out_dir``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.context import FORMAT_VERSION, PLACEMENTS, THEME_PREFIX
from models.embedder import Embedder
from models.student import Student
from models.teacher import Teacher
from models.teacher_catalog import CatalogTeacher
from onnx_export.dataset import (
    Cut,
    Example,
    build_examples,
    load_events,
    regen_cuts,
    split_time,
    with_outcomes,
    write_examples,
)
from onnx_export.evaluate import evaluate_student
from onnx_export.export import (
    FP16_DIR,
    INT8_DIR,
    KEEP_FILES,
    ONNX_FILES,
    convert_fp16,
    export_onnx,
    parity,
    quantize_int8,
)
from onnx_export.model_card import write_model_card
from onnx_export.teacher_openai import OpenAITeacher
from onnx_export.tokenizer import DEFAULT_VOCAB, TOKENIZER_FILE, to_transformers, train_tokenizer
from onnx_export.train import QUICK_SHAPE, StudentShape, TrainConfig, train_student
from streams.catalog.artifacts import Catalog
from streams.contracts.events import ClickEvent
from streams.runtime.settings import Settings

PARITY_EXAMPLES = 64
QUICK_CUTS = 240
# ``vitrine train-ranker`` trains on the earliest 60% of a clickstream's events and ``vitrine eval`` scores the rest
# (and never what the student trained on, by its card): holding out the same 40% keeps the reported range.
TEST_FRACTION = 0.4
# Training requests kept per shop, evenly over time: Online Retail alone folds to tens of thousands, and one shop
# must not drown the others in the one model.
MAX_TRAIN_REQUESTS = 2000


@dataclass(frozen=True, slots=True)
class Shop:
    """One event log and the catalog its keywords and products come from."""

    log_path: Path
    catalog_dir: Path

    @property
    def name(self) -> str:
        return f"{self.log_path.parent.name}/{self.log_path.name}"


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    shops: tuple[Shop, ...]
    out_dir: Path
    work_dir: Path = Path("var/student")
    steps: int | None = None
    quick: bool = False
    test_fraction: float = TEST_FRACTION
    max_train_requests: int = MAX_TRAIN_REQUESTS
    vocab_size: int = DEFAULT_VOCAB
    eval_limit: int = 800
    init_from: Path | None = None
    fp16_in_out_dir: bool = False
    teacher: str = "catalog"  # "catalog" (rules over the catalog) or "openai" (VITRINE_TEACHER_* endpoint)
    outcomes: bool = False  # keyword targets led by what the session touched next (training period only)
    # The catalog teacher's co-occurrence: "none" (as served) or "training" (the shop's training events).
    teacher_events: str = "none"
    command: list[str] = field(default_factory=lambda: list(sys.argv))


_COOCCURRENCE = {
    "training": ", co-occurrence counted from the training events",
    "none": ", co-occurrence from no events (as served)",
}


def _say(message: str) -> None:
    print(f"[train-student] {message}", flush=True)


def _thin(cuts: list[Cut], n: int) -> list[Cut]:
    """An even sample over time, so a quick run still has train and test requests."""
    step = max(1, len(cuts) // n)
    return cuts[::step][:n]


def catalog_teacher_for(catalog: Catalog, events: Sequence[ClickEvent], test_at: int) -> CatalogTeacher:
    """The rule teacher, with co-occurrence learned from the training period only."""
    return CatalogTeacher.build(
        keywords=catalog.keywords,
        products=((p.category, p.price) for p in catalog.products),
        events=(e for e in events if e.ts < test_at),
    )


def select_teacher(name: str, catalog_teacher: CatalogTeacher, settings: Settings, work_dir: Path) -> Teacher:
    """``catalog`` or ``openai``: any OpenAI-compatible endpoint from VITRINE_TEACHER_BASE_URL / _MODEL / _API_KEY,
    its replies cached under ``work_dir`` so a rerun costs no second call."""
    if name == "catalog":
        return catalog_teacher
    if name == "openai":
        return OpenAITeacher.from_settings(settings, cache_dir=work_dir / "teacher-cache")
    raise ValueError(f"unknown teacher {name!r} (catalog or openai)")


@dataclass(slots=True)
class ShopData:
    shop: Shop
    catalog: Catalog
    examples: list[Example]
    meta: dict[str, Any]

    def held_out(self) -> list[Example]:
        return [e for e in self.examples if e.split == "test"]


def _shop_examples(shop: Shop, opts: PipelineOptions, settings: Settings, embedder: Embedder) -> ShopData:
    """One shop's labelled examples, split by time on its own log; the teacher counts its training part only."""
    catalog = Catalog.load(shop.catalog_dir)
    settings = settings.replace(catalog_dir=shop.catalog_dir)
    events = load_events(shop.log_path)
    test_at = split_time(events, opts.test_fraction)
    cuts = list(regen_cuts(events, settings, test_at))
    train_cuts = [c for c in cuts if c.split == "train"]
    test_cuts = [c for c in cuts if c.split == "test"]
    keep = QUICK_CUTS if opts.quick else opts.max_train_requests
    # Test requests: only as many as the evaluation reads (a theme and a keywords example per placement).
    per_request = 2 * len(PLACEMENTS)
    cuts = _thin(train_cuts, keep) + _thin(test_cuts, max(1, opts.eval_limit // len(opts.shops) // per_request + 1))
    if opts.outcomes:
        cuts = with_outcomes(cuts, events, test_at)
    _say(
        f"{shop.name}: {len(events):,} events, {len(train_cuts):,} train / {len(test_cuts):,} test requests, "
        f"test from ts {test_at}; {len(cuts):,} kept"
    )
    counted = catalog_teacher_for(catalog, events, test_at)
    catalog_teacher = counted if opts.teacher_events == "training" else catalog_teacher_for(catalog, [], test_at)
    teacher = select_teacher(opts.teacher, catalog_teacher, settings, opts.work_dir / shop.log_path.parent.name)
    # Merchandising rules are drawn from the training period's popular categories whichever teacher labels.
    examples = build_examples(cuts, catalog, teacher, embedder.embed, popular=counted.popular_categories())
    meta = {
        "log": str(shop.log_path),
        "catalog": str(shop.catalog_dir),
        "test_from_ts": test_at,
        "requests": len(cuts),
        "train_requests_available": len(train_cuts),
        "train_requests_with_outcomes": sum(bool(c.next_products) for c in cuts),
        "train_examples": sum(e.split == "train" for e in examples),
        "test_examples": sum(e.split == "test" for e in examples),
        "teacher": f"{opts.teacher} ({type(teacher).__name__})"
        + (_COOCCURRENCE[opts.teacher_events] if opts.teacher == "catalog" else ""),
    }
    return ShopData(shop, catalog, examples, meta)


def run_pipeline(opts: PipelineOptions, settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 1)
        return now

    t = time.perf_counter()
    embedder = Embedder.load(settings.catalog.embedder_dir, "CPUExecutionProvider")
    shops: list[ShopData] = [_shop_examples(shop, opts, settings, embedder) for shop in opts.shops]
    train = [e for d in shops for e in d.examples if e.split == "train"]
    test = [e for d in shops for e in d.held_out()]
    data_dir = opts.work_dir / "data"
    meta = {
        "sources": [d.meta for d in shops],
        "test_fraction": opts.test_fraction,
        "requests": sum(d.meta["requests"] for d in shops),
        "train_examples": len(train),
        "test_examples": len(test),
        "context_format": FORMAT_VERSION,
        "teacher": opts.teacher,
    }
    write_examples([e for d in shops for e in d.examples], data_dir, meta)
    _say(f"examples: {len(train):,} train, {len(test):,} test -> {data_dir}")
    t = lap("dataset", t)

    texts = [e.input for e in train] + [e.target for e in train]
    for d in shops:
        texts += [p.title for p in d.catalog.products] + [k.keyword for k in d.catalog.keywords]
    tok = train_tokenizer(texts, vocab_size=120 if opts.quick else opts.vocab_size)
    tok_dir = opts.work_dir / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(tok_dir / TOKENIZER_FILE))
    hf_tok = to_transformers(tok)
    contexts = [e.input.removeprefix(THEME_PREFIX) for e in train if e.task == "theme"]
    lengths = sorted(len(enc.ids) for enc in tok.encode_batch(contexts, add_special_tokens=False))
    median_context_tokens = lengths[len(lengths) // 2] if lengths else 0
    _say(f"tokenizer: {tok.get_vocab_size()} pieces; median context {median_context_tokens} tokens, max {lengths[-1]}")
    t = lap("tokenizer", t)

    shape = QUICK_SHAPE if opts.quick else StudentShape()
    default_steps = 40 if opts.quick else TrainConfig().steps
    cfg = TrainConfig(steps=opts.steps or default_steps, warmup=10 if opts.quick else TrainConfig().warmup)
    torch_dir = opts.work_dir / "torch"
    result = train_student(
        [(e.input, e.target) for e in train], hf_tok, torch_dir, shape=shape, cfg=cfg, init_from=opts.init_from
    )
    _say(
        f"trained {result.params:,} parameters, {result.steps} steps in {result.seconds:.0f} s, "
        f"loss {result.final_loss}"
    )
    t = lap("train", t)

    out = opts.out_dir
    for stale in (out / INT8_DIR, out / FP16_DIR):
        shutil.rmtree(stale, ignore_errors=True)
    export_onnx(torch_dir, out)
    quantize_int8(out, out / INT8_DIR)
    fp16_dir = out / FP16_DIR if opts.fp16_in_out_dir else opts.work_dir / FP16_DIR
    convert_fp16(out, fp16_dir)
    if fp16_dir.parent != out:  # a variant outside the model dir needs its own config and tokenizer
        for name in KEEP_FILES:
            shutil.copyfile(out / name, fp16_dir / name)
    t = lap("export", t)

    per_shop = PARITY_EXAMPLES // len(shops)
    held_out = {d.shop: d.held_out() for d in shops}
    fixed = [e.input for d in shops for e in held_out[d.shop][:per_shop]]
    par = parity(torch_dir, out, fixed[:PARITY_EXAMPLES])
    _say(f"parity PyTorch vs ONNX fp32 greedy: {par.identical}/{par.n} token-identical")
    t = lap("parity", t)

    variants = {"fp32": out, "int8": out / INT8_DIR, "fp16": fp16_dir}
    int8_encoder = opts.work_dir / "int8-encoder"  # int8 encoder + the fp32 decoders of the parent
    shutil.rmtree(int8_encoder, ignore_errors=True)
    int8_encoder.mkdir(parents=True)
    shutil.copyfile(out / INT8_DIR / ONNX_FILES[0], int8_encoder / ONNX_FILES[0])
    for name in (*ONNX_FILES[1:], *KEEP_FILES):
        shutil.copyfile(out / name, int8_encoder / name)
    variants["int8-encoder"] = int8_encoder
    metrics: dict[str, dict[str, Any]] = {}
    for name, folder in variants.items():
        student = Student.load(folder, "CPUExecutionProvider")
        for d in shops:
            evaluation = evaluate_student(student, held_out[d.shop], d.catalog, limit=opts.eval_limit // len(shops))
            key = name if len(shops) == 1 else f"{name} · {d.shop.name}"
            metrics[key] = asdict(evaluation)
            _say(f"{key}: {json.dumps(evaluation.summary)}")
    t = lap("evaluate", t)

    timings["total"] = round(time.perf_counter() - started, 1)
    card = write_model_card(
        out,
        command=" ".join(shlex.quote(a) for a in opts.command),
        train=asdict(result),
        data={**meta, "median_context_tokens": median_context_tokens, "placements": [p.value for p in PLACEMENTS]},
        parity=asdict(par),
        metrics=metrics,
        timings=timings,
        fp16_dir=str(fp16_dir),
    )
    _say(f"done in {timings['total']:.0f} s -> {out}")
    return card
