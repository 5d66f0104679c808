"""Training cuts come from the worker's own tracker, and the held-out split is by time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onnx_export.dataset import Cut, Example, augment, load_events, regen_cuts, split_time
from streams.catalog.artifacts import Catalog
from streams.catalog.products import read_rees46
from streams.runtime.settings import Settings

SHARED_DATA = Path(os.environ.get("VITRINE_SHARED_DATA", "/work/shared/data"))
REES46 = SHARED_DATA / "rees46" / "2019-Oct-head.csv"


@pytest.fixture(scope="module")
def cuts() -> list[Cut]:
    events = load_events(REES46)
    return list(regen_cuts(events, Settings(), split_time(events, 0.2)))


def test_no_test_request_is_earlier_than_any_train_request(cuts: list[Cut]) -> None:
    train = [c.request.event_ts for c in cuts if c.split == "train"]
    test = [c.request.event_ts for c in cuts if c.split == "test"]
    assert train and test
    assert max(train) < min(test)
    assert 0.1 < len(test) / len(cuts) < 0.35


def test_split_time_holds_out_the_latest_events() -> None:
    events = load_events(REES46, limit=2000)
    at = split_time(events, 0.25)
    later = sum(e.ts >= at for e in events)
    assert 0.2 * len(events) <= later <= 0.3 * len(events)
    assert all(e.ts < at for e in events if e.ts < at)


def test_augmentation_is_seeded_per_request(cuts: list[Cut]) -> None:
    import numpy as np

    products = read_rees46(REES46)
    catalog = Catalog(products, np.zeros((len(products), 4), np.float32), [], np.zeros((0, 4), np.float32))
    popular = ["electronics.smartphone", "appliances.kitchen.washer", "computers.notebook"]
    first = [augment(c.request, catalog, popular, seed=1) for c in cuts[:300]]
    again = [augment(c.request, catalog, popular, seed=1) for c in cuts[:300]]
    assert first == again
    assert any(rules is not None for _, rules in first)
    assert any(req.context.last_query for req, _ in first)


def test_example_json_round_trip() -> None:
    ex = Example("keywords", "keywords: x // hero | no items", "a | b c", 5, "s", "hero", "test", ["a", "b c"])
    assert Example.from_json(ex.to_json()) == ex
