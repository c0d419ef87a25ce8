"""Headless Debian Chromium driven by Playwright, for the page's browser tests (no Playwright browser download)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.web import Site

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (no Playwright browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("apt-get install chromium")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def login(browser: Any, site: Site, user: str, password: str, path: str = "/") -> Any:
    """A new browser context signed in as ``user``, on ``path``."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
    page.set_default_timeout(10_000)
    page.goto(site.url + path)
    assert "/login" in page.url  # not logged in yet: sent to the login page
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_url(site.url + path)
    return page


def until(page: Any, script: str, arg: Any = None, timeout: float = 10.0) -> None:
    """Poll a JS expression (page.evaluate goes around the page's strict CSP; wait_for_function does not)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.1)
