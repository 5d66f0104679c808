"""Fixtures of the integration tests that drive a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium through its chromedriver (``make test`` apt-installs both when missing)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "install chromium and chromium-driver (make test does: apt-get install)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield chrome
    chrome.quit()
