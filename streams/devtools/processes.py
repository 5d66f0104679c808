"""Talking to a running worker over its HTTP endpoints: readiness, metric values, progress.

Used by the demo, the benchmark and the tests, which all start a real ``vitrine worker`` process
and need to know when it is ready and how far it got.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streams.runtime.settings import Settings

PROCESSED_METRICS = ("vitrine_events_total", "vitrine_dlq_events_total", "vitrine_duplicate_events_total")


def start_worker(settings: Settings, log_path: Path, command: str = "worker") -> subprocess.Popen[bytes]:
    """``vitrine worker`` (or ``generator``) as a child process with exactly ``settings``, output appended to
    ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", command],
            env={**os.environ, **settings.to_env()},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class WorkerGone(RuntimeError):
    """The worker process exited while we were waiting on it."""


class WorkerEndpoint:
    def __init__(self, port: int, proc: subprocess.Popen[bytes] | None = None, host: str = "127.0.0.1") -> None:
        self.base_url = f"http://{host}:{port}"
        self.proc = proc

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=3) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def metric(self, name: str) -> float:
        """Sum of every sample of one metric family (all label sets)."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def processed(self) -> float:
        """Input messages handled: applied, dead-lettered or skipped as redeliveries."""
        return sum(self.metric(m) for m in PROCESSED_METRICS)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        self.wait_until(lambda: self.get("/readyz")[0] == 200, timeout_s, "ready")

    def wait_processed(
        self, n: int, timeout_s: float = 300.0, on_progress: Callable[[float], None] | None = None
    ) -> None:
        def done() -> bool:
            count = self.processed()
            if on_progress is not None:
                on_progress(count)
            return count >= n

        self.wait_until(done, timeout_s, f"done with {n} messages")

    def wait_until(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise WorkerGone(f"worker exited with {self.proc.returncode} before it was {what}")
            try:
                if check():
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        raise TimeoutError(f"worker not {what} within {timeout_s:.0f}s")
