"""The storefront API: ``GET /storefronts/{session_id}`` and the live preview page, in one Faust app.

The app consumes ``storefront-updates`` into a changelog-backed table keyed by session (the highest
version wins, so redeliveries and late arrivals change nothing), which a restart recovers from the
changelog before ``/readyz`` turns 200. The table is co-partitioned with the topic, so with several
instances each holds the sessions of its partitions; a request for a session another instance owns
is forwarded to it (Faust's router says which: ``app.router.key_store``).

Responses carry ``ETag: "v<version>"``; ``If-None-Match`` with the current tag answers 304. An unknown
session answers 404 with ``{"error": "unknown session"}``: the shop shows its default page.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.types import StreamT
from faust.web import Request, Response, View
from prometheus_client import Counter
from pydantic import ValidationError

from streams.api.preview import changes, enrich
from streams.catalog.artifacts import Catalog
from streams.contracts.storefront import StorefrontUpdate
from streams.runtime import metrics
from streams.runtime.faust_app import codec_table, faust_app, quiet_worker
from streams.runtime.process import prepare_process
from streams.runtime.settings import Settings
from streams.runtime.web import add_endpoints

log = logging.getLogger(__name__)

STOREFRONT_PATH = "/storefronts/{session_id}"
PREVIEW_PATH = "/preview"
PREVIEW_EVENTS_PATH = "/preview/events"
TABLE_NAME = "storefronts"
ROUTED_HEADER = "X-Vitrine-Routed"  # set on a forwarded request: the receiver answers, never forwards again
SNAPSHOT_SESSIONS = 200  # newest pages sent to a preview page when it connects
KEEPALIVE_S = 15.0

UPDATES = Counter(
    "vitrine_api_updates",
    "Storefront updates read by the API, by outcome (applied, stale, invalid).",
    ["outcome"],
    registry=metrics.REGISTRY,
)
REQUESTS = Counter(
    "vitrine_api_requests",
    "Storefront requests, by answer (200, 304, 404, forwarded, unavailable).",
    ["answer"],
    registry=metrics.REGISTRY,
)


@dataclass(slots=True)
class Broadcast:
    """Fan-out of preview messages to the connected pages; a slow page loses messages, never stalls the agent."""

    subscribers: set[asyncio.Queue[bytes]] = field(default_factory=set)

    def publish(self, message: bytes) -> None:
        for queue in self.subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    def subscribe(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self.subscribers.discard(queue)


def etag(version: int) -> str:
    return f'"v{version}"'


def create_api_app(settings: Settings) -> faust.App:
    app = faust_app(settings, app_id=f"{settings.topics.app_id}-api")
    topic = app.topic(
        settings.topics.storefront_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topics.topic_partitions,
    )
    # Value: {"page": <the update as published>, "changes": [what differs from the previous version]}.
    table = codec_table(app, settings, TABLE_NAME, "json", "Latest storefront per session (highest version wins).")
    catalog = Catalog.load(settings.catalog.catalog_dir) if settings.catalog.catalog_dir is not None else None
    live = Broadcast()

    def preview_message(entry: dict[str, Any]) -> bytes:
        return orjson.dumps({"page": enrich(entry["page"], catalog), "changes": entry["changes"]})

    @app.agent(topic, concurrency=1)
    async def follow(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                update = StorefrontUpdate.from_json(event.value)
            except ValidationError as exc:
                log.warning("unreadable storefront update skipped", extra={"error": str(exc)[:200]})
                UPDATES.labels("invalid").inc()
                continue
            key = update.session_id.encode()
            if event.key != key:  # the table is partitioned by the message key: it must be the session
                UPDATES.labels("invalid").inc()
                continue
            current = table.get(key)
            if current is not None and current["page"]["version"] >= update.version:
                UPDATES.labels("stale").inc()
                continue
            page = update.model_dump(mode="json")
            entry = {"page": page, "changes": changes(current["page"] if current else None, page)}
            table[key] = entry
            UPDATES.labels("applied").inc()
            live.publish(preview_message(entry))

    def owned_elsewhere(session_id: str) -> str | None:
        """The base URL of the instance that owns the session's partition, or None when it is this one."""
        owner = app.router.key_store(TABLE_NAME, session_id)  # KeyError: no assignment yet
        here = app.conf.canonical_url
        if (owner.host, owner.port) == (here.host, here.port):
            return None
        return str(owner.with_path("").with_query(None))

    @app.page(STOREFRONT_PATH)
    class Storefront(View):
        async def get(self, request: Request, session_id: str) -> Response:
            if ROUTED_HEADER not in request.headers:
                try:
                    owner = owned_elsewhere(session_id)
                except KeyError:
                    REQUESTS.labels("unavailable").inc()
                    return self.json({"error": "partition assignment in progress"}, status=503)
                if owner is not None:
                    REQUESTS.labels("forwarded").inc()
                    return await self.forward(request, owner)
            entry = table.get(session_id.encode())
            if entry is None:
                REQUESTS.labels("404").inc()
                return self.json({"error": "unknown session", "session_id": session_id}, status=404)
            tag = etag(entry["page"]["version"])
            headers = {"ETag": tag, "Cache-Control": "no-cache"}
            if tag in request.headers.get("If-None-Match", ""):
                REQUESTS.labels("304").inc()
                return self.bytes(b"", status=304, headers=headers)
            REQUESTS.labels("200").inc()
            return self.bytes(orjson.dumps(entry["page"]), content_type="application/json", headers=headers)

        async def forward(self, request: Request, owner: str) -> Response:
            """Faust's own ``route_req`` drops the response headers (the ETag); this keeps them."""
            headers = {ROUTED_HEADER: "1"}
            if "If-None-Match" in request.headers:
                headers["If-None-Match"] = request.headers["If-None-Match"]
            async with app.http_client.get(owner + request.url.path, headers=headers) as resp:
                body = await resp.read()
                kept = {k: resp.headers[k] for k in ("ETag", "Cache-Control") if k in resp.headers}
                return self.bytes(body, status=resp.status, content_type=resp.content_type, headers=kept)

    @app.page(PREVIEW_PATH)
    class Preview(View):
        async def get(self, request: Request) -> Response:
            page = resources.files("streams.api").joinpath("preview.html").read_text()
            return self.html(page)

    @app.page(PREVIEW_EVENTS_PATH)
    class PreviewEvents(View):
        """Server-sent events: the newest pages this instance holds (and ``?session=``'s), then every page as
        it is published."""

        async def get(self, request: Request) -> Any:
            queue = live.subscribe()
            stream = aioweb.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            try:
                await stream.prepare(request)  # type: ignore[arg-type]  # the aiohttp driver's request
                newest = heapq.nlargest(SNAPSHOT_SESSIONS, table.values(), key=lambda e: e["page"]["published_at_ms"])
                asked = table.get(request.query.get("session", "").encode())  # ?session=ID: that one too
                for entry in [*reversed(newest), *([asked] if asked is not None else [])]:
                    await stream.write(b"data: " + preview_message(entry) + b"\n\n")
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        await stream.write(b": keepalive\n\n")
                        continue
                    await stream.write(b"data: " + message + b"\n\n")
            except ConnectionError:
                pass  # the page was closed
            finally:
                live.unsubscribe(queue)
            return stream

    def is_ready() -> bool:
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its ABC
        return bool(recovery.completed.is_set()) and not app.rebalancing

    add_endpoints(app, is_ready)
    return app


def run_api(settings: Settings) -> None:
    """Prepare the process, then run the Faust worker (and its web server) until it is stopped."""
    prepare_process(settings)
    app = create_api_app(settings)
    quiet_worker(app, settings.operations.log_level).execute_from_commandline()
