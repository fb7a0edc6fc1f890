"""What the real-Chromium tests (tests/test_browser*.py) share: where Chromium is and how it starts,
a page that records the JavaScript errors it raises, screenshots, and a live server over a catalog
with the FakeEncoder. The `browser` (one Chromium per module) and `page` fixtures are in
conftest.py and built from these."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "browser"
VIEWPORT = {"width": 1280, "height": 900}

# pytestmark of every browser test module (Debian's chromium; Playwright drives it).
MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]
PLAYWRIGHT = "playwright.sync_api"
PLAYWRIGHT_MISSING = "needs playwright (Python package)"


@contextlib.contextmanager
def launch() -> Iterator[Any]:
    """Headless Chromium, closed (with Playwright's driver) when the block ends."""
    sync_api = pytest.importorskip(PLAYWRIGHT, reason=PLAYWRIGHT_MISSING)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# A 390 x 844 phone screen: new_page(browser, **PHONE)
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def new_page(browser, **context_args) -> tuple[Any, Any, list[str]]:
    """(context, page, errors) in a fresh browser context (no cache, cookies or storage from any
    other test); `errors` collects the page's uncaught JavaScript errors. Close the context.
    The page's Content-Security-Policy is bypassed: Playwright's wait_for_function evaluates its
    predicates as strings, which the policy forbids (test_the_page_works_under_its_csp checks the
    page with the policy on)."""
    context = browser.new_context(**({"viewport": VIEWPORT, "bypass_csp": True} | context_args))
    page = context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def serve(catalog: Path, encoder=None, **app_args):
    """A LiveServer (use as a context manager) of the web app over `catalog`, with the FakeEncoder
    unless `encoder` is given."""
    from fakes import FakeEncoder
    from serverkit import LiveServer

    from pixgrep.server.app import create_app

    return LiveServer(create_app(catalog, encoder=encoder or FakeEncoder(), **app_args))
