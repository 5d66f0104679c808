"""The printed table and the Markdown report of an evaluation run."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime

from streams.evaluation.metrics import Estimate, bootstrap_coverage, bootstrap_mean
from streams.evaluation.protocol import EvalRun, iso_time
from streams.generator.layout import PAGE_PLACEMENTS
from streams.worker.state import TOP_PURCHASED

CASCADE = "cascade"  # rows whose name says so are compared, paired, with the best traditional row
# Cascade rows also compared with each other: (row, the row it is compared with).
VARIANTS = (
    ("student cascade (fused)", "teacher cascade (fused)"),
    ("student cascade (learned ranker)", "teacher cascade (learned ranker)"),
    ("student cascade (learned ranker)", "student cascade (fused)"),
    ("teacher cascade (learned ranker)", "teacher cascade (fused)"),
    ("teacher cascade (learned ranker)", "cascade without generation (learned ranker)"),
    ("teacher cascade (fused)", "cascade without generation (fused)"),
)


@dataclass(frozen=True, slots=True)
class Row:
    target: str
    strategy: str
    n: int
    hit: Estimate
    ndcg: Estimate
    coverage: Estimate
    diversity: Estimate


def summarise(run: EvalRun) -> list[Row]:
    rows: list[Row] = []
    cfg = run.config
    for target in run.targets:
        for name, _ in run.strategies:
            o = run.outcomes.get((target, name))
            if o is None:
                continue
            kw = {"resamples": cfg.resamples, "seed": cfg.seed}
            rows.append(
                Row(
                    target=target,
                    strategy=name,
                    n=len(o.hits),
                    hit=bootstrap_mean(o.hits, o.clusters, **kw),
                    ndcg=bootstrap_mean(o.ndcgs, o.clusters, **kw),
                    coverage=bootstrap_coverage(o.pages, o.clusters, len(run.items), **kw),
                    diversity=bootstrap_mean(o.diversities, o.clusters, **kw),
                )
            )
    return rows


@dataclass(frozen=True, slots=True)
class Paired:
    target: str
    strategy: str
    versus: str
    n: int
    hit: Estimate
    ndcg: Estimate


def paired(run: EvalRun, target: str, a: str, b: str) -> Paired:
    """``a`` minus ``b`` on the positions both scored, with a cluster bootstrap of the per-position differences."""
    oa, ob = run.outcomes[(target, a)], run.outcomes[(target, b)]
    row_b = {e: i for i, e in enumerate(ob.events)}
    pairs = [(i, row_b[e]) for i, e in enumerate(oa.events) if e in row_b]
    clusters = [oa.clusters[i] for i, _ in pairs]
    kw = {"resamples": run.config.resamples, "seed": run.config.seed}

    def diff(metric: str) -> Estimate:
        va, vb = getattr(oa, metric), getattr(ob, metric)
        return bootstrap_mean([va[i] - vb[j] for i, j in pairs], clusters, **kw)

    return Paired(target, a, b, len(pairs), diff("hits"), diff("ndcgs"))


def comparisons(run: EvalRun, rows: list[Row]) -> list[Paired]:
    """Each cascade row against the best traditional row of its target (by hit rate), and the ``VARIANTS`` pairs
    (the student against the teacher, the served page against its ablation); paired on the same positions."""
    out: list[Paired] = []
    for target in run.targets:
        group = [r for r in rows if r.target == target]
        traditional = [r for r in group if CASCADE not in r.strategy]
        cascades = [r for r in group if CASCADE in r.strategy]
        if not traditional or not cascades:
            continue
        best = max(traditional, key=lambda r: r.hit.value)
        out += [paired(run, target, c.strategy, best.strategy) for c in cascades]
        names = {c.strategy for c in cascades}
        out += [paired(run, target, a, b) for a, b in VARIANTS if a in names and b in names]
    return out


def paired_table(pairs: list[Paired], k: int) -> str:
    lines = [
        f"| target | strategy | versus | paired n | hit@{k} difference | NDCG@{k} difference |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += [f"| {p.target} | {p.strategy} | {p.versus} | {p.n} | {p.hit} | {p.ndcg} |" for p in pairs]
    return "\n".join(lines)


def table(rows: list[Row], k: int, *, markdown: bool) -> str:
    head = ["target", "strategy", "n", f"hit@{k}", f"NDCG@{k}", "coverage", "diversity"]
    body = [[r.target, r.strategy, str(r.n), str(r.hit), str(r.ndcg), str(r.coverage), str(r.diversity)] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 5) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*x) for x in [head, *body])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} vCPU, Python {platform.python_version()}"
    )


def markdown(
    run: EvalRun, rows: list[Row], *, command: str, title: str, seconds: float, figure: str | None = None
) -> str:
    cfg = run.config
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    best: dict[str, Row] = {}
    for r in rows:
        if r.target not in best or r.hit.value > best[r.target].hit.value:
            best[r.target] = r
    out = [
        f"# Offline replay evaluation: {title}",
        "",
        f"- Command: `{command}`",
        f"- Date: {date}",
        f"- Machine: {machine()}; no GPU used",
        f"- Runtime: {seconds:.1f} s in all (load {run.seconds['load']:.1f} s, replay and scoring "
        f"{run.seconds['replay']:.1f} s, bootstrap and report the rest)",
        "",
        "## Data",
        "",
        "| | |",
        "|---|---:|",
        *[f"| {key} | {value} |" for key, value in run.stats.items()],
        "",
        "## Protocol",
        "",
        "- The log is replayed in time order, one timestamp group at a time: every scored position of a group "
        "gets its pages from counts of strictly earlier timestamps, and only then is the group folded into the "
        "counts. Same-second events never see each other (`tests/evaluation/test_protocol.py` plants future "
        "and same-second events and checks that no earlier page changes).",
        "- One universe for every strategy: only products with an event strictly before the page (the cascade's "
        "retrieval and keyword candidates included: the exact backend searches only those products). Checked on "
        "every page: *products on a page before their first event* in the Data table (0 when the protocol holds; "
        "`tests/evaluation/test_protocol.py` plants a catalog product first seen after every page, with a "
        "control that retrieves from the whole catalog and does show it).",
        "- One implementation: the log is folded through the worker's own per-event step "
        "(`streams.worker.sessions.WorkerStep`: session state and ranker signals, one partition), so the "
        "baselines are the ranker lists the worker serves, and the cascade's page is the generator's own "
        "(`CascadePlanner.plan` + `StorefrontAssembler.assemble`) for the request the worker would send at that "
        "moment (a test compares the two item by item).",
        f"- Page size k = {cfg.k}. A strategy's own candidates come first; short pages are filled from the "
        "popular list of the category of the context's latest product, then from global popularity, so every "
        "strategy is compared on full pages.",
        f"- Ranker: co-visit pairs within {cfg.covis_window} consecutive events of a session (consecutive repeats "
        f"collapsed); popularity decays with a half-life of {_duration(cfg.pop_half_life_s)}; session affinities "
        f"and own-item weights with {_duration(cfg.context_half_life_s)} (chosen on the earliest 60% of the REES46 "
        "events, [fusion-weights.md](fusion-weights.md)).",
        "- Rejected events (the worker's contract, `decode_event`) are counted by reason in the Data table; "
        "searches are folded into the session (its last query) and never scored.",
        *_target_notes(run),
        *(_cascade_notes(run) if any(CASCADE in name for name, _ in run.strategies) else []),
        f"- Intervals: 95% percentile intervals of a cluster bootstrap ({cfg.resamples} Poisson resamples, "
        f"seed {cfg.seed}), resampling {'customers' if run.fmt.value == 'online-retail' else 'sessions'}.",
        "- Coverage: share of all items in the log shown on at least one page of that target. Diversity: distinct "
        "categories per page / k (items without a category count as one category).",
        "",
        "## Strategies",
        "",
        *[f"- **{name}**: {description}" for name, description in run.strategies],
        "",
        "## Results",
        "",
        table(rows, cfg.k, markdown=True),
        "",
        *([f"![hit rate and NDCG per strategy, with 95% intervals]({figure})", ""] if figure else []),
        *_cascade_section(run, rows),
        "## Reading",
        "",
        *[
            f"- {target}: best hit rate is **{r.strategy}** at {r.hit} (NDCG {r.ndcg}, n = {r.n})."
            for target, r in best.items()
        ],
        "",
    ]
    return "\n".join(out)


def _target_notes(run: EvalRun) -> list[str]:
    if run.fmt.value == "online-retail":
        return [
            "- Context is the customer. Every invoice of a known customer from the cutoff on is scored once: a hit "
            "if any of its items is on the page, NDCG with the invoice's distinct items as the relevant set. "
            "Invoices before the cutoff and invoices without a customer only train the counts (so does every "
            "scored invoice, after it is scored). The returning-customer row keeps customers with an earlier "
            "invoice; the others get popularity-like pages from every strategy.",
        ]
    scored = (
        f" from {iso_time(run.config.cutoff_ms)} on (earlier events only build the counts and sessions; with a "
        "learned ranker, the split it was trained before, and with a student, the time its training on this log "
        "stopped: no row is scored on what a model trained on)"
        if run.config.cutoff_ms is not None
        else ""
    )
    return [
        f"- Context is the session. Every event{scored} of a session that already has earlier-second events is a "
        "scored position (a session's first second has nothing to personalise from).",
        "- **next novel product** (main target): the event's product was not seen earlier in the session, any event "
        "type; pages leave out the session's own items. **next cart/purchase** and **next viewed item**: the "
        "event's product, pages unfiltered (so re-showing viewed items is allowed and can score).",
        "- On the novel target, **recently viewed** equals popularity by construction: every item it proposes is "
        "the session's own, so its page is all popularity fill. It is there for the cart and view targets.",
    ]


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


def _cascade_section(run: EvalRun, rows: list[Row]) -> list[str]:
    pairs = comparisons(run, rows)
    if not pairs and not run.notes:
        return []
    k = run.config.k
    out = [
        "## The cascade against the baselines",
        "",
        "Paired differences (row minus the row it is compared with) on the positions both scored, with 95% "
        "cluster-bootstrap intervals; an interval that holds 0 is no evidence either way.",
        "",
        paired_table(pairs, k),
        "",
    ]
    for p in pairs:
        if p.hit.low > 0:
            verdict = "beats"
        elif p.hit.high < 0:
            verdict = "does not beat (worse than)"
        else:
            verdict = "is not distinguishable from"
        out.append(f"- {p.target}: **{p.strategy}** {verdict} {p.versus} on hit@{k} ({p.hit}, NDCG {p.ndcg}).")
    out += ["", *[f"- {note}" for note in run.notes], ""]
    return out


def _cascade_notes(run: EvalRun) -> list[str]:
    transactions = run.fmt.value == "online-retail"
    specific = [
        "- Transactions: the worker's state is keyed by the customer (its context spans the customer's invoices, "
        f"its purchase history the decayed counts of its {TOP_PURCHASED} most bought products). Every event is a "
        "purchase: the customer's own past items reach the cascade's page only through its buy-again shelf (bought "
        "products are hidden on every other placement). **re-buy + teacher cascade (placement)** gives re-buy the "
        "first 75% of the page and the cascade the rest."
        if transactions
        else "- The student row, when present, scores a hash sample of sessions (see its description); its paired "
        "comparisons are on that sample."
    ]
    return [
        "- Cascade rows: the request is the one the worker would send now (`session_context` of the worker's state: "
        "last 8 events with types, category, brand and price-band affinities, counts, last query; ranker lists "
        "from `RankerSignals.for_request`), planned by `CascadePlanner.plan` and assembled by "
        "`StorefrontAssembler.assemble` (the layout `streams.generator.layout.page_layout` chooses for the "
        "request: buy-again and continue-shopping shelves first when the context has their products, up to 3 "
        "and 2 placements' worth, then the generated placements, 4 placements of "
        f"{run.config.k // PAGE_PLACEMENTS} products in all; "
        "`DEFAULT_WEIGHTS` unless stated, no product twice, bought products hidden but on buy-again, items held "
        "to their theme's scope, near-duplicates collapsed, top-up from the latest product's category, "
        "popularity, co-visitation), with the target's exclusions hidden on every placement (so on the novel "
        "target a continue-shopping shelf is filled from the ranker lists); the first k products are scored.",
        "- Retrieval: `streams.generator.retrieval.ExactRetriever`, exact cosine in memory over the catalog's "
        "vectors (the Qdrant backend returns the same: `tests/generator/test_retrieval_congruence.py`), top 24 "
        "known products per keyword; keyword candidates are only keywords that retrieve a known product.",
        *specific,
    ]
