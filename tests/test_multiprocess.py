"""Several server processes on one database: any process follows and stops any reply.

Without Redis each process has its own event log; a stream served by a process that is not
generating the reply follows the reply's checkpoints in the database, and a stop reaches the
generating process through the database.
"""

import asyncio

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import PYTHON, ServerProcess, migrate, server_env
from tests.sse_client import events, stream_new_replies, text_of

FAST = {"CHAT_CHECKPOINT_INTERVAL": "0.1", "CHAT_DEMO_RATE": "40", "CHAT_DEMO_TOKENS": "80"}


def uvicorn(database: str, *args: str, **env: str) -> ServerProcess:
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port), *args]
    return ServerProcess(command, server_env(database, **FAST, **env), port).start()


class Browser:
    """One cookie jar for every server: cookies are per host, not per port."""

    def __init__(self, first_url: str) -> None:
        self.http = httpx.Client(timeout=30)
        self.http.get(first_url + "/")
        # A session first, so that requests sent at once all belong to this visitor.
        self.http.post(first_url + "/api/conversations", json={}, headers=self.headers).raise_for_status()

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies["csrftoken"]}

    def send(self, url: str, content: str) -> dict:
        response = self.http.post(url + "/api/conversations", json={"content": content}, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()["assistant_message"]

    def follow(self, url: str, message_id: str, on_first_text=None) -> list:
        received = []
        with self.http.stream("GET", f"{url}/api/messages/{message_id}/stream") as response:
            assert response.status_code == 200
            for event in events(response.iter_lines()):
                received.append(event)
                if (
                    event.event == "message"
                    and on_first_text
                    and sum(e.event == "message" for e in received) == 1
                ):
                    on_first_text()
                if event.event in ("done", "error"):
                    return received
        return received

    def stored(self, url: str, message: dict) -> dict:
        response = self.http.get(f"{url}/api/conversations/{message['conversation_id']}")
        assert response.status_code == 200, response.text
        conversation = response.json()
        return next(m for m in conversation["messages"] if m["id"] == message["id"])


@pytest.fixture
def two_servers(tmp_path):
    database = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    migrate(server_env(database))
    servers = [uvicorn(database), uvicorn(database)]
    yield servers
    for server in servers:
        server.stop()


def test_a_reply_is_followed_to_its_end_from_another_process(two_servers):
    a, b = two_servers
    browser = Browser(a.url)
    message = browser.send(a.url, "follow me elsewhere")
    received = browser.follow(b.url, message["id"])
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    stored = browser.stored(a.url, message)
    assert text_of(received) == stored["content"] and stored["status"] == "complete"


def test_a_reply_is_stopped_from_another_process_and_keeps_its_text(two_servers):
    a, b = two_servers
    browser = Browser(a.url)
    message = browser.send(a.url, "stop me from elsewhere")
    stopped = {}

    def stop() -> None:
        response = browser.http.post(f"{b.url}/api/messages/{message['id']}/stop", headers=browser.headers)
        stopped.update(response.json())

    received = browser.follow(b.url, message["id"], on_first_text=stop)
    assert stopped["status"] == "stopped"
    assert received[-1].event == "done" and received[-1].json["status"] == "stopped"
    stored = browser.stored(a.url, message)
    assert stored["status"] == "stopped"
    assert text_of(received) == stored["content"] == stopped["content"]
    assert 0 < len(stored["content"]) < 400


def connections_to(admin, name: str) -> int:
    return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()[0]


def test_postgres_with_two_workers_streams_stops_and_keeps_connections_flat(postgres_database):
    database, name, admin = postgres_database
    migrate(server_env(database))
    workers, threads, pool = 2, 2, 6
    server = uvicorn(
        database, "--workers", str(workers), CHAT_DB_THREADS=str(threads), DATABASE_POOL_SIZE=str(pool)
    )
    try:
        browser = Browser(server.url)
        # Replies from both workers, streamed at once; each one saved with exactly what was sent.
        results = asyncio.run(
            stream_new_replies(server.url, 40, browser.http.cookies, browser.headers["X-CSRFToken"])
        )
        for received in results:
            assert received[-1].event == "done" and received[-1].json["status"] == "complete"
        # Each worker's pool bounds its connections: requests borrow one, the replies' writer
        # threads keep one each.
        assert connections_to(admin, name) <= workers * pool
        results = asyncio.run(
            stream_new_replies(server.url, 40, browser.http.cookies, browser.headers["X-CSRFToken"])
        )
        assert connections_to(admin, name) <= workers * pool
        for received in results:
            message = {
                "id": received[1].json["message_id"],
                "conversation_id": received[1].json["conversation_id"],
            }
            stored = browser.stored(server.url, message)
            assert (stored["status"], stored["content"]) == ("complete", text_of(received))
        # A stop reaches the reply whichever worker generates it and whichever answers the stop.
        for _ in range(4):
            message = browser.send(server.url, "stop me")
            response = browser.http.post(
                f"{server.url}/api/messages/{message['id']}/stop", headers=browser.headers
            )
            assert response.json()["status"] == "stopped"
            received = browser.follow(server.url, message["id"])
            assert received[-1].json["status"] == "stopped"
            assert text_of(received) == browser.stored(server.url, message)["content"]
    finally:
        server.stop()
