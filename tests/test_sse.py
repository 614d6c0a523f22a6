import pytest

from chat.sse import PING, ServerSentEvent, event, text_event


@pytest.mark.parametrize(
    ("sse", "expected"),
    [
        (ServerSentEvent(data="hello"), b"data: hello\n\n"),
        (ServerSentEvent(data=""), b"data: \n\n"),
        (ServerSentEvent(data="a\nb"), b"data: a\ndata: b\n\n"),
        (ServerSentEvent(data="a\r\nb\rc"), b"data: a\ndata: b\ndata: c\n\n"),
        # Only CR and LF end a line in SSE: U+2028 and form feed stay inside the data.
        (ServerSentEvent(data="a\u2028b\x0cc"), "data: a\u2028b\x0cc\n\n".encode()),
        (ServerSentEvent(data="x", event="done", id="12"), b"id: 12\nevent: done\ndata: x\n\n"),
        (ServerSentEvent(retry=2000), b"retry: 2000\n\n"),
        (ServerSentEvent(comment="ping"), b": ping\n\n"),
        # A line break in `id` or `event` would forge a field: it is removed.
        (ServerSentEvent(data="x", id="1\ndata: evil"), b"id: 1data: evil\ndata: x\n\n"),
        (ServerSentEvent(data="x", event="a\r\nb"), b"event: ab\ndata: x\n\n"),
        (ServerSentEvent(data="x", id="a\0b"), b"id: ab\ndata: x\n\n"),
    ],
)
def test_encode_is_byte_exact(sse, expected):
    assert sse.encode() == expected


def test_event_encodes_json_compactly_and_keeps_unicode():
    assert event(None, {"text": "é\n<b>"}, id="7") == 'id: 7\ndata: {"text":"é\\n<b>"}\n\n'.encode()


def test_ping_is_a_comment():
    assert PING == b": ping\n\n"


@pytest.mark.parametrize(
    "text", ["Hello", ' "quoted" \\ back', "line\nbreak\r\n", "é ✓ 😀", "a\u2028b", "\x00\x1f", ""]
)
def test_text_event_fast_path_matches_the_generic_encoder(text):
    assert text_event(42, text) == event(None, {"text": text}, id="42")


def _served(response) -> list[bytes]:
    """The body parts Django's own ASGI handler sends for `response`."""
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(ASGIHandler().send_response(response, send))
    assert sent[0]["type"] == "http.response.start" and sent[-1] == {"type": "http.response.body"}
    return [m["body"] for m in sent[1:-1]]


def test_the_response_is_djangos_own_streaming_response_with_the_sse_headers():
    from django.http import StreamingHttpResponse

    from chat.sse import sse_response

    async def stream():
        yield b"retry: 1\n\n"
        yield text_event(1, "a")

    response = sse_response(stream())
    assert type(response) is StreamingHttpResponse and response.is_async
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache, no-transform"
    assert response["X-Accel-Buffering"] == "no"
    assert _served(response) == [b"retry: 1\n\n", text_event(1, "a")]  # one part per event

    replaced = sse_response(stream())

    async def upper(parts):  # what a middleware such as GZip does to a streaming response
        async for part in parts:
            yield part.upper()

    replaced.streaming_content = upper(replaced.streaming_content)
    assert _served(replaced) == [b"RETRY: 1\n\n", text_event(1, "a").upper()]
