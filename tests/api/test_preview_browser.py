"""The live preview page in a real headless Chromium, against a real broker and a real ``vitrine api`` process:
it shows a session's storefront (titles and prices from the catalog) and updates when a new version is published.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when missing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from streams.catalog.artifacts import Catalog
from streams.catalog.products import Product
from streams.runtime.settings import Settings
from tests.api.storefront_fixtures import publish, storefront
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.kafka

PRODUCTS = {
    "p1": ("Trail shoe X", 89.9),
    "p2": ("Trail sock", 9.5),
    "p3": ("Running cap", 19.0),
    "p4": ("Rain shell", 120.0),
}


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    """Catalog artifacts written by the catalog's own writer; the page needs only titles and prices."""
    products = [Product(pid, title, "apparel", "acme", price) for pid, (title, price) in PRODUCTS.items()]
    vectors = np.zeros((len(products), 4), dtype=np.float32)
    Catalog(products, vectors, [], np.zeros((0, 4), dtype=np.float32)).write(tmp_path / "catalog")
    return tmp_path / "catalog"


def text(chrome: webdriver.Chrome, css: str) -> str:
    return str(chrome.find_element(By.CSS_SELECTOR, css).text)


def test_the_preview_page_shows_a_storefront_and_follows_its_new_versions(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    tiny_catalog: Path,
    browser: webdriver.Chrome,
) -> None:
    settings = settings_factory(catalog_dir=tiny_catalog)
    publish(settings, [storefront("shopper-1", 1, theme="Trail running", products=("p1", "p2", "p3"))])
    api = worker_factory(settings, command="api")
    api.wait_ready()
    # The page re-renders a new version in place: an element found just before that is stale, so look again.
    wait = WebDriverWait(browser, 30, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))

    browser.get(f"{api.endpoint.base_url}/preview")
    wait.until(lambda c: c.find_elements(By.CSS_SELECTOR, 'li[data-session="shopper-1"]'))
    browser.find_element(By.CSS_SELECTOR, 'li[data-session="shopper-1"]').click()
    wait.until(lambda c: text(c, "#page-version") == "1")
    assert text(browser, "#page-arm") == "teacher"
    assert text(browser, '.placement[data-kind="hero"] .theme') == "Trail running"
    assert text(browser, '.placement[data-kind="hero"] .kw') == "running shoes"
    first = browser.find_element(By.CSS_SELECTOR, 'tr[data-product="p1"]')
    assert "Trail shoe X" in first.text and "$89.90" in first.text and "retrieval" in first.text
    assert text(browser, "#changes") == "first version"

    publish(settings, [storefront("shopper-1", 2, theme="Rain gear", products=("p3", "p4"))])
    wait.until(lambda c: text(c, "#page-version") == "2")
    assert text(browser, '.placement[data-kind="hero"] .theme') == "Rain gear"
    assert "Rain shell" in text(browser, 'tr[data-product="p4"]')
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-product="p1"]')
    assert text(browser, "#changes") == "hero: theme 'Trail running' -> 'Rain gear'; +1 / -2 items"
    assert text(browser, 'li[data-session="shopper-1"] small').startswith("v2")
