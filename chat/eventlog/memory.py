"""An event log in this process's memory: one server process (one uvicorn worker)."""

import asyncio
from bisect import bisect_right

from chat import conf
from chat.eventlog.base import End, Event, EventLog, Status, Subscription, Text


class _Reply:
    __slots__ = ("chunks", "ends", "state", "end", "changed")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.ends: list[int] = []  # ends[i]: text length once chunks[i] is appended
        self.state: str | None = None
        self.end: End | None = None
        self.changed = asyncio.Event()

    @property
    def length(self) -> int:
        return self.ends[-1] if self.ends else 0

    def text_from(self, offset: int) -> str:
        i = bisect_right(self.ends, offset)
        if i == len(self.chunks):
            return ""
        skip = offset - (self.ends[i] - len(self.chunks[i]))
        return self.chunks[i][skip:] + "".join(self.chunks[i + 1 :])

    def notify(self) -> None:
        # Wakes every waiter; clearing at once makes later waiters wait for the next change.
        self.changed.set()
        self.changed.clear()


class MemorySubscription(Subscription):
    def __init__(self, reply: _Reply, offset: int) -> None:
        self.reply = reply
        self.offset = offset
        self.state_seen: str | None = None

    def _pending(self) -> Event | None:
        reply = self.reply
        if reply.state is not None and reply.state != self.state_seen:
            self.state_seen = reply.state
            if self.offset == 0:  # a client with no text yet hears the state first
                return Status(reply.state)
        if reply.length > self.offset:
            text = reply.text_from(self.offset)
            self.offset = reply.length
            return Text(self.offset, text)
        if reply.end is not None:
            return reply.end
        return None

    async def next(self, timeout: float) -> Event | None:
        while (event := self._pending()) is None:
            try:
                async with asyncio.timeout(timeout):
                    await self.reply.changed.wait()
            except TimeoutError:
                return self._pending()
        return event


class MemoryEventLog(EventLog):
    def __init__(self) -> None:
        self._replies: dict[str, _Reply] = {}

    def _reply(self, reply_id: str) -> _Reply:
        reply = self._replies.get(reply_id)
        if reply is None:
            reply = self._replies[reply_id] = _Reply()
        return reply

    async def open(self, reply_id: str) -> None:
        self._reply(reply_id)

    async def append(self, reply_id: str, text: str) -> int:
        reply = self._reply(reply_id)
        reply.chunks.append(text)
        reply.ends.append(reply.length + len(text))
        reply.notify()
        return reply.length

    async def set_status(self, reply_id: str, state: str) -> None:
        reply = self._reply(reply_id)
        reply.state = state
        reply.notify()

    async def end(self, reply_id: str, end: End) -> None:
        reply = self._reply(reply_id)
        reply.end = end
        reply.notify()
        loop = asyncio.get_running_loop()
        loop.call_later(float(conf.get("CHAT_LOG_GRACE")), self._forget, reply_id, reply)

    def _forget(self, reply_id: str, reply: _Reply) -> None:
        if self._replies.get(reply_id) is reply:
            del self._replies[reply_id]

    async def subscribe(self, reply_id: str, offset: int) -> Subscription | None:
        reply = self._replies.get(reply_id)
        return MemorySubscription(reply, offset) if reply is not None else None
