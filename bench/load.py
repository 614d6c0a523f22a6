"""The load client, used identically against the app and the baseline.

asyncio (uvloop when installed) with one asyncio.Protocol per stream over a raw socket: it
de-chunks HTTP/1.1, splits SSE events, and records per stream the arrival time of each text
event's offset (`id: N`) and of the first `status`, without decoding any event's JSON (only
`start`, once per stream, for the message id). It measures its own CPU time so that a run can
show it was not the bottleneck.
"""

import asyncio
import json
import re
import resource
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, TypeVar

clock = time.perf_counter
_ID = re.compile(rb"^id: ([0-9]+)\n", re.MULTILINE)  # a text event's offset

T = TypeVar("T")


def cpu_seconds() -> float:
    """This process's CPU time (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_on_new_loop(coro: Coroutine[Any, Any, T]) -> T:
    """`coro` to its end on a new uvloop loop, closed after."""
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@dataclass
class Stream(asyncio.Protocol):
    """One SSE response, read as it arrives."""

    request: bytes
    sent: float = 0.0
    status_code: int = 0
    started: asyncio.Future | None = None  # the response headers arrived
    finished: asyncio.Future | None = None  # `done` or `error` arrived, or the connection ended
    texted: asyncio.Future | None = None  # the first text event arrived
    offsets: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    first_status: float | None = None
    message_id: str | None = None
    pings: int = 0
    errors: int = 0
    end: str | None = None  # "done", "error" or "closed"
    transport: asyncio.Transport | None = None
    _raw: bytearray = field(default_factory=bytearray)
    _body: bytearray = field(default_factory=bytearray)
    _headers: bool = False
    _left: int = 0  # bytes left in the current chunk, its CRLF included

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started, self.finished, self.texted = (loop.create_future() for _ in range(3))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sent = clock()
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("closed")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _finish(self, how: str) -> None:
        if self.end is None:
            self.end = how
        for future in (self.started, self.finished, self.texted):
            if not future.done():
                future.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = clock()
        raw = self._raw
        raw += data
        pos, last = 0, False
        if not self._headers:
            head_end = raw.find(b"\r\n\r\n")
            if head_end < 0:
                return
            self.status_code = int(raw[9:12])
            self._headers = True
            pos = head_end + 4
            if not self.started.done():
                self.started.set_result(None)
        body, size = self._body, len(raw)
        while pos < size:
            if self._left == 0:
                line_end = raw.find(b"\r\n", pos)
                if line_end < 0:
                    break
                chunk = int(raw[pos:line_end], 16)
                pos = line_end + 2
                if chunk == 0:  # the end of the body: after its last events
                    last = True
                    break
                self._left = chunk + 2
            take = min(self._left, size - pos)
            body += raw[pos : pos + take]
            pos += take
            self._left -= take
            if self._left == 0:
                del body[-2:]  # the chunk's CRLF
        del raw[:pos]
        self._events(now)
        if last:
            self._finish("closed")

    def _events(self, now: float) -> None:
        """Text events in one regular expression pass; the few others one by one."""
        body = self._body
        end = body.rfind(b"\n\n") + 2
        if end < 2:
            return
        ids = _ID.findall(body, 0, end)
        if ids:
            if not self.texted.done():
                self.texted.set_result(None)
            self.offsets.extend(map(int, ids))
            self.times.extend(repeat(now, len(ids)))
        if body.find(b"event: ", 0, end) >= 0 or body.find(b": ping", 0, end) >= 0:
            self._others(body, end, now)
        del body[:end]

    def _others(self, body: bytearray, stop: int, now: float) -> None:
        start = 0
        while start < stop:
            end = body.find(b"\n\n", start)
            if body.startswith(b"event: ", start):
                name = body[start + 7 : body.find(b"\n", start)]
                if name == b"status":
                    if self.first_status is None:
                        self.first_status = now
                elif name == b"start":
                    data = body[body.find(b"\n", start) + 7 : end]  # after "\ndata: "
                    self.message_id = json.loads(data)["message_id"]
                elif name == b"done":
                    self._finish("done")
                elif name == b"error":
                    self.errors += 1
                    self._finish("error")
            elif body.startswith(b": ping", start):
                self.pings += 1
            start = end + 2

    @property
    def first_text(self) -> float | None:
        return self.times[0] if self.times else None


@dataclass
class Client:
    """One visitor's session (cookies and CSRF token) on a server at 127.0.0.1:`port`."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    opened: list[Stream] = field(default_factory=list)  # every stream's connection, to close

    def _request(self, method: str, path: str, body: bytes, accept: str, close: bool) -> bytes:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            f"Accept: {accept}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if "csrftoken" in self.cookies:
            lines.append(f"X-CSRFToken: {self.cookies['csrftoken']}")
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, bytes]:
        """A plain request on a connection of its own: (status, raw response); keeps cookies."""
        body = json.dumps(payload).encode() if payload is not None else b""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(self._request(method, path, body, "application/json", close=True))
            response = await reader.read(-1)
        finally:
            writer.close()
        head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "set-cookie":
                key, _, rest = value.strip().partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return int(head[9:12]), response

    async def setup(self) -> None:
        """GET / (the CSRF cookie), then an empty conversation (the session cookie)."""
        status, _ = await self.call("GET", "/")
        assert status == 200, status
        status, response = await self.call("POST", "/api/conversations", {})
        assert status == 201, response[:500]

    async def warm_up(self, content: str) -> None:
        """setup(), then one reply read to its end: the first request warms the server's caches."""
        await self.setup()
        warm = await self.open_stream(content)
        await warm.finished
        warm.close()

    async def open_stream(self, content: str) -> Stream:
        """POST a first message asking for SSE; returns once the response headers arrived."""
        body = json.dumps({"content": content}).encode()
        request = self._request("POST", "/api/conversations", body, "text/event-stream", close=False)
        loop = asyncio.get_running_loop()
        _, stream = await loop.create_connection(lambda: self._new(request), "127.0.0.1", self.port)
        await stream.started
        return stream

    def _new(self, request: bytes) -> Stream:
        stream = Stream(request)
        self.opened.append(stream)
        return stream

    async def open_many(self, content: str, count: int, parallel: int = 32) -> list[Stream]:
        """`count` streams, at most `parallel` of them waiting for their headers at a time."""
        gate = asyncio.Semaphore(parallel)

        async def one() -> Stream:
            async with gate:
                return await self.open_stream(content)

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def stop(self, message_id: str) -> int:
        status, _ = await self.call("POST", f"/api/messages/{message_id}/stop")
        return status
