"""Server-Sent Events: encoding (after sse-starlette's `event.py`) and the response."""

import json
import re
from collections.abc import AsyncIterator
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


def sse_response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """The SSE response: Django's own StreamingHttpResponse over the async generator, sent to
    its end by Django's ASGI handler (which cancels the generator if the client goes away)."""
    response = StreamingHttpResponse(stream, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    # nginx buffers proxied responses unless told not to.
    response["X-Accel-Buffering"] = "no"
    return response
