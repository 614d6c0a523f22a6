"""A stream that goes on without Django's handler once its first event is out (issue 14: memory
per idle open stream): chat/sse.py `Outlet.to_django`, `Outlet.go_on`, `GO_ON`; and through a
real uvicorn server, what an open stream still holds of its request."""

import asyncio
import threading
import time

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished

from chat.sse import GO_ON, EventStreamResponse, Outlet
from tests.fakes import gate, script
from tests.sse_client import text_of

END = {"type": "http.response.body", "body": b"", "more_body": False}


class Client:
    """The ASGI server's side: the messages a response sent, and a client that may go away."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.away = asyncio.get_running_loop().create_future()

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.body":  # as the ASGI spec reads what is left out
            message = {"body": b"", "more_body": False, **message}
        self.messages.append(message)

    async def receive(self) -> dict:
        await self.away  # as uvicorn: after the request's body, nothing until the client goes
        return {"type": "http.disconnect"}

    @property
    def body(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]


async def served(stream, client: Client) -> Outlet:
    """The response read by Django's own `send_response`, given the outlet's `to_django`, as
    the chat lifespan serves it (chat/asgi.py)."""
    outlet = Outlet(client.send)
    await ASGIHandler().send_response(EventStreamResponse(stream, outlet), outlet.to_django)
    return outlet


async def stream_of(parts: list, closed: list, idle: asyncio.Event | None = None):
    """A stream of `parts`; with `idle`, it then waits for ever, as an idle reply does, once
    `idle` is set. `closed` is appended to when it closes, however it ends."""
    try:
        for part in parts:
            yield part
        if idle is not None:
            idle.set()
            await asyncio.Event().wait()
            yield b"never"
    finally:
        closed.append(True)


def test_a_stream_goes_on_after_djangos_handler_is_done_and_ends_once():
    closed = []
    stream = stream_of([b"first", GO_ON, b"second", b"last"], closed)

    async def run():
        client = Client()
        outlet = await served(stream, client)
        # Django's handler sent the start and the first part, and its end was held back.
        assert [m["type"] for m in client.messages] == ["http.response.start", "http.response.body"]
        assert client.body == [b"first"] and client.messages[-1]["more_body"] is True
        assert outlet.rest is not None and not closed  # Django's reading left the stream open
        await outlet.go_on(client.receive)
        assert client.body == [b"first", b"second", b"last", b""]
        assert client.messages[-1] == END and closed == [True]

    asyncio.run(run())


def test_a_stream_that_does_not_go_on_is_ended_by_djangos_handler():
    async def stream():
        yield b"only"

    async def run():
        client = Client()
        outlet = await served(stream(), client)
        assert client.body == [b"only", b""] and client.messages[-1] == END
        await outlet.go_on(client.receive)  # nothing left to send
        assert client.body == [b"only", b""]

    asyncio.run(run())


def test_a_client_that_goes_away_cancels_the_stream_where_it_waits_and_the_request_ends():
    closed, waiting = [], asyncio.Event()

    async def run():
        client = Client()
        outlet = await served(stream_of([b"first", GO_ON], closed, idle=waiting), client)
        going_on = asyncio.ensure_future(outlet.go_on(client.receive))
        await waiting.wait()
        tasks = len(asyncio.all_tasks())
        client.away.set_result(None)
        await going_on  # ends as a request does: no CancelledError for the server
        assert not going_on.cancelled() and going_on.cancelling() == 0
        assert closed == [True] and client.body == [b"first"]  # no end after the client went
        assert tasks == 2  # run() and the stream's: waiting for the client made no task

    asyncio.run(run())


def test_a_client_gone_before_the_stream_goes_on_leaves_no_cancel_behind():
    closed = []

    async def run():
        client = Client()
        client.away.set_result(None)  # gone already: receive() answers at once
        outlet = await served(stream_of([GO_ON, b"a", b"b"], closed), client)
        await outlet.go_on(client.receive)  # the rest needs no wait: it is sent, and the end
        assert client.body == [b"a", b"b", b""] and closed == [True]
        await asyncio.sleep(0.01)  # a cancel left on the task would land here
        assert asyncio.current_task().cancelling() == 0

    asyncio.run(run())


def test_the_stream_is_not_cancelled_for_a_client_that_stays():
    async def stream():
        yield GO_ON
        await asyncio.sleep(0.05)
        yield b"later"

    async def run():
        client = Client()
        outlet = await served(stream(), client)
        await outlet.go_on(client.receive)
        assert client.body == [b"later", b""]
        assert not client.away.done() and not client.away.cancelled()

    asyncio.run(run())


def test_a_server_cancelling_the_request_is_not_taken_for_a_client_gone():
    async def run():
        client = Client()
        outlet = await served(stream_of([GO_ON], [], idle=asyncio.Event()), client)
        going_on = asyncio.ensure_future(outlet.go_on(client.receive))
        await asyncio.sleep(0.01)
        going_on.cancel()  # uvicorn at the end of its graceful shutdown
        with pytest.raises(asyncio.CancelledError):
            await going_on

    asyncio.run(run())


# --- through the real server --------------------------------------------------------------------


def _djangos_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    names = {"ASGIHandler.listen_for_disconnect", "ASGIHandler.handle.<locals>.process_request"}
    return [t.get_coro().__qualname__ for t in asyncio.all_tasks(loop) if t.get_coro().__qualname__ in names]


@pytest.fixture
def finished_requests():
    """The requests Django's handler has finished, on the server's thread."""
    seen: list[str] = []

    def receiver(sender, **kwargs):
        seen.append(threading.current_thread().name)

    request_finished.connect(receiver)
    yield seen
    request_finished.disconnect(receiver)


def test_an_open_stream_holds_none_of_djangos_request_and_still_gets_every_event(
    finished_requests, tab, server
):
    sent = tab.send(script({"say": "Hello"}, {"gate": "alone"}, {"say": " world"}), model="script:fake")
    mid = sent["assistant_message"]["id"]

    def on_event(event) -> None:
        if event.event != "message" or gate("alone").is_set():
            return
        # Django's handler is done with this request (its end was not sent): no task of its
        # own is left, and `request_finished` has been sent, while the stream is open. Four
        # requests: the page, the conversation, the message, and this stream.
        deadline = time.monotonic() + 5
        while (
            _djangos_tasks(server.server.loop) or len(finished_requests) < 4
        ) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _djangos_tasks(server.server.loop) == []
        assert len(finished_requests) == 4
        gate("alone").set()

    received = tab.stream(mid, on_event=on_event)
    assert text_of(received) == "Hello world" and received[-1].event == "done"
    assert [e.event for e in received[:3]] == ["retry", "start", "status"]


def test_a_client_that_hangs_up_ends_its_request_while_the_reply_goes_on(tab, server):
    sent = tab.send(
        script({"say": "one"}, {"gate": "hung up"}, {"say": " two"}, {"finish": "stop"}), model="script:fake"
    )
    mid = sent["assistant_message"]["id"]
    tasks = server.server.server_state.tasks
    assert text_of(tab.stream(mid, limit=1)) == "one"  # then hang up
    deadline = time.monotonic() + 5
    while tasks and time.monotonic() < deadline:  # the stream's request ends at once, not at
        time.sleep(0.01)  # its next heartbeat or the reply's end
    assert not tasks
    gate("hung up").set()
    done = tab.wait_finished(mid, sent["assistant_message"]["conversation_id"])
    assert (done["status"], done["content"]) == ("complete", "one two")
