"""Real Chromium (Debian's package, driven by Playwright) against the real test server.

Chromium comes from the system (`apt-get install chromium`), never from a download: where
it is missing these tests skip, and fail instead under CHAT_REQUIRE_SERVICES=1 (`.ci/run`).
"""

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import REQUIRE_SERVICES, LiveServer
from tests.page.chromium import CHROMIUM, CHROMIUM_ARGS

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
    """A Playwright page that records the page's JavaScript errors; the test fails on any.

    The browser's own notes of HTTP errors ("Failed to load resource") are not script errors:
    tests ask for 404s and 429s on purpose.
    """

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self.console)

    def console(self, message) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


class Proxy:
    """A TCP relay in front of the server, whose connections the test can cut: a network drop."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut every open connection, as a lost network does."""
        with self.lock:
            connections, self.connections = self.connections, set()
        for s in connections:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.drop()


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[Proxy]:
    relay = Proxy(server.url)
    yield relay
    relay.close()


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
