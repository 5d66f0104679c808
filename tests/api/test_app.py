"""The storefront API on a real broker: highest version wins, ETag/304, 404, restart from the changelog,
and forwarding to the instance that owns a session's partition."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from streams.runtime.settings import Settings
from tests.api.storefront_fixtures import get, publish, storefront
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.kafka

Factory = Callable[..., WorkerProcess]


def wait_for(check: Callable[[], bool], what: str, api: WorkerProcess, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        assert api.proc.poll() is None, api.log_tail()
        time.sleep(0.2)
    raise AssertionError(f"not {what} within {timeout_s:.0f}s:\n{api.log_tail()}")


def answers(api: WorkerProcess, answer: str) -> float:
    """Requests this instance answered itself (200, 304, 404) or forwarded."""
    _, body = api.endpoint.get("/metrics")
    prefix = f'vitrine_api_requests_total{{answer="{answer}"}} '
    return sum(float(line[len(prefix) :]) for line in body.decode().splitlines() if line.startswith(prefix))


def test_the_api_serves_the_newest_version_with_an_etag_and_keeps_it_across_a_restart(
    settings_factory: Callable[..., Settings], worker_factory: Factory
) -> None:
    settings = settings_factory()
    publish(
        settings,
        [
            storefront("s1", 1, theme="first"),
            storefront("s1", 3, theme="third"),
            storefront("s1", 2, theme="second, late"),  # an older version arriving late changes nothing
            storefront("s2", 1),
            (b"s3", b"{not a storefront"),
            (b"other-key", storefront("s4", 1).to_json()),  # keyed by the wrong session: not routable
        ],
    )
    api = worker_factory(settings, command="api")
    api.wait_ready()
    base = api.endpoint.base_url
    wait_for(lambda: api.endpoint.metric("vitrine_api_updates_total") >= 6, "through the topic", api)
    assert api.endpoint.metric("vitrine_api_updates_total") == 6

    status, headers, body = get(f"{base}/storefronts/s1")
    page = orjson.loads(body)
    assert status == 200 and page["version"] == 3 and page["placements"][0]["theme"] == "third"
    assert headers["ETag"] == '"v3"' and headers["Content-Type"].startswith("application/json")
    assert get(f"{base}/storefronts/s1", {"If-None-Match": '"v3"'})[0] == 304
    assert get(f"{base}/storefronts/s1", {"If-None-Match": '"v2"'})[0] == 200
    status, _, body = get(f"{base}/storefronts/nobody")
    assert status == 404 and orjson.loads(body)["error"] == "unknown session"
    assert get(f"{base}/storefronts/s3")[0] == 404 and get(f"{base}/storefronts/s4")[0] == 404

    # A new instance with an empty data dir: the table comes back from its changelog before /readyz is 200,
    # not from the topic (the consumer group's offsets are committed past every update).
    assert api.stop() == 0
    restarted = worker_factory(settings, command="api")
    restarted.wait_ready()
    status, headers, body = get(f"{restarted.endpoint.base_url}/storefronts/s1")
    assert status == 200 and headers["ETag"] == '"v3"' and orjson.loads(body)["placements"][0]["theme"] == "third"
    assert restarted.endpoint.metric("vitrine_api_updates_total") == 0

    publish(settings, [storefront("s1", 4, theme="fourth")])
    wait_for(lambda: get(f"{restarted.endpoint.base_url}/storefronts/s1")[1].get("ETag") == '"v4"', "v4", restarted)


def test_two_instances_answer_for_every_session_by_forwarding_to_its_owner(
    settings_factory: Callable[..., Settings], worker_factory: Factory
) -> None:
    settings = settings_factory(topic_partitions=4)
    sessions = [f"session-{i}" for i in range(24)]
    publish(settings, [storefront(s, 2) for s in sessions])
    first = worker_factory(settings, command="api")
    second = worker_factory(settings, command="api")
    first.wait_ready()
    second.wait_ready()

    def all_served() -> bool:
        for api in (first, second):
            for s in sessions:
                status, headers, _ = get(f"{api.endpoint.base_url}/storefronts/{s}")
                if status != 200 or headers.get("ETag") != '"v2"':
                    return False
        return True

    def settled() -> bool:
        # Until the second instance has joined the group the first owns every partition and forwards nothing;
        # once each owns some partitions, each forwards the requests for the other's sessions.
        return all_served() and all(answers(api, "forwarded") > 0 for api in (first, second))

    wait_for(settled, "both instances own partitions and serve every session", second, timeout_s=90)
    assert sum(answers(api, "200") for api in (first, second)) >= 2 * len(sessions)
    status, headers, _ = get(f"{first.endpoint.base_url}/storefronts/{sessions[0]}", {"If-None-Match": '"v2"'})
    assert status == 304 and headers["ETag"] == '"v2"'  # the ETag survives forwarding
