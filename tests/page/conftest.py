"""Real Chromium (Debian's package, driven by Playwright) against the real test server.

Chromium comes from the system (`apt-get install chromium`), never from a download: where
it is missing these tests skip, and fail instead under CHAT_REQUIRE_SERVICES=1 (`.ci/run`).
"""

import os
from collections.abc import Iterator

import pytest

from tests.conftest import REQUIRE_SERVICES, LiveServer

CHROMIUM = os.environ.get("CHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


def need_chromium() -> None:
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = "Chromium is not installed: apt-get install chromium"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright for Python is not installed: pip install -e '.[test]'"
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="package")
def browser():
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    # Playwright's sync API marks its event loop as running in this thread between calls, so
    # Django would take this thread's database calls (the tests' own, the transactional_db
    # flush) for calls from async code. They are not: allow them while the browser lives.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def context(browser, server: LiveServer):
    context = browser.new_context(base_url=server.url, viewport={"width": 1100, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


class Page:
    """A Playwright page that records the page's JavaScript errors; the test fails on any."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))


@pytest.fixture
def page(context) -> Iterator:
    recorder = Page(context.new_page())
    yield recorder.page
    assert not recorder.errors, recorder.errors


@pytest.fixture
def new_page(context):
    """Another tab of the same browser (same cookies: the same visitor)."""
    recorders: list[Page] = []

    def make():
        recorders.append(Page(context.new_page()))
        return recorders[-1].page

    yield make
    for recorder in recorders:
        assert not recorder.errors, recorder.errors
