"""Server-Sent Events: encoding (after sse-starlette's `event.py`) and the response."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from json.encoder import encode_basestring  # the C escaper json.dumps uses
from typing import Any

from django.http import StreamingHttpResponse

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
    already, so while the content is still its own generator the handler gets that one. A
    middleware that replaced `streaming_content` (GZip, say) gets Django's path unchanged.
    """

    def __init__(self, stream: AsyncIterator[bytes], outlet: "Outlet | None" = None, **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self._own = self._iterator
        self.outlet = outlet

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterator is self._own:
            if self.outlet is not None:  # its bytes go out unchanged: the stream may write them too
                self.outlet.open = True
            return self._own
        return super().__aiter__()


# --- writing a stream's parts from another task (issue 14) ------------------------------------

Send = Callable[[dict], Coroutine[Any, Any, None]]

# The scope key under which the chat lifespan (chat/asgi.py) leaves the request's ASGI `send`,
# where it wraps Django's handler directly: nothing stands between the two.
SEND = "chat.send"


class Outlet:
    """Writes parts of the response being streamed straight to the ASGI server, from another
    task (the reply's writer), while the response's own task waits for its next event.

    The ASGI server's `send` takes a part at once unless it must wait for a slow client (flow
    control); the call is run by hand up to that point, so the common case costs no task. If
    it has to wait, the rest runs in a task, and `pending` is set until the response's own
    task has waited for it (`drain`): parts never overtake one another.
    """

    __slots__ = ("send", "pending", "open")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.pending: asyncio.Task | None = None
        self.open = False  # set once Django's handler reads the response's own bytes

    @classmethod
    def for_request(cls, request: Any) -> "Outlet | None":
        """An outlet for the request's response, if it is served through the chat lifespan."""
        send = request.scope.get(SEND) if hasattr(request, "scope") else None
        return None if send is None else cls(send)

    def write(self, data: bytes) -> bool:
        """Send `data` now; False if it could not be handed over (it was not sent)."""
        call = self.send({"type": "http.response.body", "body": data, "more_body": True})
        try:
            waiting_for = call.send(None)
        except StopIteration:
            return True
        except Exception:  # nothing was written: the response's own task sends it, and fails there
            return False
        self.pending = asyncio.ensure_future(_run_rest(call, waiting_for))
        return True

    async def drain(self) -> None:
        """Wait for a part the server was still sending (before the response's next part)."""
        if self.pending is not None:
            try:
                await self.pending
            finally:
                self.pending = None


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
