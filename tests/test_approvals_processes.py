"""An approval decided on another process than the one generating the reply (issue 31): the
ToolApproval row carries it; the stream on the other process asks, from the database without
Redis (DatabaseFollower) or live through Redis."""

import threading

import pytest

from tests.conftest import free_port
from tests.processes import PYTHON, ServerProcess, Visitor, migrate, server_env
from tests.sse_client import SSE, events

APPROVAL = {
    "CHAT_DEMO_STEPS": "1",
    "CHAT_TOOLS_APPROVAL": "current_time",
    "CHAT_DEMO_RATE": "40",
    "CHAT_CHECKPOINT_INTERVAL": "0.1",
}


def uvicorn(database: str, **env: str) -> ServerProcess:
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
    return ServerProcess(command, server_env(database, **APPROVAL, **env), port).start()


def follow_and_approve(client: Visitor, url: str, message_id: str) -> tuple[list[SSE], list]:
    """B's stream of the reply to its end; once it asks, B is told to run the call."""
    received: list[SSE] = []
    answers: list = []

    def approve(call_id: str) -> None:
        body = {"tool_call_id": call_id, "approved": True}
        answers.append(
            client.http.post(f"{url}/api/messages/{message_id}/approve", json=body, headers=client.headers)
        )

    with client.http.stream("GET", f"{url}/api/messages/{message_id}/stream") as response:
        assert response.status_code == 200
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event == "status" and event.json["state"] == "approval":
                threading.Thread(target=approve, args=(event.json["tool_call_id"],)).start()
            if event.event in ("done", "error"):
                break
    return received, answers


def _check(
    client: Visitor, a: ServerProcess, message: dict, received: list[SSE], answers: list, then: dict
) -> None:
    """`then`: the status after the approval, which tells the paths apart: live (the tool runs)
    or from the database (the row no longer waits)."""
    statuses = [e.json for e in received if e.event == "status"]
    asked = [s for s in statuses if s["state"] == "approval"]
    assert statuses[statuses.index(asked[0]) + 1] == then
    assert asked == [
        {"state": "approval", "tool_call_id": "call_demo_1", "name": "current_time", "arguments": {}}
    ]
    assert answers[0].status_code == 200 and answers[0].json()["state"] == "approved"
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    stored = client.stored(a.url, message)
    assert stored["content"].startswith("The server's clock says it is")
    assert stored["steps"][-1]["approval"] == "approved"


def test_approved_on_another_process_without_redis(tmp_path):
    database = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    migrate(server_env(database))
    a, b = uvicorn(database), uvicorn(database)
    try:
        client = Visitor(a.url, session_first=True)
        message = client.send(a.url, "What time is it?")
        received, answers = follow_and_approve(client, b.url, message["id"])
        _check(client, a, message, received, answers, {"state": "thinking"})
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def postgres(postgres_database) -> str:
    url, _, _ = postgres_database
    migrate(server_env(url))
    return url


def test_approved_on_another_process_through_redis(postgres, redis_settings, settings):
    redis = {"REDIS_URL": settings.REDIS_URL, "CHAT_REDIS_PREFIX": redis_settings}
    a, b = uvicorn(postgres, **redis), uvicorn(postgres, **redis)
    try:
        client = Visitor(a.url)
        message = client.send(a.url, "What time is it?")
        received, answers = follow_and_approve(client, b.url, message["id"])
        _check(client, a, message, received, answers, {"state": "tool", "name": "current_time"})
    finally:
        a.stop()
        b.stop()
