"""Limits shared through Redis by two server processes, and a killed process's slots freed.

Real Redis (REDIS_URL), keys under a prefix of this test's own, deleted afterwards.
"""

import signal
import time
import uuid

import httpx
import pytest

from tests.conftest import free_port, need_service
from tests.processes import PYTHON, ServerProcess, Visitor, migrate, server_env
from tests.sse_client import text_of


@pytest.fixture
def redis_prefix():
    import redis

    url = need_service("REDIS_URL")
    prefix = f"chat-test-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def start(tmp_path, redis_prefix):
    """Start server processes on one database and one Redis, with the limits given."""
    url, prefix = redis_prefix
    database = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    migrate(server_env(database))
    servers: list[ServerProcess] = []

    def run(**env: str) -> ServerProcess:
        port = free_port()
        settings = {
            "REDIS_URL": url,
            "CHAT_LIMITS_PREFIX": prefix,
            "CHAT_CHECKPOINT_INTERVAL": "0.1",  # a dead process's slots lapse within 1 s
            "CHAT_DEMO_RATE": "40",
            "CHAT_DEMO_TOKENS": "40",
            **env,
        }
        command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
        servers.append(ServerProcess(command, server_env(database, **settings), port).start())
        return servers[-1]

    yield run
    for server in servers:
        server.stop()


def post(browser: Visitor, url: str, content: str) -> httpx.Response:
    return browser.http.post(f"{url}/api/conversations", json={"content": content}, headers=browser.headers)


def test_two_processes_share_the_message_count(start):
    a, b = start(CHAT_LIMIT_MESSAGES="4/day"), start(CHAT_LIMIT_MESSAGES="4/day")
    browser = Visitor(a.url, session_first=True)
    for url in (a.url, b.url, a.url, b.url):
        assert post(browser, url, "hello").status_code == 201
    for url in (a.url, b.url):
        response = post(browser, url, "hello")
        assert response.status_code == 429 and response.json()["limit"] == "messages"


def test_a_killed_process_frees_its_reply_slots_within_the_stale_window(start):
    slow = {"CHAT_LIMIT_REPLIES": "3", "CHAT_DEMO_RATE": "2", "CHAT_DEMO_TOKENS": "200"}
    a, b = start(**slow), start(**slow)
    browser = Visitor(a.url, session_first=True)
    for _ in range(3):
        assert post(browser, a.url, "a long reply").status_code == 201
    response = post(browser, b.url, "one more")
    assert response.status_code == 429 and response.json()["limit"] == "replies"
    a.signal(signal.SIGKILL, group=True)
    a.wait()
    # Nobody refreshes the dead process's slots: they lapse within the stale window (1 s here).
    deadline = time.monotonic() + 1 + 3
    while (response := post(browser, b.url, "one more")).status_code == 429:
        assert time.monotonic() < deadline, "the dead process's slots were never freed"
        time.sleep(0.05)
    assert response.status_code == 201


def test_the_answer_cache_is_shared_by_two_processes(start):
    a, b = start(CHAT_CACHE_TTL="60"), start(CHAT_CACHE_TTL="60")
    browser = Visitor(a.url, session_first=True)
    question = f"What is {uuid.uuid4().hex}?"
    first = post(browser, a.url, question).json()["assistant_message"]
    assert browser.follow(a.url, first["id"])[-1].json["status"] == "complete"
    again = post(browser, b.url, question).json()["assistant_message"]
    received = browser.follow(b.url, again["id"])
    assert received[-1].json.get("cached") is True
    assert text_of(received) == browser.stored(a.url, first)["content"]
    assert [e.json["state"] for e in received if e.event == "status"] == ["cached", "writing"]


def test_the_pipelined_checks_count_as_the_limits_library_does(redis_prefix):
    """chat/ratelimit/redis.py queues the library's own script on its own keys: the counts it
    leaves must read back through the library's public API, and refuse where the library would."""
    import asyncio

    from limits import parse

    from chat.ratelimit.backends import Checks
    from chat.ratelimit.redis import RedisBackend

    url, prefix = redis_prefix
    item = parse("3/day")

    async def scenario() -> tuple:
        backend = RedisBackend(url, prefix)
        try:
            checks = Checks(
                quota=None, leases=(("replies/x", "lease-1", 1),), hits=((item, ("m", "x")),), ttl=5
            )
            first = await backend.check(checks)
            again = Checks(
                quota=(parse("5/day"), ("tokens", "x")), leases=(), hits=((item, ("m", "x")),), ttl=5
            )
            outcomes = [await backend.check(again) for _ in range(3)]
            window = await backend.storage.get_sliding_window(item.key_for("m", "x"), item.get_expiry())
            public = await backend.window.hit(item, "m", "x")  # the library's own call agrees: full
            await backend.quota.hit(parse("5/day"), "tokens", "x", cost=5)
            spent = await backend.check(again)
            held = await backend.held("replies/x")
            return first, outcomes, window, public, spent, held
        finally:
            await backend.close()

    first, outcomes, window, public, spent, held = asyncio.run(scenario())
    assert first.leases == (True,) and first.hits == (True,) and held == 1
    assert [o.hits for o in outcomes] == [(True,), (True,), (False,)]
    assert all(o.quota for o in outcomes)
    assert window[2] == 3 and public is False
    assert spent.quota is False
