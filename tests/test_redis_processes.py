"""Several server processes on one PostgreSQL and one Redis: every process serves every reply live.

Each server is a uvicorn process of its own (as separate machines would be), on the machine's
PostgreSQL (a database of the test's own) and Redis (keys of the test's own), or on a
redis-server the test starts and kills itself.
"""

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis as redis_sync

from chat.providers.demo import demo_tokens
from tests.conftest import free_port
from tests.processes import PYTHON, ServerProcess, Visitor, migrate, port_open, server_env
from tests.sse_client import SSE, text_of

# A checkpoint a second: a stream following the database would get about one text event a
# second; through Redis it gets one per token (20 a second).
PACE = {"CHAT_CHECKPOINT_INTERVAL": "1", "CHAT_DEMO_RATE": "20", "CHAT_DEMO_TOKENS": "60"}


def start_server(database: str, redis_url: str, prefix: str, **env: str) -> ServerProcess:
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
    extra = {**PACE, "REDIS_URL": redis_url, "CHAT_REDIS_PREFIX": prefix, **env}
    return ServerProcess(command, server_env(database, **extra), port).start()


def text_events(received: list[SSE]) -> list[SSE]:
    return [e for e in received if e.event == "message"]


@pytest.fixture
def database(postgres_database) -> str:
    url, _, _ = postgres_database
    migrate(server_env(url))
    return url


@pytest.fixture
def servers(database, redis_settings, settings) -> Iterator[list[ServerProcess]]:
    started = [start_server(database, settings.REDIS_URL, redis_settings) for _ in range(3)]
    yield started
    for server in started:
        server.stop()


def test_a_reply_is_streamed_live_from_another_process_and_resumed_on_a_third(servers):
    a, b, c = servers
    client = Visitor(a.url)
    message = client.send(a.url, "one process writes, two others read")
    first = client.follow(b.url, message["id"], texts=20)
    offset = int(text_events(first)[-1].id)
    rest = client.follow(c.url, message["id"], after=offset)
    assert rest[-1].event == "done" and rest[-1].json["status"] == "complete"
    stored = client.stored(a.url, message)
    expected = "".join(demo_tokens("one process writes, two others read", 60))
    assert stored["content"] == expected
    # No gap, no duplicate across the two processes; ids are the offsets.
    assert text_of(first) + text_of(rest) == expected
    assert int(text_events(rest)[0].id) - len(text_events(rest)[0].json["text"]) == offset
    # Live pace: a text event per token or close to it (following the database's checkpoints,
    # a second apart, would give about one per 20 tokens).
    assert len(text_events(first)) + len(text_events(rest)) >= 45


def test_a_stop_sent_to_another_process_ends_the_reply_at_once(servers):
    a, b, _ = servers
    client = Visitor(a.url)
    message = client.send(a.url, "stop me from elsewhere " * 5)
    stop: dict = {}

    def stop_at(count: int) -> None:
        if count == 5:
            sent = time.monotonic()
            response = client.http.post(f"{b.url}/api/messages/{message['id']}/stop", headers=client.headers)
            stop.update(response.json(), took=time.monotonic() - sent)

    received = client.follow(b.url, message["id"], on_text=stop_at)
    assert stop["status"] == "stopped"
    # Through the database flag it would take a checkpoint (1 s) at least.
    assert stop["took"] < 0.5
    assert received[-1].event == "done" and received[-1].json["status"] == "stopped"
    stored = client.stored(a.url, message)
    assert stored["status"] == "stopped" and stored["content"] == stop["content"] == text_of(received)


def test_a_killed_process_leaves_its_followers_an_interrupted_end_within_the_stale_window(
    database, redis_settings, settings
):
    fast = {"CHAT_CHECKPOINT_INTERVAL": "0.2", "CHAT_STALE_INTERVALS": "5", "CHAT_DEMO_TOKENS": "400"}
    a = start_server(database, settings.REDIS_URL, redis_settings, **fast)
    b = start_server(database, settings.REDIS_URL, redis_settings, **fast)
    try:
        client = Visitor(a.url)
        message = client.send(a.url, "this process will die")
        killed: dict = {}

        def kill_at(count: int) -> None:
            if count == 10:
                a.signal(signal.SIGKILL)
                killed["at"] = time.monotonic()

        received = client.follow(b.url, message["id"], on_text=kill_at)
        ended = time.monotonic() - killed["at"]
        assert received[-1].event == "done" and received[-1].json["status"] == "interrupted"
        stored = client.stored(b.url, message)
        assert stored["status"] == "interrupted"
        # What B showed past A's last checkpoint was kept from Redis: exactly the saved text.
        assert stored["content"] and text_of(received) == stored["content"]
        # The stale window (1 s), the follower's check (every half window) and the database's
        # polling: about 1.5 s; a generous bound, as the machine is shared.
        assert ended < 3.0
    finally:
        a.stop()
        b.stop()


class RedisServer:
    """A redis-server of the test's own, on a free port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


def test_redis_killed_mid_reply_the_reply_completes_and_new_replies_use_it_again(database, own_redis):
    a = start_server(database, own_redis.url, "own:", CHAT_DEMO_TOKENS="80")
    b = start_server(database, own_redis.url, "own:", CHAT_DEMO_TOKENS="80")
    try:
        client = Visitor(a.url)
        content = "redis goes away meanwhile"
        message = client.send(a.url, content)
        results: dict = {}
        local = threading.Thread(target=lambda: results.update(a=client.follow(a.url, message["id"])))
        local.start()

        def kill_at(count: int) -> None:
            if count == 10:
                own_redis.kill()

        results["b"] = client.follow(b.url, message["id"], on_text=kill_at)
        local.join(30)
        expected = "".join(demo_tokens(content, 80))
        stored = client.stored(a.url, message)
        assert (stored["status"], stored["content"]) == ("complete", expected)
        for name in ("a", "b"):  # the generating process's stream, and one on another process
            received = results[name]
            assert received[-1].event == "done" and received[-1].json["status"] == "complete", name
            assert text_of(received) == expected, name

        own_redis.start()  # the same port, empty; A last failed seconds ago: it tries again
        again = client.send(a.url, "redis is back")
        received = client.follow(b.url, again["id"])
        assert received[-1].json["status"] == "complete"
        assert text_of(received) == client.stored(a.url, again)["content"]
        # Live again, not checkpoint bursts: 80 tokens at 20 a second with 1 s checkpoints give
        # a follower of the database about 5 text events; live, one per token, or per frame
        # when the machine is busy and deltas merge (33 seen under load).
        assert len(text_events(received)) >= 20
        keys = redis_sync.Redis.from_url(own_redis.url).keys(f"own:reply:{again['id']}")
        assert keys
    finally:
        a.stop()
        b.stop()


def test_four_uvicorn_workers_serve_every_reply_live_whichever_worker_answers(
    database, redis_settings, settings
):
    """`uvicorn --workers 4`: the POST and the GET of one reply land on any two workers."""
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port), "--workers", "4"]
    extra = {
        **PACE,
        "CHAT_DEMO_TOKENS": "30",
        "REDIS_URL": settings.REDIS_URL,
        "CHAT_REDIS_PREFIX": redis_settings,
    }
    server = ServerProcess(command, server_env(database, **extra), port).start()
    try:
        client = Visitor(server.url)
        for i in range(6):
            content = f"worker question {i}"
            message = client.send(server.url, content)
            received = client.follow(server.url, message["id"])
            assert received[-1].json["status"] == "complete"
            assert (
                text_of(received)
                == "".join(demo_tokens(content, 30))
                == client.stored(server.url, message)["content"]
            )
            assert len(text_events(received)) >= 20  # live, whichever worker generates it
        message = client.send(server.url, "stop me, any worker")
        stopped = client.http.post(
            f"{server.url}/api/messages/{message['id']}/stop", headers=client.headers
        ).json()
        assert stopped["status"] == "stopped"
    finally:
        server.stop()


def test_reasoning_and_tool_steps_are_streamed_from_another_process(
    servers, database, redis_settings, settings
):
    """Issue 12's steps go through Redis too: the stream on B has them, in order, as stored."""
    a = start_server(database, settings.REDIS_URL, redis_settings, CHAT_DEMO_STEPS="1")
    try:
        b = servers[1]
        client = Visitor(a.url)
        message = client.send(a.url, "think, then call a tool")
        received = client.follow(b.url, message["id"])
        kinds = [e.event for e in received]
        assert received[-1].event == "done" and received[-1].json["status"] == "complete"
        assert "reasoning" in kinds and "tool_call" in kinds and "tool_result" in kinds
        assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("message")
        stored = client.stored(a.url, message)
        assert text_of(received) == stored["content"]
        reasoning = "".join(e.json["text"] for e in received if e.event == "reasoning")
        assert reasoning == stored["reasoning"]
    finally:
        a.stop()
