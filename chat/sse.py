"""Server-Sent Events: encoding (after sse-starlette's `event.py`) and the response."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from json.encoder import encode_basestring  # the C escaper json.dumps uses
from typing import Any

from django.http import StreamingHttpResponse

from chat.loops import PerLoop

# The SSE spec ends a line at CRLF, CR or LF, and nothing else (str.splitlines() would also
# split at U+2028, form feeds and more, changing the data).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _field(value: str) -> str:
    """`id` and `event` are one line: a line break would start a forged field."""
    return _LINE_BREAK.sub("", value).replace("\0", "")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str | None = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def encode(self) -> bytes:
        lines = []
        if self.comment is not None:
            lines += [f": {line}" for line in _LINE_BREAK.split(self.comment)]
        if self.id is not None:
            lines.append(f"id: {_field(self.id)}")
        if self.event is not None:
            lines.append(f"event: {_field(self.event)}")
        if self.retry is not None:
            lines.append(f"retry: {int(self.retry)}")
        if self.data is not None:
            lines += [f"data: {line}" for line in _LINE_BREAK.split(self.data)]
        return ("\n".join(lines) + "\n\n").encode()


def json_data(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def event(name: str | None, payload: Any, *, id: str | None = None) -> bytes:
    return ServerSentEvent(data=json_data(payload), event=name, id=id).encode()


def text_event(offset: int, text: str) -> bytes:
    """`event(None, {"text": text}, id=str(offset))`, built directly: it is sent per token.

    The JSON string escapes every control character, so the data is always one line.
    """
    return b'id: %d\ndata: {"text":%s}\n\n' % (offset, encode_basestring(text).encode())


PING = ServerSentEvent(comment="ping").encode()


class EventStreamResponse(StreamingHttpResponse):
    """A StreamingHttpResponse whose ASGI handler reads the app's own generator directly.

    Django's `__aiter__` wraps the content in two more generators (`__aiter__` and the
    `streaming_content` wrapper) and copies each part with `make_bytes`: three Python frames
    resumed and a copy, per token of every stream (issue 14's profile). The app yields bytes
    already, so while the content is still its own generator the handler gets that one (or,
    with an outlet, the part of it before the stream goes on without the handler: `GO_ON`).
    A middleware that replaced `streaming_content` (GZip, say) gets Django's path unchanged.
    """

    def __init__(self, stream: AsyncIterator[bytes], outlet: "Outlet | None" = None, **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self._own = self._iterator
        self.outlet = outlet

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterator is self._own:
            if self.outlet is None:
                return self._own
            # Its bytes go out unchanged: the stream may write them too, and go on alone.
            self.outlet.open = True
            return _Head(self._own, self.outlet)
        return super().__aiter__()


# --- writing a stream's parts from another task, and without Django's handler (issue 14) -----

Send = Callable[[dict], Coroutine[Any, Any, None]]

# The scope key under which the chat lifespan (chat/asgi.py) leaves the request's Outlet,
# where it wraps Django's handler directly: nothing stands between the two.
OUTLET = "chat.outlet"

# What a stream yields, once its first event is out, to go on without Django's handler.
GO_ON: Any = object()

_END = {"type": "http.response.body", "body": b"", "more_body": False}


class Outlet:
    """The ASGI server's `send` for one request's response, as the chat lifespan gives it.

    Two uses, both for an open stream:
    - `write`: parts written to the server from another task (the reply's writer), while the
      response's own task waits for its next event. They are sent at the end of the loop's
      turn, with those of every other stream written to in it (`_Turn`), so the server's
      writes to its clients come together rather than spread between the replies' Python
      work (the cost of a write on one machine is mostly waking its reader). The server's
      `send` takes a part at once unless it must wait for a slow client (flow control); the
      call is run by hand up to that point, so the common case costs no task. If it has to
      wait, the rest runs in a task, and `pending` is set until the response's own task has
      waited for it (`drain`, which also sends at once what is still `queued`): parts never
      overtake one another.
    - going on without Django's handler. Once its first event is out, a stream yields `GO_ON`:
      Django's handler then finishes the request as if the response had ended (its request,
      response, tasks and thread are let go) except that the end is not sent (`to_django`),
      and the lifespan sends the rest of the stream itself (`go_on`). An idle open stream then
      keeps what the stream needs, not a request's (issue 14: memory per idle stream).
    """

    __slots__ = ("send", "pending", "queued", "open", "rest")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.pending: asyncio.Task | None = None
        self.queued: list[bytes] | None = None  # written, to be sent at the end of the turn
        self.open = False  # set once Django's handler reads the response's own bytes
        self.rest: AsyncIterator[bytes] | None = None  # the stream, once it goes on alone

    @classmethod
    def for_request(cls, request: Any) -> "Outlet | None":
        """The request's outlet, if it is served through the chat lifespan."""
        return request.scope.get(OUTLET) if hasattr(request, "scope") else None

    def to_django(self, message: dict) -> Awaitable[None]:
        """The `send` Django's handler is given: the response's end is not sent where the
        stream goes on (it is `go_on`'s to send)."""
        if self.rest is not None and message["type"] == "http.response.body" and not message.get("more_body"):
            return _nothing()
        return self.send(message)

    def write(self, data: bytes, turn: "_Turn | None" = None) -> None:
        """Send `data` at the end of this turn of the loop (`turn`: the running loop's, if the
        caller has it), after what was written before it."""
        if self.queued is None:
            self.queued = [data]
            (turn or turn_of(asyncio.get_running_loop())).add(self)
        else:
            self.queued.append(data)

    def flush(self) -> None:
        """Send now what was written; what the server refuses, the response's own task sends
        again at its next event (`drain`), and fails there."""
        parts, self.queued = self.queued, None
        if parts is None:
            return
        message = {"type": "http.response.body", "body": b"".join(parts), "more_body": True}
        call = self.send(message)
        try:
            # Run by hand: a `for` over the call ends where it returns at once, with no
            # StopIteration to raise and catch (per token); it stops where the server must wait.
            for waiting_for in call.__await__():
                self.pending = asyncio.ensure_future(_run_rest(call, waiting_for))
                return
        except Exception:
            self.pending = asyncio.ensure_future(self.send(message))

    @property
    def busy(self) -> bool:
        """Parts written are still to be sent: the response's own task must `drain` first."""
        return self.pending is not None or self.queued is not None

    async def drain(self) -> None:
        """Send what was written and not yet sent, before the response's next part."""
        self.flush()
        if self.pending is not None:
            try:
                await self.pending
            finally:
                self.pending = None

    async def go_on(self, receive: Callable[[], Awaitable[dict]]) -> None:
        """Send the rest of a stream that went on without Django's handler, then the end.

        As in Django's handler, a client that goes away cancels the stream where it waits
        (its `finally` runs); `_Listener` waits for that with no task of its own.
        """
        stream, self.rest = self.rest, None
        if stream is None:
            return
        listener = _Listener(receive, asyncio.current_task())
        try:
            async with aclosing(stream):
                async for part in stream:
                    await self.send({"type": "http.response.body", "body": part, "more_body": True})
            await self.send(_END)
        except asyncio.CancelledError:
            if not listener.gone:
                raise
            listener.task.uncancel()  # the client went away: the request ends as Django's would
        finally:
            self.queued = None  # a stream ended early: nothing more goes to its client
            listener.close()


class _Listener:
    """Cancels a task when the client goes away, as Django's handler does, without a task of
    its own (memory per idle stream): `receive()` is run by hand, as `Outlet.write` runs
    `send`, and resumed by the future it waits on. Until the client goes away the ASGI server
    gives it nothing more (the request's body has been read).

    The cancel is made from the loop, not from here: a client already gone when the stream
    goes on is seen at once, and the task must not be left with a cancel it would take at
    its next wait after the stream has ended (`close` withdraws one not made yet)."""

    __slots__ = ("receive", "task", "call", "gone", "cancelling")

    def __init__(self, receive: Callable[[], Awaitable[dict]], task: asyncio.Task) -> None:
        self.receive = receive
        self.task = task
        self.gone = False
        self.call: Any = None
        self.cancelling: asyncio.Handle | None = None
        self._listen()

    def _listen(self) -> None:
        self.call = self.receive()
        self._resume()

    def _resume(self, _: Any = None) -> None:
        try:
            waiting_for = self.call.send(None)
        except StopIteration as returned:
            self.call = None
            if returned.value["type"] == "http.disconnect":
                self.gone = True
                self.cancelling = asyncio.get_running_loop().call_soon(self.task.cancel)
            else:
                self._listen()
            return
        except BaseException:  # the server stopped listening (its wait cancelled): so do we
            self.call = None
            return
        if waiting_for is None:  # a bare yield to the loop
            asyncio.get_running_loop().call_soon(self._resume)
        else:
            waiting_for.add_done_callback(self._resume)

    def close(self) -> None:
        call, self.call = self.call, None
        if call is not None:
            call.close()
        if self.cancelling is not None:
            self.cancelling.cancel()


class _Turn:
    """The outlets written to in this turn of an event loop: sent together at its end."""

    __slots__ = ("loop", "outlets")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.outlets: list[Outlet] = []

    def add(self, outlet: Outlet) -> None:
        if not self.outlets:
            self.loop.call_soon(self.flush)
        self.outlets.append(outlet)

    def flush(self) -> None:
        outlets, self.outlets = self.outlets, []
        for outlet in outlets:
            outlet.flush()


turn_of = PerLoop(_Turn)  # a loop's _Turn


async def _nothing() -> None:
    return None


class _Head:
    """Django's handler reads a stream through this until the stream yields `GO_ON`; the
    stream is then the outlet's `rest`, and Django's reading ends (its `aclose` leaves it open)."""

    __slots__ = ("stream", "outlet")

    def __init__(self, stream: AsyncIterator[bytes], outlet: Outlet) -> None:
        self.stream = stream
        self.outlet = outlet

    def __aiter__(self) -> "_Head":
        return self

    async def __anext__(self) -> bytes:
        part = await anext(self.stream)
        if part is GO_ON:
            self.outlet.rest = self.stream
            raise StopAsyncIteration
        return part

    async def aclose(self) -> None:
        if self.outlet.rest is None:
            await self.stream.aclose()


async def _run_rest(call: Coroutine, waiting_for: Any) -> None:
    """What a task does with a coroutine, from where `call.send(None)` left it: wait for the
    future it yielded (None: a bare yield to the loop), then resume it, until it returns."""
    while True:
        error = None
        try:
            if waiting_for is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([waiting_for])
        except asyncio.CancelledError as exc:
            error = exc
        try:
            waiting_for = call.send(None) if error is None else call.throw(error)
        except StopIteration:
            return


def sse_response(stream: AsyncIterator[bytes], outlet: Outlet | None = None) -> StreamingHttpResponse:
    """The SSE response; `outlet`, if any, is the one the stream was given (chat/streams.py)."""
    response = EventStreamResponse(stream, outlet, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    # nginx buffers proxied responses unless told not to.
    response["X-Accel-Buffering"] = "no"
    return response
