"""The HTTP endpoints every Vitrine Faust app serves: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.runtime import metrics

LIVE_PATH = "/livez"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

# aiohttp takes the charset separately and rejects it inside content_type.
_METRICS_CONTENT_TYPE = "; ".join(p.strip() for p in CONTENT_TYPE_LATEST.split(";") if "charset" not in p)


def add_endpoints(app: faust.App, is_ready: Callable[[], bool]) -> None:
    """Readiness is the app's own notion (table recovery, model and catalog loaded), not Faust's."""

    @app.page(LIVE_PATH)
    class Live(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page(READY_PATH)
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready = is_ready()
            return self.json({"ready": ready}, status=200 if ready else 503)

    @app.page(METRICS_PATH)
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            metrics.READY.set(1 if is_ready() else 0)
            return self.bytes(generate_latest(metrics.REGISTRY), content_type=_METRICS_CONTENT_TYPE)
