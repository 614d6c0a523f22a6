"""A small SSE parser for tests, following the spec's line rules; records arrival times."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field


@dataclass
class SSE:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self):
        import json

        return json.loads(self.data)


class Parser:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.event, self.data, self.id, self.retry = None, [], None, None

    def feed(self, line: str) -> SSE | None:
        if line == "":
            if self.data or self.event or self.retry is not None or self.id is not None:
                # A block with only `retry:` dispatches nothing in a browser; shown as "retry" here.
                name = self.event or ("message" if self.data else "retry")
                out = SSE(event=name, data="\n".join(self.data), id=self.id, retry=self.retry)
                self._reset()
                return out
            return None
        if line.startswith(":"):
            return SSE(event="comment", comment=line[1:].strip())
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id":
            self.id = value
        elif name == "retry":
            self.retry = int(value)
        return None


def events(lines: Iterator[str]) -> Iterator[SSE]:
    parser = Parser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


async def aevents(lines: AsyncIterator[str]) -> AsyncIterator[SSE]:
    parser = Parser()
    async for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def text_of(received: list[SSE]) -> str:
    return "".join(e.json["text"] for e in received if e.event == "message")


def last_id(received: list[SSE], default: int = 0) -> int:
    ids = [int(e.id) for e in received if e.event == "message" and e.id is not None]
    return ids[-1] if ids else default


async def stream_new_replies(
    base_url: str, count: int, cookies, csrf: str, timeout: float = 60
) -> list[list[SSE]]:
    """Start `count` conversations at once, each streaming its first reply; all their events."""
    import httpx

    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(
        base_url=base_url, cookies=cookies, limits=limits, timeout=timeout
    ) as client:

        async def one(i: int) -> list[SSE]:
            async with client.stream(
                "POST",
                "/api/conversations",
                json={"content": f"question {i}"},
                headers={"Accept": "text/event-stream", "X-CSRFToken": csrf},
            ) as response:
                assert response.status_code == 200, await response.aread()
                return [e async for e in aevents(response.aiter_lines())]

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), timeout)
