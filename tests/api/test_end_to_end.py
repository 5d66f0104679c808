"""Replayed REES46 events through a real session worker and generator reach the API and the preview page:
every session's newest published version is what ``GET /storefronts/{id}`` answers and what the page shows,
with the catalog's product titles; the experiment readout runs over the same topics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from streams.catalog.artifacts import Catalog
from streams.contracts.storefront import StorefrontUpdate
from streams.datasets.readers import read_source
from streams.devtools.replay import replay
from streams.experiments.readout import readout
from streams.experiments.sources import load_inputs
from streams.runtime.settings import Settings
from tests.api.storefront_fixtures import get
from tests.api.test_app import wait_for
from tests.conftest import REES46, WorkerProcess
from tests.generator.test_app import storefronts, wait_handled

pytestmark = pytest.mark.kafka

EVENTS = 3000


def test_generated_storefronts_are_served_and_previewed(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    catalog_dir: Path,
    browser: webdriver.Chrome,
) -> None:
    settings = settings_factory(catalog_dir=catalog_dir, model_dir=None)  # the catalog teacher plans
    worker = worker_factory(settings)
    generator = worker_factory(settings, command="generator")
    api = worker_factory(settings, command="api")
    for process in (worker, generator, api):
        process.wait_ready()

    records = read_source(REES46, limit=EVENTS).records
    asyncio.run(replay(records, settings, progress=False))
    worker.wait_processed(len(records))
    wait_for(lambda: worker.endpoint.metric("vitrine_regen_triggers_total") > 0, "triggering", worker)
    wait_handled(generator, int(worker.endpoint.metric("vitrine_regen_triggers_total")))
    published = storefronts(settings)
    newest: dict[str, StorefrontUpdate] = {}
    for update in published:
        if update.session_id not in newest or update.version > newest[update.session_id].version:
            newest[update.session_id] = update
    wait_for(lambda: api.endpoint.metric("vitrine_api_updates_total") >= len(published), "through the topic", api)

    for session, update in newest.items():
        status, headers, body = get(f"{api.endpoint.base_url}/storefronts/{session}")
        assert status == 200 and headers["ETag"] == f'"v{update.version}"'
        assert StorefrontUpdate.from_json(body) == update

    # The preview page shows the session with the most versions as last published, titles from the catalog.
    session, update = max(newest.items(), key=lambda kv: kv[1].version)
    browser.get(f"{api.endpoint.base_url}/preview?session={session}")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    wait.until(lambda c: c.find_elements(By.ID, "page-version"))
    assert browser.find_element(By.ID, "page-version").text == str(update.version)
    themes = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".placement .theme")]
    assert themes == [p.theme for p in update.placements]
    catalog = Catalog.load(catalog_dir)
    first = update.placements[0].items[0].product_id
    product = catalog.product(first)
    assert product is not None
    assert product.title in browser.find_element(By.CSS_SELECTOR, f'tr[data-product="{first}"]').text
    listed = {e.get_attribute("data-session") for e in browser.find_elements(By.CSS_SELECTOR, "#sessions li")}
    assert session in listed and listed <= set(newest)

    # The readout over the same topics: every exposed session is in one arm, with as many page views as versions.
    inputs = load_inputs(settings, exposures=None, events=None)
    result = readout(inputs.exposures, inputs.events, experiment_id=settings.generator.experiment_id, resamples=100)
    assert sum(a.sessions for a in result.arms) == len(newest)
    assert sum(a.page_views for a in result.arms) == len({(u.session_id, u.version) for u in published})
    assert {u.experiment_id for u in published} == {settings.generator.experiment_id}
