"""The limit: a bare ASGI app (no framework) that answers the benchmark's requests with the
same SSE bytes as the chat app (../shared/API.md), the same demo tokens and the same pacing.

Served by the same uvicorn with the same options: `uvicorn bench.baseline:app`. It reads the
same environment (CHAT_DEMO_RATE, CHAT_DEMO_TOKENS, CHAT_HEARTBEAT_INTERVAL) and does nothing
else: no database, no event log, no session; anything the chat app spends above it is the
framework's and the app's cost per token.
"""

import asyncio
import json
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from json.encoder import encode_basestring  # the C escaper, as chat/sse.py text_event
from typing import Any

from chat.providers.demo import demo_tokens  # plain Python: needs no Django settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

RATE = float(os.environ.get("CHAT_DEMO_RATE") or 0)
TOKENS = int(os.environ["CHAT_DEMO_TOKENS"]) if os.environ.get("CHAT_DEMO_TOKENS") else None
HEARTBEAT = float(os.environ.get("CHAT_HEARTBEAT_INTERVAL") or 15)
PING = b": ping\n\n"

# The headers the chat app answers a stream with (its own and Django's middleware's).
_COMMON = [
    (b"x-frame-options", b"DENY"),
    (b"vary", b"Cookie, origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
    *_COMMON,
]
JSON_HEADERS = [(b"content-type", b"application/json"), *_COMMON]

_stopped: set[str] = set()  # message ids asked to stop


def _json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _event(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {_json(payload)}\n\n".encode()


def text_event(offset: int, text: str) -> bytes:
    return b'id: %d\ndata: {"text":%s}\n\n' % (offset, encode_basestring(text).encode())


async def _answer(send: Send, status: int, payload: Any, cookie: bytes | None = None) -> None:
    headers = list(JSON_HEADERS)
    if cookie:
        headers.append((b"set-cookie", cookie))
    body = _json(payload).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _watch(receive: Receive, message_id: str) -> None:
    """A client that goes away stops its stream (uvicorn drops writes to a closed connection
    silently, and waits at shutdown for every response to end)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    _stopped.add(message_id)


async def stream(receive: Receive, send: Send, question: str) -> None:
    """retry, start, status, the tokens paced like the demo model (heartbeats on silence), done."""
    loop = asyncio.get_running_loop()
    message_id, conversation_id = str(uuid.uuid4()), str(uuid.uuid4())
    tokens = demo_tokens(question, TOKENS)
    watcher = loop.create_task(_watch(receive, message_id))

    async def body(data: bytes, more: bool = True) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": more})

    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    await body(b"retry: 2000\n\n")
    await body(
        _event("start", {"message_id": message_id, "conversation_id": conversation_id, "model": "demo"})
    )
    await body(_event("status", {"state": "thinking"}))
    start = last = loop.time()
    offset, status = 0, "complete"
    for i, token in enumerate(tokens):
        if RATE > 0:  # token i is due at start + (i + 1) / rate, as in chat/providers/demo.py
            due = start + (i + 1) / RATE
            while (wait := due - loop.time()) > 0:
                if last + HEARTBEAT < due:  # the stream would be silent for a heartbeat
                    await asyncio.sleep(max(last + HEARTBEAT - loop.time(), 0))
                    if message_id in _stopped:
                        break
                    await body(PING)
                    last = loop.time()
                else:
                    await asyncio.sleep(wait)
        else:
            await asyncio.sleep(0)  # flat out, yielding to the loop between tokens
        if message_id in _stopped:
            status = "stopped"
            break
        offset += len(token)
        await body(text_event(offset, token))
        last = loop.time()
    _stopped.discard(message_id)
    watcher.cancel()
    done = {
        "message_id": message_id,
        "status": status,
        "finish_reason": "stop",
        "usage": {"input_tokens": len(question.split()), "output_tokens": len(tokens)},
    }
    await body(_event("done", done), more=False)


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/":
        token = secrets.token_urlsafe(24).encode()
        cookie = b"csrftoken=" + token + b"; Path=/; SameSite=Lax"
        return await _answer(send, 200, {"page": "baseline"}, cookie)
    if method == "POST" and path == "/api/conversations":
        data = json.loads(await _read_body(receive) or b"{}")
        if "content" not in data:
            cookie = b"sessionid=" + secrets.token_hex(16).encode() + b"; HttpOnly; Path=/; SameSite=Lax"
            return await _answer(send, 201, {"id": str(uuid.uuid4())}, cookie)
        accept = dict(scope["headers"]).get(b"accept", b"")
        if b"text/event-stream" in accept:
            return await stream(receive, send, data["content"])
        return await _answer(send, 201, {"assistant_message": {"id": str(uuid.uuid4())}})
    if method == "POST" and path.startswith("/api/messages/") and path.endswith("/stop"):
        message_id = path.split("/")[3]
        _stopped.add(message_id)
        return await _answer(send, 200, {"id": message_id, "status": "stopped"})
    await _answer(send, 404, {"error": f"Nothing here: {path}", "code": "not_found"})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        return await http(scope, receive, send)
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
