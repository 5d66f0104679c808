"""The OpenAI-compatible teacher against a real local HTTP server speaking chat completions."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from models.context import ContextFacts, PlacementKind
from models.teacher import TeacherInput
from onnx_export.teacher_openai import OpenAITeacher, TeacherError
from streams.runtime.settings import Settings

KEY = "sk-test-very-secret-1234"
MODEL = "tiny-teacher-1"


@dataclass
class FakeEndpoint:
    """Scripted failures first (status codes, or "slow" for a reply after the client's timeout), then answers."""

    url: str = ""
    failures: list[int | str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: str = "good"  # "good" | "garbage" | "short"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        items = json.loads(body["messages"][1]["content"])["items"]
        if "themes" in body["messages"][0]["content"].split("Reply with JSON only")[1]:
            payload: dict[str, Any] = {"themes": [f'"Theme {i["context"].split(" |")[0]}"' for i in items]}
        else:
            payload = {
                "keywords": [[*i["candidates"][:2], "not a candidate", i["candidates"][0].upper()] for i in items]
            }
        if self.reply == "short":
            payload = {k: v[:-1] for k, v in payload.items()}
        content = "no json here" if self.reply == "garbage" else json.dumps(payload)
        return {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    state = FakeEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                failure = state.failures.pop(0) if state.failures else None
            if failure == "slow":
                time.sleep(0.6)
                failure = None
            if isinstance(failure, int):
                self.send_response(failure)
                if failure == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "try later"}}')
                return
            data = json.dumps(state.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def teacher(endpoint: FakeEndpoint, cache: Path, **options: Any) -> OpenAITeacher:
    settings = Settings(teacher_base_url=endpoint.url, teacher_model=MODEL, teacher_api_key=SecretStr(KEY))
    defaults: dict[str, Any] = {"backoff_s": 0.01, "timeout_s": 5.0, "contexts_per_request": 3, "concurrency": 2}
    return OpenAITeacher.from_settings(settings, cache, **{**defaults, **options})


def inputs(n: int) -> list[TeacherInput]:
    kinds = list(PlacementKind)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        out.append(TeacherInput(f"{kind.value} | view audio.headphone sony 64-128 x{i + 2}", ContextFacts(kind, ())))
    return out


def test_themes_batched_with_auth_and_model(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    contexts = inputs(7)
    themes = teacher(endpoint, tmp_path).themes(contexts)
    assert themes == [f"theme {c.context.split(' |')[0]}" for c in contexts]  # cleaned: quotes, case
    assert len(endpoint.requests) == 3  # 7 contexts, 3 per prompt
    for request in endpoint.requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["auth"] == f"Bearer {KEY}"
        assert request["body"]["model"] == MODEL and request["body"]["temperature"] == 0


def test_cache_prevents_a_second_call(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    contexts = inputs(5)
    first = teacher(endpoint, tmp_path).themes(contexts)
    calls = len(endpoint.requests)
    assert teacher(endpoint, tmp_path).themes(contexts) == first  # a new instance: cache on disk
    assert len(endpoint.requests) == calls
    other_model = OpenAITeacher(base_url=endpoint.url, model="other", api_key=None, cache_dir=tmp_path, backoff_s=0.01)
    other_model.themes(contexts)
    assert len(endpoint.requests) > calls  # the key includes the model
    assert endpoint.requests[-1]["auth"] is None
    entries = list(tmp_path.rglob("*.json"))
    assert entries and all(KEY not in p.read_text() for p in entries)


def test_retries_429_500_and_timeouts(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    endpoint.failures = [429, 500, "slow", 503]
    themes = teacher(endpoint, tmp_path, timeout_s=0.3, contexts_per_request=8, concurrency=1).themes(inputs(4))
    assert len(themes) == 4
    assert len(endpoint.requests) == 5


def test_gives_up_after_max_retries(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    endpoint.failures = [500] * 10
    with pytest.raises(TeacherError, match="gave up after 3 attempts, last: HTTP 500"):
        teacher(endpoint, tmp_path, max_retries=2).themes(inputs(2))
    assert len(endpoint.requests) == 3


def test_client_errors_are_not_retried_and_hide_the_key(
    endpoint: FakeEndpoint, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.failures = [401]
    caplog.set_level(logging.DEBUG)
    t = teacher(endpoint, tmp_path)
    with pytest.raises(TeacherError, match="HTTP 401") as info:
        t.themes(inputs(2))
    assert len(endpoint.requests) == 1
    assert KEY not in str(info.value) and KEY not in repr(t) and KEY not in caplog.text


def test_bad_replies_are_retried_then_refused(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    endpoint.reply = "short"  # one theme too few: every attempt is refused, nothing is cached
    with pytest.raises(TeacherError, match="expected 2 themes"):
        teacher(endpoint, tmp_path, max_retries=1).themes(inputs(2))
    endpoint.reply = "garbage"
    with pytest.raises(TeacherError, match="not JSON"):
        teacher(endpoint, tmp_path, max_retries=1).themes(inputs(2))
    assert not list(tmp_path.rglob("*.json"))


def test_keywords_only_from_candidates(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    contexts = inputs(4)
    candidates = [["sony headphones", "earbuds", "headphone"], ["yoga mat", "desk lamp"], ["tv"], ["a b", "c"]]
    t = teacher(endpoint, tmp_path)
    keywords = t.keywords(contexts, ["t1", "t2", "t3", "t4"], candidates)
    # The server proposes two candidates, one made-up keyword and a re-cased repeat of the first.
    assert keywords == [["sony headphones", "earbuds"], ["yoga mat", "desk lamp"], ["tv"], ["a b", "c"]]
    assert t.dropped_keywords == 4
    sent = [item for r in endpoint.requests for item in json.loads(r["body"]["messages"][1]["content"])["items"]]
    # Prompts run concurrently, so they arrive in any order.
    assert sorted((item["theme"], item["candidates"]) for item in sent) == list(
        zip(["t1", "t2", "t3", "t4"], candidates, strict=True)
    )
    with pytest.raises(ValueError, match="per context"):
        t.keywords(contexts, ["t1"], candidates)


def test_settings_without_endpoint_or_with_a_bad_key(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="VITRINE_TEACHER_BASE_URL"):
        OpenAITeacher.from_settings(Settings(teacher_base_url=None), tmp_path)
    key = "sk-\u00e9t\u00e9"
    settings = Settings(teacher_base_url="http://127.0.0.1:9/v1", teacher_api_key=SecretStr(key))
    with pytest.raises(TeacherError, match="non-ASCII") as info:
        OpenAITeacher.from_settings(settings, tmp_path)
    assert key not in str(info.value)
