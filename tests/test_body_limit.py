"""An API request's body over the limit is refused before Django reads it (chat.asgi.BodyLimit):
through a real uvicorn with a raw socket, so that what the server reads, and when it answers,
is the client's to see."""

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from asgiref.testing import ApplicationCommunicator

from chat.models import Conversation
from project.asgi import application

LIMIT = 10_000


def too_large(limit: int = LIMIT) -> dict:
    """The contract's 413, with the view's sentence."""
    return {"error": f"The request body is over the limit of {limit:,} bytes.", "code": "too_large"}


@pytest.fixture
def limit(settings) -> int:
    settings.CHAT_MAX_BODY_BYTES = LIMIT
    return LIMIT


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn and asyncio log as errors meanwhile: an application that returned without
    answering, or a task that failed, is logged there."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


@contextmanager
def connection(server) -> Iterator[socket.socket]:
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        yield sock


def head(path: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        received = sock.recv(65536)
        assert received, f"the server closed the connection without answering: {data!r}"
        data += received
    head_part, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        received = sock.recv(65536)
        assert received, "the server closed the connection mid-body"
        body += received
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def assert_too_large(response: tuple[int, dict[str, str], bytes], limit: int = LIMIT) -> None:
    status, headers, body = response
    assert status == 413, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == too_large(limit)


def test_a_content_length_over_the_limit_is_answered_before_any_body_is_sent(server, limit, server_errors):
    """Headers alone: had the server waited for the 500 MiB it was promised, read_response
    would time out. A client that asks `Expect: 100-continue` (curl, over 1 MiB) is never told
    to send the body."""
    with connection(server) as sock:
        sock.sendall(head("/api/conversations", Content_Length=str(500 * 2**20), Expect="100-continue"))
        response = read_response(sock)
        assert_too_large(response)
        assert response[1]["connection"] == "close"
        assert closed_by_server(sock)
    assert Conversation.objects.count() == 0
    assert server_errors == []


def test_a_chunked_body_is_refused_once_past_the_limit_and_the_rest_is_not_read(server, limit, server_errors):
    """2x the limit to send; the 413 comes once the limit is crossed, with the other half not
    sent yet, and the server closes the connection rather than read it: Django held at most
    the limit (nothing spooled to disk), and its handler ended without an error."""
    upload = b" " * (2 * LIMIT)
    with connection(server) as sock:
        sock.sendall(head("/api/conversations", Transfer_Encoding="chunked"))
        sock.sendall(b"".join(chunk(upload[start : start + 1000]) for start in range(0, LIMIT, 1000)))
        sock.sendall(chunk(upload[LIMIT : LIMIT + 1]))  # one byte over the limit
        assert_too_large(read_response(sock))  # LIMIT - 1 bytes still to send
        assert closed_by_server(sock)
    assert Conversation.objects.count() == 0
    assert server_errors == []
    assert httpx.post(f"{server.url}/api/conversations", json={}).status_code == 201  # still serving


def test_a_chunked_body_of_exactly_the_limit_is_read_and_served(server, limit):
    body = json.dumps({"title": "At the limit"}).encode()
    body += b" " * (LIMIT - len(body))  # JSON allows the whitespace
    with connection(server) as sock:
        sock.sendall(head("/api/conversations", Transfer_Encoding="chunked"))
        sock.sendall(chunk(body[:4000]) + chunk(body[4000:]) + b"0\r\n\r\n")
        status, _, answer = read_response(sock)
    assert status == 201, answer
    assert json.loads(answer)["title"] == "At the limit"


def test_bodies_under_the_limit_still_work(tab, limit):
    conversation = tab.conversation(title="Small")
    sent = tab.send("hello", conversation["id"])
    assert tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])["status"] == "complete"


def test_a_body_longer_than_its_content_length_reaches_the_api_only_as_declared(server, limit):
    """The server frames a body by its Content-Length: the API reads the declared bytes, and
    what follows is a malformed next request, refused by the server, never a body."""
    declared = json.dumps({"title": "Declared"}).encode()
    with connection(server) as sock:
        sock.sendall(head("/api/conversations", Content_Length=str(len(declared))) + declared)
        status, _, answer = read_response(sock)
        assert status == 201 and json.loads(answer)["title"] == "Declared"
        sock.sendall(b"x" * 2 * LIMIT)
        status, _, answer = read_response(sock)
        assert status == 400 and b"Invalid HTTP request" in answer
        assert closed_by_server(sock)
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Declared"]


def http_scope(path: str, content_length: int, root_path: str = "") -> dict:
    """A request's scope as a server passes it (the ASGI spec's `http` scope)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(content_length).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def served(scope: dict, body: list[bytes]) -> list[dict]:
    """What the application sends for `scope` and the body's messages, once it has returned."""

    async def run() -> list[dict]:
        communicator = ApplicationCommunicator(application, scope)
        for part in body:
            await communicator.send_input({"type": "http.request", "body": part, "more_body": True})
        sent = [await communicator.receive_output(5), await communicator.receive_output(5)]
        await communicator.wait(5)  # the application (Django's handler in it) returned, without an error
        assert await communicator.receive_nothing()
        return sent

    return asyncio.run(asyncio.wait_for(run(), 10))


def test_a_server_that_passes_on_more_than_the_content_length_is_cut_at_the_limit(limit):
    """A server that does not frame bodies (the ASGI spec leaves it to the server): the bytes
    are counted as they come, whatever the header said, and Django's handler is told the
    client went away once they pass the limit."""
    start, body = served(http_scope("/api/conversations", content_length=20), [b" " * 4000] * 3)
    assert start["type"] == "http.response.start" and start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(body["body"]) == too_large() and not body.get("more_body", False)


def test_the_limit_follows_the_script_name_the_server_gives(limit):
    """Behind a proxy that mounts the site under /site (uvicorn --root-path /site), the path
    Django resolves is what follows the root path."""
    scope = http_scope("/site/api/conversations", content_length=500 * 2**20, root_path="/site")
    start, body = served(scope, [])
    assert start["status"] == 413 and json.loads(body["body"]) == too_large()


def test_the_hosts_other_paths_are_not_held_to_the_chat_limit(server, limit):
    """The admin's login form, 2x the chat's limit: Django reads it and the admin answers."""
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        browser.get("/admin/login/").raise_for_status()
        form = {
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            "username": "nobody",
            "password": "x" * (2 * LIMIT),
        }
        response = browser.post("/admin/login/", data=form)
    assert response.status_code == 200
    assert "Please enter the correct username and password" in response.text


def test_the_limit_follows_the_apps_mount_prefix(server, limit, settings):
    settings.ROOT_URLCONF = "tests.urls_mounted"
    with connection(server) as sock:
        sock.sendall(head("/assistant/api/conversations", Content_Length=str(500 * 2**20)))
        assert_too_large(read_response(sock))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post("/api/conversations", content=b" " * (2 * LIMIT))
    assert response.status_code == 404  # not the app's any more: Django read it and found nothing


def test_djangos_smaller_upload_limit_is_the_apis_too(server, limit, settings):
    """request.body refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE: where the host set that
    lower, the 413 comes at once and names it."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    with connection(server) as sock:
        sock.sendall(head("/api/conversations", Content_Length="2001"))
        assert_too_large(read_response(sock), limit=2_000)
