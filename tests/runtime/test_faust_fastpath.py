"""The fast delivery path: fails loudly when Faust's internals move, keeps the rebalance protection it replaces."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from mode import Service

from streams.runtime import faust_fastpath
from streams.runtime.faust_fastpath import FaustInternalsChanged, deliver


def test_installed_faust_is_the_code_the_fast_path_replaces() -> None:
    """Fails after a Faust upgrade that touched ``_drain_messages``: port the one-line change, then update the hash."""
    faust_fastpath.check()
    faust_fastpath.install()
    assert Consumer._drain_messages is faust_fastpath._drain_messages


def test_a_changed_drain_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_fastpath, "ORIGINAL_SHA256", "0" * 64)
    with pytest.raises(FaustInternalsChanged, match="_drain_messages"):
        faust_fastpath.install()


class FakeConsumer(Service):
    """Just what ``deliver`` touches of a Faust consumer, with mode's real ``wait_first``."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.raced = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.raced += 1
        return await super().wait_first(*coros, timeout=timeout)


def test_a_delivery_that_never_blocks_runs_inline_without_the_race() -> None:
    async def main() -> tuple[list[str], int]:
        consumer, seen = FakeConsumer(), []

        async def callback(message: Any) -> None:
            seen.append(message)

        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        return seen, consumer.raced

    assert asyncio.run(main()) == (["m1"], 0)


def test_a_blocked_delivery_resumes_where_it_stopped_and_keeps_its_result_and_errors() -> None:
    async def main() -> tuple[list[Any], int]:
        consumer, seen = FakeConsumer(), []
        room = asyncio.Event()
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def callback(message: Any) -> None:
            await room.wait()  # a full stream queue
            seen.append(await fut)
            if message == "bad":
                raise ValueError(message)

        async def unblock() -> None:
            await asyncio.sleep(0.01)
            room.set()
            await asyncio.sleep(0.01)
            fut.set_result("value")

        task = asyncio.create_task(unblock())
        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        await task
        with pytest.raises(ValueError, match="bad"):
            await deliver(consumer, callback, "bad")  # type: ignore[arg-type]
        return seen, consumer.raced

    assert asyncio.run(main()) == (["value", "value"], 1)


def test_a_delivery_blocked_when_the_flow_is_suspended_is_abandoned() -> None:
    """faust-streaming PR #223: after a rebalance the message is discarded, not delivered late."""

    async def main() -> tuple[list[str], bool]:
        consumer, delivered = FakeConsumer(), []
        room = asyncio.Event()
        cancelled = False

        async def callback(message: Any) -> None:
            nonlocal cancelled
            try:
                await room.wait()
            except asyncio.CancelledError:
                cancelled = True
                raise
            delivered.append(message)

        async def rebalance() -> None:
            await asyncio.sleep(0.01)
            consumer.suspend_flow.set()

        task = asyncio.create_task(rebalance())
        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        await task
        room.set()
        await asyncio.sleep(0.01)
        return delivered, cancelled

    assert asyncio.run(main()) == ([], True)


def test_while_the_flow_is_suspended_delivery_takes_faust_own_path() -> None:
    async def main() -> int:
        consumer = FakeConsumer()
        consumer.suspend_flow.set()

        async def callback(message: Any) -> None:
            await asyncio.sleep(0)

        await deliver(consumer, callback, "m1")  # type: ignore[arg-type]
        return consumer.raced

    assert asyncio.run(main()) == 1
