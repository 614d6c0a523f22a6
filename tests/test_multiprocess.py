"""Several server processes on one database: any process follows and stops any reply.

Without Redis each process has its own event log; a stream served by a process that is not
generating the reply follows the reply's checkpoints in the database, and a stop reaches the
generating process through the database.
"""

import asyncio

import pytest

from tests.conftest import free_port
from tests.processes import PYTHON, ServerProcess, Visitor, migrate, server_env
from tests.sse_client import stream_new_replies, text_of

FAST = {"CHAT_CHECKPOINT_INTERVAL": "0.1", "CHAT_DEMO_RATE": "40", "CHAT_DEMO_TOKENS": "80"}


def uvicorn(database: str, *args: str, **env: str) -> ServerProcess:
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port), *args]
    return ServerProcess(command, server_env(database, **FAST, **env), port).start()


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
    browser = Visitor(a.url, session_first=True)
    message = browser.send(a.url, "follow me elsewhere")
    received = browser.follow(b.url, message["id"])
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    stored = browser.stored(a.url, message)
    assert text_of(received) == stored["content"] and stored["status"] == "complete"


def test_a_reply_is_stopped_from_another_process_and_keeps_its_text(two_servers):
    a, b = two_servers
    browser = Visitor(a.url, session_first=True)
    message = browser.send(a.url, "stop me from elsewhere")
    stopped = {}

    def stop(texts: int) -> None:  # at the first text event
        if texts == 1:
            response = browser.http.post(
                f"{b.url}/api/messages/{message['id']}/stop", headers=browser.headers
            )
            stopped.update(response.json())

    received = browser.follow(b.url, message["id"], on_text=stop)
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
        browser = Visitor(server.url, session_first=True)
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
