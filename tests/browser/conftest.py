"""Headless Chromium for the browser tests: Debian's package driven through Playwright.

Needs Debian's Chromium at /usr/bin/chromium (``make browser`` installs it). Without it the browser tests
skip, or fail when ``TEST_REQUIRE_SERVICES=1``. Screenshots land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def require_chromium() -> Path:
    """Debian's Chromium; skips the calling test without it, or fails it when services are required."""
    if not CHROMIUM.exists():
        message = (
            f"no Chromium at {CHROMIUM}: run `make browser` (Debian's chromium package) for browser tests"
        )
        if os.environ.get("TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module's tests, closed afterwards."""
    chromium = require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
