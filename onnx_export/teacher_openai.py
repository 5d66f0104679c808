"""A network teacher: any OpenAI-compatible chat-completions endpoint labels themes and keywords.

The two prompts follow the cascade: first one theme per placement context, then keywords per placement
chosen only from that placement's retrieval candidates (the reply is checked and anything outside the
candidates is dropped, so the student never learns a keyword it could not emit under its constraint).
Several contexts go into one prompt and several prompts run at once; 429, 5xx, timeouts and replies
that do not parse are retried with exponential backoff. Replies are cached on disk by
sha256(model, prompt), so a rerun of the dataset build costs no second call. The API key is a
``SecretStr``: it goes into the Authorization header and nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from models.context import clean_text
from models.teacher import TeacherInput
from streams.contracts.errors import VitrineError
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_KEYWORDS, MAX_KEYWORDS = 3, 5
MAX_THEME_CHARS = 60
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
# How replies are asked for: plain JSON mode, a schema inside json_object (llama.cpp, vLLM), OpenAI's json_schema.
RESPONSE_FORMATS = ("json_object", "json_object_schema", "json_schema")

CONTEXT_HELP = (
    "Each context is one line: the placement (hero = the shopper's main intent; because_you_viewed = "
    "related to the most recent item; explore = a neighbouring category from another department; deals = "
    "a budget-friendly take), then recent items, most recent first, as 'event category brand price-band "
    "xN', then optionally 'q: last search', 'boost:', 'exclude:' and 'campaign:' merchandising rules."
)
THEMES_PROMPT = (
    "You write shelf titles for an online shop's personalised storefront. "
    + CONTEXT_HELP
    + " For every item write one theme for that placement: 2 to 6 plain words, title-like, specific to the "
    "items (name the category, a brand only if the context shows it), no quotes, emojis, URLs or prices. "
    'Reply with JSON only: {"themes": [one string per item, in the order given]}.'
)
KEYWORDS_PROMPT = (
    "You pick search keywords that fill a storefront shelf. "
    + CONTEXT_HELP
    + f" For every item choose {MIN_KEYWORDS} to {MAX_KEYWORDS} keywords that best retrieve products for its "
    "theme, ONLY from that item's candidates, copied exactly, most relevant first. "
    'Reply with JSON only: {"keywords": [one list of strings per item, in the order given]}.'
)


class TeacherError(VitrineError):
    """The teacher endpoint failed for good (after retries) or refused the request."""


class _BadReply(Exception):
    """A reply that does not have the asked-for shape; retried like a server error."""


class OpenAITeacher:
    """Implements ``models.teacher.Teacher`` over ``POST {base_url}/chat/completions``."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr | None,
        cache_dir: Path,
        contexts_per_request: int = 8,
        concurrency: int = 4,
        max_retries: int = 5,
        timeout_s: float = 60.0,
        backoff_s: float = 1.0,
        json_mode: bool = True,
        response_format: str = "json_object",
    ) -> None:
        self.model = model
        self.cache_dir = cache_dir
        self.contexts_per_request = contexts_per_request
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.json_mode = json_mode
        if response_format not in RESPONSE_FORMATS:
            raise TeacherError(f"teacher response format {response_format!r}: one of {', '.join(RESPONSE_FORMATS)}")
        self.response_format = response_format
        self.dropped_keywords = 0  # keywords the teacher proposed outside the candidates
        self._url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            if not api_key.get_secret_value().isascii():
                raise TeacherError("teacher API key has non-ASCII characters (an HTTP header cannot carry them)")
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings, cache_dir: Path, **options: Any) -> OpenAITeacher:
        if not settings.teacher.teacher_base_url:
            raise TeacherError("no teacher endpoint: set VITRINE_TEACHER_BASE_URL (and VITRINE_TEACHER_API_KEY)")
        return cls(
            base_url=settings.teacher.teacher_base_url,
            model=settings.teacher.teacher_model,
            api_key=settings.teacher.teacher_api_key,
            cache_dir=cache_dir,
            response_format=settings.teacher.teacher_response_format,
            **options,
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenAITeacher(url={self._url!r}, model={self.model!r})"

    # --- the Teacher protocol --------------------------------------------------------------

    def themes(self, contexts: list[TeacherInput]) -> list[str]:
        items = [{"id": i + 1, "context": c.context} for i, c in enumerate(contexts)]
        return self._batched(items, THEMES_PROMPT, self._parse_themes, _themes_schema, tokens_per_item=32)

    def keywords(self, contexts: list[TeacherInput], themes: list[str], candidates: list[list[str]]) -> list[list[str]]:
        if not len(contexts) == len(themes) == len(candidates):
            raise ValueError("contexts, themes and candidates must be given per context")
        items = [
            {"id": i + 1, "context": c.context, "theme": t, "candidates": list(k)}
            for i, (c, t, k) in enumerate(zip(contexts, themes, candidates, strict=True))
        ]
        return self._batched(items, KEYWORDS_PROMPT, self._parse_keywords, _keywords_schema, tokens_per_item=64)

    # --- batching, caching, retries --------------------------------------------------------

    def _batched(
        self,
        items: list[dict[str, Any]],
        system: str,
        parse: Callable[[str, list[dict[str, Any]]], list[T]],
        schema: Callable[[list[dict[str, Any]]], dict[str, Any]],
        *,
        tokens_per_item: int,
    ) -> list[T]:
        n = self.contexts_per_request
        chunks = [items[i : i + n] for i in range(0, len(items), n)]
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(chunks)))) as pool:
            results = list(pool.map(lambda chunk: self._ask(system, chunk, parse, schema, tokens_per_item), chunks))
        return [x for chunk in results for x in chunk]

    def _ask(
        self,
        system: str,
        items: list[dict[str, Any]],
        parse: Callable[[str, list[dict[str, Any]]], list[T]],
        schema: Callable[[list[dict[str, Any]]], dict[str, Any]],
        tokens_per_item: int,
    ) -> list[T]:
        # ids restart at 1 in every prompt, so equal chunks make equal prompts (and hit the cache).
        items = [{**item, "id": i + 1} for i, item in enumerate(items)]
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": 0,
            # A bound on the reply: a small model can otherwise loop on JSON whitespace until its context is full.
            "max_tokens": 32 + tokens_per_item * len(items),
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": json.dumps({"items": items}, ensure_ascii=False)},
            ],
        }
        if self.json_mode:
            body["response_format"] = self._response_format(schema(items))
        key = hashlib.sha256(json.dumps([self.model, body["messages"]], sort_keys=True).encode()).hexdigest()
        cached = self._cache_get(key)
        if cached is not None:
            try:
                return parse(cached, items)
            except _BadReply:
                log.warning("teacher cache entry %s does not parse; asking again", key[:12])
        last, retry_after = "no attempt", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, last, retry_after))
                retry_after = None
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TimeoutException:
                last = "timeout"
                continue
            except httpx.TransportError as exc:
                last = f"transport error {type(exc).__name__}"
                continue
            if response.status_code in RETRY_STATUS:
                last, retry_after = f"HTTP {response.status_code}", response.headers.get("retry-after")
                continue
            if response.status_code != 200:
                raise TeacherError(f"teacher {self._url}: HTTP {response.status_code}: {response.text[:200]}")
            try:
                content = _content(response)
                result = parse(content, items)
            except _BadReply as exc:
                last = f"bad reply ({exc})"
                continue
            self._cache_put(key, content)
            return result
        raise TeacherError(f"teacher {self._url}: gave up after {self.max_retries + 1} attempts, last: {last}")

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        """JSON replies, shaped by the schema where the server can enforce one: OpenAI's structured outputs
        (``json_schema``), or a schema inside ``json_object`` (llama.cpp, vLLM), which a grammar then enforces
        token by token, so even a small model answers with the right count and only candidate keywords."""
        if self.response_format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "labels", "schema": schema, "strict": False}}
        if self.response_format == "json_object_schema":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_object"}

    def _delay(self, attempt: int, last: str, retry_after: str | None) -> float:
        """Exponential backoff with jitter; the server's Retry-After (seconds) wins when it is longer."""
        delay = self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
        if retry_after:
            with contextlib.suppress(ValueError):  # an HTTP date: keep our own backoff
                delay = max(delay, float(retry_after))
        log.info("teacher retry %d after %s (%.2fs)", attempt, last, delay)
        return min(delay, 60.0)

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> str | None:
        path = self._cache_path(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        content = entry.get("content") if isinstance(entry, dict) else None
        return content if isinstance(content, str) else None

    def _cache_put(self, key: str, content: str) -> None:
        path = self._cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"model": self.model, "content": content}, fh)
        os.replace(tmp, path)  # atomic: concurrent writers of one key leave one whole entry

    # --- replies ---------------------------------------------------------------------------

    def _parse_themes(self, content: str, items: list[dict[str, Any]]) -> list[str]:
        values = _field(content, "themes", len(items))
        themes = []
        for value in values:
            if not isinstance(value, str):
                raise _BadReply("a theme is not a string")
            theme = clean_text(value.strip().strip("\"'"), MAX_THEME_CHARS)
            if not theme:
                raise _BadReply("empty theme")
            themes.append(theme)
        return themes

    def _parse_keywords(self, content: str, items: list[dict[str, Any]]) -> list[list[str]]:
        values = _field(content, "keywords", len(items))
        out = []
        for value, item in zip(values, items, strict=True):
            if not isinstance(value, list):
                raise _BadReply("keywords of an item are not a list")
            allowed = {" ".join(c.lower().split()): c for c in item["candidates"]}
            chosen: list[str] = []
            for kw in value:
                match = allowed.get(" ".join(str(kw).lower().split()))
                if match is None:
                    self.dropped_keywords += 1
                elif match not in chosen:
                    chosen.append(match)
            out.append(chosen[:MAX_KEYWORDS])
        return out


def _themes_schema(items: list[dict[str, Any]]) -> dict[str, Any]:
    theme = {"type": "string", "minLength": 3, "maxLength": MAX_THEME_CHARS}
    themes = {"type": "array", "items": theme, "minItems": len(items), "maxItems": len(items)}
    return {"type": "object", "properties": {"themes": themes}, "required": ["themes"], "additionalProperties": False}


def _keywords_schema(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Per item, a list drawn from that item's own candidates: the candidate constraint, as a schema."""
    per_item = []
    for item in items:
        candidates = list(dict.fromkeys(item["candidates"]))
        if not candidates:
            per_item.append({"type": "array", "maxItems": 0})
            continue
        low, high = min(MIN_KEYWORDS, len(candidates)), min(MAX_KEYWORDS, len(candidates))
        per_item.append({"type": "array", "items": {"enum": candidates}, "minItems": low, "maxItems": high})
    keywords = {"type": "array", "prefixItems": per_item, "minItems": len(items), "maxItems": len(items)}
    return {
        "type": "object",
        "properties": {"keywords": keywords},
        "required": ["keywords"],
        "additionalProperties": False,
    }


def _content(response: httpx.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _BadReply("not a chat completion") from exc
    if not isinstance(content, str):
        raise _BadReply("message content is not text")
    return content


def _field(content: str, name: str, n: int) -> list[Any]:
    """The list ``name`` of a JSON reply (tolerating a fenced code block), exactly ``n`` long."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        reply = json.loads(text)
    except ValueError as exc:
        raise _BadReply("not JSON") from exc
    values = reply.get(name) if isinstance(reply, dict) else None
    if not isinstance(values, list) or len(values) != n:
        raise _BadReply(f"expected {n} {name}")
    return values
