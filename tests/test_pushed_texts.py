"""Texts written out by the reply's own task (issue 14): chat/sse.py `Outlet`, the memory log's
`push_text`, and a real uvicorn server with clients that read fast, slowly, or not at all."""

import asyncio
import concurrent.futures
import contextvars
import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from chat import sse
from chat.eventlog import End, Status, Text
from chat.eventlog.memory import MemoryEventLog
from chat.models import Message
from chat.sse import EventStreamResponse, Outlet
from tests.fakes import script
from tests.sse_client import Parser, last_id, text_of

# --- the outlet: an ASGI send run by hand -------------------------------------------------------


class Server:
    """An ASGI `send` that takes a part at once, or waits (flow control) while `paused`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.paused: asyncio.Future | None = None

    async def send(self, message: dict) -> None:
        if self.paused is not None:
            await self.paused
        self.parts.append(message["body"])


def paused_outlet() -> tuple[Server, Outlet]:
    """An outlet on a server that waits for its client until `server.paused` is resolved."""
    server = Server()
    server.paused = asyncio.get_running_loop().create_future()
    return server, Outlet(server.send)


def test_parts_written_in_a_turn_of_the_loop_are_sent_at_its_end_and_cost_no_task():
    async def run():
        one, two = Server(), Server()
        first, second = Outlet(one.send), Outlet(two.send)
        before = len(asyncio.all_tasks())
        first.write(b"a")
        second.write(b"x")
        first.write(b"b")
        assert one.parts == [] and two.parts == [] and first.busy  # not yet: the turn goes on
        await asyncio.sleep(0)  # the end of the turn
        assert one.parts == [b"ab"] and two.parts == [b"x"]  # one write per stream, in order
        assert not first.busy and not second.busy
        assert len(asyncio.all_tasks()) == before

    asyncio.run(run())


def test_drain_sends_at_once_what_was_written_and_the_turn_does_not_send_it_again():
    async def run():
        server = Server()
        outlet = Outlet(server.send)
        outlet.write(b"a")
        await outlet.drain()  # the response's own task, about to send a part of its own
        assert server.parts == [b"a"]
        await asyncio.sleep(0)
        assert server.parts == [b"a"]

    asyncio.run(run())


def test_a_part_the_server_must_wait_for_is_finished_in_order_before_the_next():
    async def run():
        server, outlet = paused_outlet()
        outlet.write(b"a")
        await asyncio.sleep(0)  # handed over at the end of the turn; the server waits
        assert outlet.pending is not None and outlet.busy and server.parts == []
        drained = asyncio.ensure_future(outlet.drain())
        await asyncio.sleep(0.01)
        assert not drained.done()
        server.paused.set_result(None)
        server.paused = None
        await drained
        assert server.parts == [b"a"] and outlet.pending is None
        outlet.write(b"b")
        await asyncio.sleep(0)
        assert server.parts == [b"a", b"b"]

    asyncio.run(run())


def test_a_part_the_server_refuses_fails_the_responses_own_task_at_its_next_event():
    calls = []

    async def broken(message: dict) -> None:
        calls.append(message["body"])
        raise RuntimeError("response already complete")

    async def run():
        outlet = Outlet(broken)
        outlet.write(b"a")
        await asyncio.sleep(0)  # the turn's end: refused, kept for the response's own task
        assert outlet.busy
        with pytest.raises(RuntimeError, match="already complete"):
            await outlet.drain()
        assert calls == [b"a", b"a"] and not outlet.busy

    asyncio.run(run())


def test_a_wait_cancelled_reaches_the_server_call():
    async def run():
        server, outlet = paused_outlet()
        outlet.write(b"a")
        await asyncio.sleep(0)
        outlet.pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outlet.drain()
        assert server.parts == [] and outlet.pending is None

    asyncio.run(run())


# --- only a body nothing changes may be written around Django ---------------------------------


def _opened(response: EventStreamResponse) -> bool:
    """Whether the outlet opens once Django's handler starts reading the response."""

    async def run():
        parts = [part async for part in aiter(response)]  # as Django's handler reads it
        assert parts
        return response.outlet.open

    return asyncio.run(run())


async def _stream():
    yield b"data: x\n\n"


def test_the_outlet_opens_only_when_the_body_is_the_apps_own_bytes():
    send = Server().send
    assert _opened(EventStreamResponse(_stream(), Outlet(send)))
    # A middleware that rewrote the body (GZip): its bytes must go through it.
    changed = EventStreamResponse(_stream(), Outlet(send))
    changed.streaming_content = (part.upper() async for part in _stream())
    assert not _opened(changed)


def test_only_a_request_served_through_the_chat_lifespan_has_an_outlet(rf):
    from django.core.handlers.asgi import ASGIHandler

    from chat.asgi import ChatLifespan

    assert ChatLifespan(ASGIHandler()).direct
    assert not ChatLifespan(lambda scope, receive, send: None).direct
    assert Outlet.for_request(rf.get("/")) is None  # WSGI, or Django's test client


def test_what_a_request_sets_in_its_context_goes_when_django_is_done_with_it():
    """Django's part of a request runs in a task of its own, in a copy of the connection's
    context: what it sets there (asgiref's locals, the request's executor) does not stay with
    an open stream for the stream's life (issue 14: memory per idle stream)."""
    from django.core.handlers.asgi import ASGIHandler

    from chat.asgi import ChatLifespan
    from chat.request_thread import _current

    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)
    seen: dict = {}
    sent: list[dict] = []

    class Handler(ASGIHandler):
        async def __call__(self, scope, receive, send):
            marker.set("set by the request")
            seen["executor"] = _current.get()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def run() -> tuple:
        await ChatLifespan(Handler())({"type": "http"}, receive, send)
        return marker.get(), _current.get()

    assert asyncio.run(run()) == (None, None)
    assert seen["executor"] is not None  # the request had its own while Django's handler ran
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


# --- the memory log: a text pushed while next() waits, anything else returned -----------------


def test_a_waiting_subscriber_gets_plain_texts_pushed_and_the_rest_from_next():
    async def run():
        log = MemoryEventLog()
        await log.open("r")
        await log.set_status("r", "thinking")
        subscription = await log.subscribe("r", 0)
        assert await subscription.next(0) == Status("thinking")
        pushed: list[Text] = []
        refuse = False

        def push(offset: int, text: str) -> bool:
            if refuse:
                return False
            pushed.append(Text(offset, text))
            return True

        assert subscription.push_text(push)
        waiting = asyncio.ensure_future(subscription.next(5))
        await asyncio.sleep(0)
        await log.append("r", "Hel")
        await log.append("r", "lo")
        assert pushed == [Text(3, "Hel"), Text(5, "lo")]
        assert not waiting.done()  # the subscriber's task was not woken
        refuse = True  # a text refused is not lost: next() returns it
        await log.append("r", "!")
        assert await waiting == Text(6, "!")
        waiting = asyncio.ensure_future(subscription.next(5))
        await asyncio.sleep(0)
        await log.end("r", End(status="complete"))
        assert await waiting == End(status="complete")
        assert pushed == [Text(3, "Hel"), Text(5, "lo")]

    asyncio.run(run())


def test_a_push_that_fails_never_fails_the_writer(caplog):
    async def run():
        log = MemoryEventLog()
        await log.open("r")
        subscription = await log.subscribe("r", 0)

        def broken(offset: int, text: str) -> bool:
            raise RuntimeError("a bug in the stream")

        subscription.push_text(broken)
        waiting = asyncio.ensure_future(subscription.next(5))
        await asyncio.sleep(0)
        assert await log.append("r", "a") == 1  # the reply's task goes on
        assert await waiting == Text(1, "a")  # and the stream reads the text from the log
        waiting = asyncio.ensure_future(subscription.next(5))
        await asyncio.sleep(0)
        await log.append("r", "b")
        assert await waiting == Text(2, "b")

    asyncio.run(run())
    assert "could not take a text pushed to it" in caplog.text


def test_silence_is_counted_from_the_last_text_pushed():
    async def run():
        log = MemoryEventLog()
        await log.open("r")
        subscription = await log.subscribe("r", 0)
        subscription.push_text(lambda offset, text: True)
        loop = asyncio.get_running_loop()
        start = loop.time()
        waiting = asyncio.ensure_future(subscription.next(0.2))
        for i in range(6):  # a text every 0.05 s for 0.3 s: no heartbeat is due meanwhile
            await asyncio.sleep(0.05)
            await log.append("r", str(i))
        assert await waiting is None  # the heartbeat, once the texts stopped
        assert loop.time() - start >= 0.3 + 0.2 - 0.01

    asyncio.run(run())


def test_only_a_text_alone_is_pushed_a_new_status_or_a_step_wakes_the_subscriber_first():
    """The memory log pushes the newest text at once only when it is all that is new to the
    subscriber; a state it shows, a step, or the end go through next(), in the log's order."""
    from chat.eventlog import ReasoningText

    async def run():
        log = MemoryEventLog()
        await log.open("r")
        subscription = await log.subscribe("r", 0)
        pushed: list[Text] = []

        def push(offset: int, text: str) -> bool:
            pushed.append(Text(offset, text))
            return True

        subscription.push_text(push)

        async def waiting_for(change) -> object:
            waiting = asyncio.ensure_future(subscription.next(5))
            await asyncio.sleep(0)
            await change()
            return await waiting

        assert await waiting_for(lambda: log.set_status("r", "thinking")) == Status("thinking")
        step = ReasoningText(0, 3, "hmm")
        assert await waiting_for(lambda: log.append_step("r", step)) == step
        waiting = asyncio.ensure_future(subscription.next(5))
        await asyncio.sleep(0)
        await log.append("r", "Hel")  # after a step: pushed all the same
        await log.append("r", "lo")
        assert pushed == [Text(3, "Hel"), Text(5, "lo")] and not waiting.done()
        await log.end("r", End(status="complete"))
        assert await waiting == End(status="complete")

    asyncio.run(run())


# --- through the real server --------------------------------------------------------------------


@pytest.fixture
def writes(monkeypatch):
    """Counts the texts a reply's task wrote straight to a stream, and the writes that waited."""
    counts = {"written": 0, "waited": 0}
    write, run_rest = Outlet.write, sse._run_rest

    def counted_write(self, data, turn=None):
        counts["written"] += 1
        return write(self, data, turn)

    def counted_rest(call, waiting_for):
        counts["waited"] += 1
        return run_rest(call, waiting_for)

    monkeypatch.setattr(Outlet, "write", counted_write)
    monkeypatch.setattr(sse, "_run_rest", counted_rest)
    return counts


def test_a_paced_reply_is_written_by_its_own_task_with_the_same_events(tab, writes):
    steps = [{"say": f" word{i}"} for i in range(12)]
    paced = [x for step in steps for x in (step, {"sleep": 0.03})]  # past the merge window
    sent = tab.send(script(*paced), model="script:fake")
    mid = sent["assistant_message"]["id"]
    received = tab.stream(mid)
    texts = [e for e in received if e.event == "message"]
    words = [step["say"] for step in steps]
    assert "".join(e.json["text"] for e in texts) == "".join(words)
    # Each id is the text's length once it is added, whoever wrote it; each event is whole
    # tokens (a busy machine may merge two within the window).
    ends = {len("".join(words[: i + 1])) for i in range(len(words))}
    assert all(int(e.id) in ends for e in texts)
    assert [int(e.id) for e in texts] == sorted({int(e.id) for e in texts})
    assert [e.event for e in received[:3]] == ["retry", "start", "status"]
    assert received[-1].event == "done"
    assert writes["written"] >= 6  # the first text and any within the window go the usual way
    assert text_of(received) == Message.objects.get(pk=mid).content
    # Resuming from a pushed text's id gives exactly the rest.
    middle = int(texts[len(texts) // 2].id)
    rest = tab.stream(mid, last_event_id=middle)
    assert text_of(rest) == "".join(words)[middle:]


def test_no_heartbeat_while_texts_are_pushed(tab, settings, writes):
    settings.CHAT_HEARTBEAT_INTERVAL = 0.15
    paced = [x for i in range(20) for x in ({"say": f"{i} "}, {"sleep": 0.05})]
    sent = tab.send(script(*paced), model="script:fake")
    received = tab.stream(sent["assistant_message"]["id"])
    first_text = next(i for i, e in enumerate(received) if e.event == "message")
    assert [e for e in received[first_text:] if e.event == "comment"] == []
    assert writes["written"] >= 15
    assert text_of(received) == "".join(f"{i} " for i in range(20))


def _raw_stream(base_url: str, path: str, cookies: dict, headers: dict) -> socket.socket:
    """A client with a tiny receive window that sends its request and then reads nothing."""
    url = urlsplit(base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    lines = [f"GET {path} HTTP/1.1", f"Host: {url.netloc}", f"Cookie: {cookie}", "Accept: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _read_events(sock: socket.socket, timeout: float = 30) -> list:
    """The whole chunked SSE body, parsed, once the client reads again."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        more = sock.recv(1 << 16)
        assert more, "the server closed the connection early"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    payload = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        payload, body = payload + rest[:n], rest[n + 2 :]
    parser, received = Parser(), []
    for line in payload.decode().split("\n"):
        if (event := parser.feed(line)) is not None:
            received.append(event)
    return received


def test_a_client_that_stops_reading_gets_every_text_once_in_order(tab, writes):
    # Big texts 30 ms apart: the server's buffer for this client fills, its writes wait.
    # 9 MB: more than the kernel's socket buffers take (they grow to 4 MB) and uvicorn's 64 KiB.
    letters = [chr(ord("a") + i % 26) for i in range(150)]
    paced = [x for letter in letters for x in ({"say": letter, "times": 60_000}, {"sleep": 0.02})]
    sent = tab.send(script(*paced), model="script:fake")
    mid = sent["assistant_message"]["id"]
    sock = _raw_stream(str(tab.http.base_url), f"/api/messages/{mid}/stream", dict(tab.http.cookies), {})
    try:
        deadline = time.monotonic() + 30
        while Message.objects.get(pk=mid).status == Message.Status.STREAMING:
            assert time.monotonic() < deadline, "the reply did not end"
            time.sleep(0.1)
        received = _read_events(sock)
    finally:
        sock.close()
    texts = [e for e in received if e.event == "message"]
    expected = "".join(letter * 60_000 for letter in letters)
    assert text_of(received) == expected == Message.objects.get(pk=mid).content
    ids = [int(e.id) for e in texts]
    assert ids == sorted(set(ids)) and ids[-1] == len(expected)
    assert last_id(received) == len(expected)
    assert json.loads(received[-1].data)["status"] == "complete"
    assert writes["waited"] >= 1, writes  # the server did wait for this client, with parts pushed


def test_pushed_texts_reach_every_follower_of_a_reply(tab, new_tab, writes):
    paced = [x for i in range(15) for x in ({"say": f"t{i} "}, {"sleep": 0.03})]
    sent = tab.send(script(*paced), model="script:fake")
    mid = sent["assistant_message"]["id"]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        streams = list(pool.map(lambda _: tab.stream(mid), range(3)))
    for received in streams:
        assert text_of(received) == "".join(f"t{i} " for i in range(15))
        assert received[-1].event == "done"
    assert writes["written"] >= 3 * 10
