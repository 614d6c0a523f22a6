"""Shared fixtures: a real uvicorn server on a loopback port, and clients that act like a tab."""

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import uvicorn

from chat import conf
from chat.replies import generation
from tests import fakes
from tests.sse_client import SSE, events
from tests.vendor_servers import VendorServer

REQUIRE_SERVICES = os.environ.get("CHAT_REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def _settings_read_afresh():
    """chat.conf keeps what it read; a test that changed the environment (monkeypatch.setenv)
    must not leave its values to the next one."""
    conf.forget()
    yield
    conf.forget()


def need_service(name: str) -> str:
    """The URL in env var `name`, or a skip saying so (a failure in CI, which sets them)."""
    url = os.environ.get(name)
    if not url:
        message = f"{name} is not set: this test needs that service (`.ci/run` sets it)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_database():
    """A database of its own on the PostgreSQL server of DATABASE_URL, dropped afterwards."""
    url = need_service("DATABASE_URL")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("DATABASE_URL is not a PostgreSQL URL")
    name = f"chat_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    yield urlunsplit(parts._replace(path=f"/{name}")), name, admin
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopServer(uvicorn.Server):
    """A uvicorn server that keeps its event loop, for work sent from other threads."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)


class LiveServer:
    """The project's ASGI application under uvicorn, in a thread of this process."""

    def __init__(self) -> None:
        from project.asgi import application

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        # The application serves its static files itself: the page's tests load its modules.
        # proxy_headers off: the app alone decides whom to believe (chat/proxies.py).
        config = uvicorn.Config(
            application, lifespan="on", log_level="warning", timeout_graceful_shutdown=2, proxy_headers=False
        )
        self.server = LoopServer(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def call(self, coro, timeout: float = 10):
        """Run a coroutine on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def uvicorn_server(django_db_setup, django_db_blocker) -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(uvicorn_server: LiveServer, transactional_db) -> Iterator[LiveServer]:
    fakes.GATES.clear()
    yield uvicorn_server
    for gate in fakes.GATES.values():  # release scripted replies still waiting
        gate.set()
    uvicorn_server.call(generation.interrupt_all())


class Tab:
    """An HTTP client with its own session, as a browser tab has: cookies and the CSRF header."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0))
        self.http.get("/").raise_for_status()

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, json=None, headers: dict | None = None, **kw) -> httpx.Response:
        return self.http.post(path, json=json, headers={**self.csrf, **(headers or {})}, **kw)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.http.delete(path, headers=self.csrf, **kw)

    def conversation(self, **body) -> dict:
        response = self.post("/api/conversations", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def send(self, content: str, conversation_id: str | None = None, **extra) -> dict:
        cid = conversation_id or self.conversation()["id"]
        response = self.post(f"/api/conversations/{cid}/messages", json={"content": content, **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def stream(
        self,
        message_id: str,
        last_event_id: int | None = None,
        limit: int | None = None,
        on_event: Callable[[SSE], None] | None = None,
    ) -> list[SSE]:
        """Follow a reply's stream to its end, or until `limit` text events, then hang up;
        `on_event` is called with each event as it comes."""
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        received: list[SSE] = []
        with self.http.stream("GET", f"/api/messages/{message_id}/stream", headers=headers) as response:
            assert response.status_code == 200, response.read()
            for event in events(response.iter_lines()):
                received.append(event)
                if on_event is not None:
                    on_event(event)
                if event.event in ("done", "error"):
                    break
                if limit is not None and sum(e.event == "message" for e in received) >= limit:
                    break
        return received

    def message(self, message_id: str, conversation_id: str) -> dict:
        """One message as its conversation shows it, on the current branch or not (contract v3)."""
        message = self.get(f"/api/messages/{message_id}").json()
        assert message["conversation_id"] == conversation_id
        return message

    def wait_finished(self, message_id: str, conversation_id: str, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.message(message_id, conversation_id)
            if message["status"] != "streaming" or time.monotonic() > deadline:
                return message
            time.sleep(0.02)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def tab(server: LiveServer) -> Iterator[Tab]:
    client = Tab(server.url)
    yield client
    client.close()


@pytest.fixture
def new_tab(server: LiveServer):
    tabs: list[Tab] = []

    def make() -> Tab:
        tabs.append(Tab(server.url))
        return tabs[-1]

    yield make
    for t in tabs:
        t.close()


# --- fake model vendors on loopback (tests/vendor_servers.py) ----------------------------

OPENAI_TEST_KEY = "sk-test-0123456789-secret"
ANTHROPIC_TEST_KEY = "sk-ant-test-0123456789-secret"


@pytest.fixture
def openai_vendor(settings) -> Iterator[VendorServer]:
    """A fake OpenAI-compatible server, configured as OPENAI_BASE_URL; model `openai:gpt-test`."""
    with VendorServer("openai") as vendor:
        settings.OPENAI_BASE_URL = f"{vendor.url}/v1"
        settings.OPENAI_API_KEY = OPENAI_TEST_KEY
        settings.CHAT_MODELS = [*settings.CHAT_MODELS, "openai:gpt-test"]
        yield vendor


@pytest.fixture
def anthropic_vendor(settings) -> Iterator[VendorServer]:
    """A fake Anthropic server, configured as ANTHROPIC_BASE_URL; model `anthropic:claude-test`."""
    with VendorServer("anthropic") as vendor:
        settings.ANTHROPIC_BASE_URL = vendor.url
        settings.ANTHROPIC_API_KEY = ANTHROPIC_TEST_KEY
        settings.CHAT_MODELS = [*settings.CHAT_MODELS, "anthropic:claude-test"]
        yield vendor


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(the machine's Redis URL, a key prefix of this test's own): the keys under it are
    deleted afterwards (other engineers and tests share the server)."""
    import redis as redis_sync

    url = need_service("REDIS_URL")
    prefix = f"chat-test-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    client = redis_sync.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_settings(settings, redis_prefix) -> Iterator[str]:
    """The machine's Redis for the app, with keys of this test's own."""
    url, prefix = redis_prefix
    settings.REDIS_URL = url
    settings.CHAT_REDIS_PREFIX = f"{prefix}:"
    yield settings.CHAT_REDIS_PREFIX


@pytest.fixture
def approval(settings):
    """The demo model's tool (current_time) waits for the person (issue 31)."""
    settings.CHAT_DEMO_STEPS = True
    settings.CHAT_DEMO_RATE = 400
    settings.CHAT_TOOLS_APPROVAL = "current_time"
    return settings


@pytest.fixture(params=["memory", "redis"])
def lim(request, settings):
    """Fresh limit counts (a key prefix of this test's) in memory, then in Redis (the limits
    only: tests.test_limits.LimitsOnlyRedis): both backends must answer alike."""
    prefix = settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        yield settings
        return
    import redis

    url = need_service("REDIS_URL")
    settings.CHAT_LIMITS_BACKEND = "tests.test_limits.LimitsOnlyRedis"
    yield settings
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))  # "-proxied" too
    if keys:
        client.delete(*keys)
    client.close()
