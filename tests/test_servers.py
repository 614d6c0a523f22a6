"""The app run as people run it, in processes of its own: `manage.py runserver` and uvicorn."""

import signal
import sqlite3
import time
from pathlib import Path

import django
import httpx
import pytest
import uvicorn

from tests.conftest import free_port
from tests.processes import PYTHON, ROOT, ServerProcess, migrate, server_env
from tests.sse_client import events, text_of


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate(server_env(url))
    return url


@pytest.fixture
def start(database):
    started: list[ServerProcess] = []

    def run(kind: str, *, extra_args: tuple[str, ...] = (), **env: str) -> ServerProcess:
        port = free_port()
        if kind == "runserver":
            args = [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", *extra_args]
        else:
            args = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port), *extra_args]
        process = ServerProcess(args, server_env(database, **env), port).start()
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def rows(database: str, sql: str) -> list[tuple]:
    with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
        return conn.execute(sql).fetchall()


def stream_reply(url: str, content: str, *, stop_after: int | None = None, on_text=None):
    """POST a message with Accept: text/event-stream; events with their arrival times."""
    received = []
    try:
        with (
            httpx.Client(base_url=url, timeout=30) as client,
            client.stream(
                "POST",
                "/api/conversations",
                json={"content": content},
                headers={"Accept": "text/event-stream"},
            ) as response,
        ):
            assert response.status_code == 200
            for event in events(response.iter_lines()):
                received.append(event)
                texts = sum(e.event == "message" for e in received)
                if event.event == "message" and on_text and texts == stop_after:
                    on_text()
                if event.event in ("done", "error"):
                    break
    except httpx.RemoteProtocolError:  # the server died mid-stream (the crash test)
        pass
    return received


def assert_streamed_over_time(received) -> None:
    """20 tokens at 20 a second: the text arrives across about a second, not in one burst."""
    texts = [e for e in received if e.event == "message"]
    assert len(texts) >= 10, "deltas were merged into a few events: the stream was buffered"
    assert received[-1].event == "done"
    assert received[-1].at - texts[0].at > 0.5


@pytest.mark.parametrize("kind", ["runserver", "uvicorn"])
def test_events_arrive_over_time_not_at_the_end(start, kind):
    server = start(kind, CHAT_DEMO_RATE="20", CHAT_DEMO_TOKENS="20")
    assert_streamed_over_time(stream_reply(server.url, "stream please"))


def test_runserver_keeps_the_banner_addrport_and_static_files(start):
    server = start("runserver")
    server.wait_for(lambda: "Quit the server with CONTROL-C." in server.output, 20, "the banner")
    # What serves, whatever Django's own banner says (6.0's: "Starting WSGI development server").
    started = (
        f"Starting ASGI development server (uvicorn {uvicorn.__version__}) at http://127.0.0.1:{server.port}/"
    )
    assert started in server.output
    assert f"Django version {django.get_version()}" in server.output
    assert "System check identified no issues" in server.output
    assert "Watching for file changes with StatReloader" in server.output
    css = httpx.get(server.url + "/static/chat/chat.css")
    assert css.status_code == 200 and "color-scheme" in css.text


def test_runserver_accepts_nostatic_and_the_app_still_serves_its_static_files(start):
    """As in production, the application serves them (ServeStatic's middleware)."""
    server = start("runserver", extra_args=("--nostatic", "--noreload"))
    assert httpx.get(server.url + "/static/chat/chat.css").status_code == 200


@pytest.mark.parametrize(
    ("kind", "extra_args", "sig", "group"),
    [
        ("runserver", (), signal.SIGINT, True),  # Ctrl-C in the terminal: the whole job
        ("runserver", ("--noreload",), signal.SIGINT, True),
        ("runserver", ("--noreload",), signal.SIGTERM, False),
        ("uvicorn", (), signal.SIGTERM, False),
        ("uvicorn", (), signal.SIGINT, True),
    ],
)
def test_stopping_the_server_saves_replies_in_flight_as_interrupted(
    start, database, kind, extra_args, sig, group
):
    server = start(kind, extra_args=extra_args, CHAT_DEMO_RATE="20", CHAT_DEMO_TOKENS="400")
    received = stream_reply(
        server.url, "a long answer", stop_after=5, on_text=lambda: server.signal(sig, group=group)
    )
    # uvicorn re-raises the signal once it has shut down cleanly: exiting by it is normal.
    assert server.wait(20) in (0, -sig), server.output
    assert received[-1].event == "done" and received[-1].json["status"] == "interrupted"
    [(status, content)] = rows(database, "SELECT status, content FROM chat_message WHERE role = 'assistant'")
    assert status == "interrupted"
    assert content == text_of(received) and len(content) > 0


def test_sigterm_to_the_reloader_s_parent_leaves_the_reply_to_the_next_start_s_sweeper(start, database):
    """Django's reloader kills the server process on SIGTERM (runserver's docstring): the reply
    keeps its last checkpoint, and the next server marks it `interrupted`."""
    env = {"CHAT_DEMO_RATE": "20", "CHAT_DEMO_TOKENS": "400", "CHAT_CHECKPOINT_INTERVAL": "0.1"}
    server = start("runserver", **env)
    terminate = lambda: server.signal(signal.SIGTERM)  # noqa: E731 - the parent only
    received = stream_reply(server.url, "a long answer", stop_after=5, on_text=terminate)
    assert server.wait(20) == 0, server.output
    assert received[-1].event not in ("done", "error")  # the connection just died
    status = "SELECT status FROM chat_message WHERE role = 'assistant'"
    assert rows(database, status) == [("streaming",)]
    next_start = start("uvicorn", **env)
    next_start.wait_for(lambda: rows(database, status) == [("interrupted",)], 15, "the sweeper")


def test_a_code_change_reloads_runserver_and_saves_the_reply_in_flight(start, database):
    server = start("runserver", CHAT_DEMO_RATE="20", CHAT_DEMO_TOKENS="400")
    server.wait_for(lambda: "Quit the server" in server.output, 20, "the banner")
    watched = ROOT / "chat" / "conf.py"
    received = stream_reply(server.url, "reload me", stop_after=3, on_text=lambda: watched.touch())
    assert received[-1].json["status"] == "interrupted"
    server.wait_for(lambda: "conf.py changed, reloading." in server.output, 20, "the reload")
    server.wait_for(lambda: server.output.count("Quit the server") == 2, 30, "the second banner")
    server.wait_for(lambda: _answers(server.url), 20, "the reloaded server")
    assert rows(database, "SELECT status FROM chat_message WHERE role = 'assistant'") == [("interrupted",)]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/models", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_crashed_server_s_reply_is_marked_interrupted_by_the_next_one(start, database):
    env = {"CHAT_DEMO_RATE": "20", "CHAT_DEMO_TOKENS": "400", "CHAT_CHECKPOINT_INTERVAL": "0.1"}
    first = start("uvicorn", **env)
    received = stream_reply(
        first.url, "crash", stop_after=5, on_text=lambda: first.signal(signal.SIGKILL, group=True)
    )
    assert received[-1].event not in ("done", "error")  # the connection just died
    time.sleep(0.1)
    assert rows(database, "SELECT status FROM chat_message WHERE role = 'assistant'") == [("streaming",)]
    second = start("uvicorn", **env)  # stale after 10 intervals: 1 s
    second.wait_for(
        lambda: (
            rows(database, "SELECT status FROM chat_message WHERE role = 'assistant'") == [("interrupted",)]
        ),
        15,
        "the dead reply to be marked interrupted",
    )
    [(content,)] = rows(database, "SELECT content FROM chat_message WHERE role = 'assistant'")
    assert text_of(received).startswith(content)  # the last checkpoint, a prefix of what was sent
