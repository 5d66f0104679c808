"""The backlog a generator reads when it is given partitions: the newest waiting request per session, forgotten
once the stream has gone through it; a read that fails serves on without it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from streams.contracts.regen import RegenRequest, SessionContext
from streams.devtools.local_kafka import free_port
from streams.generator.backlog import Backlog, _Read
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from tests.conftest import send_messages


def request(session: str, version: int) -> RegenRequest:
    context = SessionContext([], [], [], [], None, {}, 0.0)
    return RegenRequest(session_id=session, user_id=None, version=version, reason="r", event_ts=1, context=context)


@pytest.mark.kafka
def test_the_read_keeps_the_newest_version_per_session_from_the_first_offset_seen(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(topic_partitions=1)
    asyncio.run(ensure_topics(settings))
    waiting = [request("a", 1), request("b", 1), request("a", 2), request("a", 3), request("b", 2)]
    messages = [(r.session_id.encode(), r.to_json()) for r in waiting] + [(b"x", b"not json")]
    asyncio.run(send_messages(settings, settings.topics.regen_topic, messages))

    backlog = Backlog(settings)
    backlog.assigned({0})
    asyncio.run(backlog.read({0: 3}))  # the stream resumed at offset 3: a3, b2 and the unreadable one
    assert (backlog.newest("a", 0), backlog.newest("b", 0), backlog.newest("c", 0)) == (3, 2, 0)
    asyncio.run(backlog.read({0: 0}))  # read once per assignment
    assert backlog.newest("a", 0) == 3
    backlog.passed({0: 4})
    assert backlog.newest("a", 0) == 3  # the unreadable request at offset 5 is still ahead
    backlog.passed({0: 5})
    assert backlog.newest("a", 0) == 0

    backlog.assigned({0})  # a rebalance: read again
    asyncio.run(backlog.read({0: 0}))
    assert backlog.newest("b", 0) == 2


@pytest.mark.kafka
def test_a_read_out_of_time_or_begun_before_a_rebalance_leaves_nothing_behind(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(topic_partitions=1)
    asyncio.run(ensure_topics(settings))
    asyncio.run(send_messages(settings, settings.topics.regen_topic, [(b"a", request("a", 2).to_json())]))
    backlog = Backlog(settings)

    async def read_across_a_rebalance() -> None:
        backlog.assigned({0})
        reading = asyncio.create_task(backlog.read({0: 0}))
        await asyncio.sleep(0)  # the read is on its way when the rebalance comes
        backlog.assigned({0})
        await reading

    asyncio.run(read_across_a_rebalance())
    assert backlog.newest("a", 0) == 0  # dropped: it belonged to the assignment before
    asyncio.run(backlog.read({0: 0}))
    assert backlog.newest("a", 0) == 2  # the new assignment's own read

    slow = Backlog(settings.replace(generator_backlog_read_s=0.001))
    slow.assigned({0})
    asyncio.run(slow.read({0: 0}))  # out of time: logged, skipped, not raised
    assert (slow.newest("a", 0), slow.unread) == (0, set())


def test_a_read_that_fails_is_skipped_and_an_earlier_assignment_s_read_is_gone() -> None:
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")  # nothing listens there
    backlog = Backlog(settings)
    backlog.reads[0] = _Read(end=10, newest={"a": 3})  # what the assignment before had read
    backlog.assigned({0, 1})
    asyncio.run(backlog.read({0: 7}))
    assert backlog.newest("a", 0) == 0
    assert backlog.unread == {1}
