"""Limits shared through Redis by two server processes, a killed process's slots freed, a
script flush that takes no slot twice, and Redis's own outage.

Real Redis (REDIS_URL), keys under a prefix of this test's own, deleted afterwards; the outage
on a redis-server of the test's own. SCRIPT FLUSH empties the scripts of the whole server (every
database): clients of it reload theirs (redis-py's `Script` does).
"""

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import PYTHON, ServerProcess, Visitor, migrate, server_env
from tests.sse_client import text_of
from tests.test_redis_processes import RedisServer


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


def leases_held(url: str, prefix: str, kind: str = "replies") -> int:
    """The slots of a kind held in Redis under this test's prefix (live or not yet lapsed):
    `replies` per owner, `replies_ip` per address."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(client.zcard(key) for key in client.scan_iter(match=f"{prefix}:leases:{kind}/*"))
    finally:
        client.close()


def test_a_burst_after_a_script_flush_admits_exactly_the_limit_and_leaves_no_orphan_slot(start, redis_prefix):
    """After a Redis restart or SCRIPT FLUSH, every script is gone: a request's admission must
    still take its slot once, not twice (the slot of a refused request blocked its owner for
    the whole stale window, and a burst admitted anywhere from none to all of the limit)."""
    import redis

    url, prefix = redis_prefix
    # A stale window of 10 s: a slot left behind would still be held when the test looks.
    a = start(
        CHAT_LIMIT_REPLIES="3",
        CHAT_LIMIT_MESSAGES="30/minute",
        CHAT_LIMIT_MESSAGES_IP="120/minute",
        CHAT_CHECKPOINT_INTERVAL="1",
        CHAT_DEMO_RATE="2",
        CHAT_DEMO_TOKENS="200",
    )
    browser = Visitor(a.url, session_first=True)
    flusher = redis.Redis.from_url(url)
    try:
        for burst in range(3):
            flusher.script_flush()
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda _: post(browser, a.url, "a long reply"), range(8)))
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [201] * 3 + [429] * 5, (burst, [r.text for r in responses])
            assert {r.json()["limit"] for r in responses if r.status_code == 429} == {"replies"}
            assert leases_held(url, prefix) == 3 and leases_held(url, prefix, "replies_ip") == 3
            replies = [r.json()["assistant_message"] for r in responses if r.status_code == 201]
            stop(browser, a.url, replies[0])
            assert leases_held(url, prefix) == 2 and leases_held(url, prefix, "replies_ip") == 2
            fourth = post(browser, a.url, "one more")  # a slot is free as soon as a reply ends
            assert fourth.status_code == 201, fourth.text
            for reply in [*replies[1:], fourth.json()["assistant_message"]]:
                stop(browser, a.url, reply)
            assert leases_held(url, prefix) == 0 and leases_held(url, prefix, "replies_ip") == 0
    finally:
        flusher.close()


def test_a_burst_without_cookies_after_a_script_flush_admits_one_visitors_share(start, redis_prefix):
    """Clients without cookies from one address, after SCRIPT FLUSH: exactly one visitor's 3
    replies at once for the address, each slot taken once, and given back when its reply stops."""
    import redis

    url, prefix = redis_prefix
    a = start(
        CHAT_LIMIT_REPLIES="3",
        CHAT_CHECKPOINT_INTERVAL="1",  # a stale window of 10 s: a slot left behind would show
        CHAT_DEMO_RATE="2",
        CHAT_DEMO_TOKENS="200",
    )
    flusher = redis.Redis.from_url(url)
    try:
        for burst in range(2):
            flusher.script_flush()
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda _: post_without_cookies(a.url), range(8)))
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [201] * 3 + [429] * 5, (burst, [r.text for r in responses])
            assert {r.json()["limit"] for r in responses if r.status_code == 429} == {"replies_ip"}
            assert leases_held(url, prefix, "replies_ip") == 3 and leases_held(url, prefix) == 3
            for response in responses:
                if response.status_code == 201:
                    stop_as(a.url, response)
            assert leases_held(url, prefix, "replies_ip") == 0 and leases_held(url, prefix) == 0
    finally:
        flusher.close()


def post_without_cookies(url: str) -> httpx.Response:
    return httpx.post(f"{url}/api/conversations", json={"content": "a long reply"}, timeout=30)


def stop_as(url: str, response: httpx.Response) -> None:
    """Stop the reply a client without cookies started, with the session its answer set."""
    reply = response.json()["assistant_message"]
    with httpx.Client(cookies=response.cookies, timeout=30) as client:
        client.get(f"{url}/").raise_for_status()  # the CSRF cookie, for the same visitor
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        stopped = client.post(f"{url}/api/messages/{reply['id']}/stop", headers=headers)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text


def stop(browser: Visitor, url: str, reply: dict) -> None:
    """Stop a reply; its slot is given back before its end is saved."""
    response = browser.http.post(f"{url}/api/messages/{reply['id']}/stop", headers=browser.headers)
    assert response.status_code == 200 and response.json()["status"] == "stopped", response.text


def test_while_redis_is_down_sends_are_let_through_and_counted_again_once_it_is_back(tmp_path):
    """Redis's own outage, for real (a redis-server of the test's own, killed): the one failure
    that lets requests through, with a warning; the counts resume when Redis is back."""
    redis_server = RedisServer().start()
    database = f"sqlite:///{tmp_path / 'down.sqlite3'}"
    migrate(server_env(database))
    env = server_env(
        database, REDIS_URL=redis_server.url, CHAT_LIMIT_MESSAGES="2/day", CHAT_REDIS_TIMEOUT="1"
    )
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
    a = ServerProcess(command, env, port).start()
    try:
        browser = Visitor(a.url, session_first=True)
        assert [post(browser, a.url, "hello").status_code for _ in range(3)] == [201, 201, 429]
        redis_server.kill()
        assert [post(browser, a.url, "hello").status_code for _ in range(2)] == [201, 201]
        a.wait_for(lambda: "Limits not checked" in a.output, 10, "the warning")
        assert a.output.count("Limits not checked") == 1  # at most one every 30 s
        redis_server.start()  # the same port, empty: counting starts again
        assert [post(browser, a.url, "hello").status_code for _ in range(3)] == [201, 201, 429]
    finally:
        a.stop()
        redis_server.kill()
