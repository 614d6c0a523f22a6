"""Following replies through Redis: one reader per process, many subscriptions.

One blocking XREAD per viewer would cost a connection each, and redis-py returns a cancelled
blocked read's connection to the pool still busy; so one task per process reads every
followed stream with one XREAD and feeds the local subscribers. A new subscriber first reads
what it missed (the catch-up, in RedisEventLog.subscribe), then the reader carries it on;
entries are told apart by id, so one seen twice is dropped.
"""

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from chat.eventlog import codec
from chat.eventlog.base import (
    Event,
    LogUnavailable,
    ReasoningText,
    Status,
    Subscription,
    Text,
    ToolCallStep,
    ToolResultStep,
)

log = logging.getLogger("chat.eventlog")

Entry = tuple[bytes | str, dict]
FAILURES = (RedisError, OSError, TimeoutError)
STEPS = (ReasoningText, ToolCallStep, ToolResultStep)


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def kind_and_data(fields: list) -> tuple[str, bytes]:
    """An entry's fields as Redis sends them, [b"k", kind, b"d", payload]: read raw (the
    client's XREAD and XRANGE callbacks are turned off, see raw_entries), as redis-py's
    conversion of each entry into a dict cost a fifth of a follower's CPU."""
    if len(fields) == 4 and fields[0] == b"k":
        return fields[1].decode(), fields[3]
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    return pairs.get(b"k", b"").decode(), pairs.get(b"d", b"{}")


def raw_entries(client: redis.Redis) -> None:
    """XREAD and XRANGE answer Redis's own nested lists: [id, [field, value, ...]] per entry."""
    for command in ("XREAD", "XRANGE"):
        client.set_response_callback(command, lambda response, **options: response)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(False)


class RedisSubscription(Subscription):
    """One follower of one reply's stream, fed by the catch-up read and then by the reader."""

    def __init__(
        self,
        key: str,
        offset: int,
        alive: Callable[[str], Awaitable[bool]],
        check_every: float,
        side: int | None = None,
    ):
        self.key = key
        self.offset = offset  # the text delivered so far
        self.queued = offset  # ... and queued
        # Steps (issue 12): resumed after step `side`, or (None) after those that came before
        # the text reached `offset`; `side` then follows the steps delivered.
        self.start, self.from_side, self.side = offset, side, side
        self.last = (0, 0)  # the id of the last entry taken
        self.queue: deque[Event] = deque()
        self.failed = False
        self.writer_gone = False
        self.waiter: asyncio.Future | None = None
        self.alive, self.check_every = alive, check_every
        self.reader: Reader | None = None

    def feed(self, entries: list[Entry]) -> None:
        for entry_id, fields in entries:
            seen = parse_id(entry_id)
            if seen <= self.last or self.failed:
                continue
            self.last = seen
            self._take(seen[0], *kind_and_data(fields))
        self._wake()

    def _take(self, offset: int, kind: str, data: bytes) -> None:
        if kind == "moved":  # the writer could not go on through Redis: the database has the rest
            self.failed = True
        elif kind == "text":
            event = codec.decode(kind, data, offset)
            start = offset - len(event.text)
            if offset <= self.queued:
                return
            if start > self.queued:  # the head of the stream was trimmed: a gap
                self.failed = True
                return
            self.queue.append(Text(offset, event.text[self.queued - start :]))
            self.queued = offset
        elif kind != "open":
            event = codec.decode(kind, data, offset)
            if isinstance(event, Status) and self.queued != 0:
                return  # a client with text already needs no progress state
            if isinstance(event, STEPS) and (
                event.side <= self.from_side if self.from_side is not None else event.offset < self.start
            ):
                return  # delivered before this subscription's place
            if event is not None:
                self.queue.append(event)

    def fail(self) -> None:
        self.failed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)

    def _pop(self) -> Event:
        item = self.queue.popleft()
        if isinstance(item, Text):
            parts = [item.text]
            while self.queue and isinstance(self.queue[0], Text):
                item = self.queue.popleft()
                parts.append(item.text)
            item = Text(item.offset, "".join(parts))
            self.offset = item.offset
        elif isinstance(item, STEPS):
            self.side = item.side
        return item

    async def next(self, timeout: float) -> Event | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.queue:
                return self._pop()
            if self.failed:
                raise LogUnavailable(self.offset, self.writer_gone, self.side)
            left = deadline - loop.time()
            if left <= 0:
                return None
            # A timer per wait, not asyncio.wait_for (a task and a shield per delta).
            self.waiter = waiter = loop.create_future()
            timer = loop.call_later(min(left, self.check_every), _expire, waiter)
            try:
                woken = await waiter
            finally:
                timer.cancel()
                self.waiter = None
            # Silence: is the writer still there? Its checkpoints keep the stream's TTL up.
            if not woken and not self.queue and not self.failed and not await self.alive(self.key):
                self.failed = self.writer_gone = True

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.remove(self)
            self.reader = None


class Reader:
    """The process's one XREAD loop over every stream a local subscriber follows."""

    def __init__(self, client: redis.Redis, wake_key: str, block_ms: int) -> None:
        self.client, self.wake_key, self.block_ms = client, wake_key, block_ms
        self.subs: dict[str, set[RedisSubscription]] = {}
        self.cursors: dict[str, tuple[int, int]] = {}
        self.changed = asyncio.Event()
        self.reading = False
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name="chat-redis-reader", context=contextvars.Context()
        )

    async def add(self, sub: RedisSubscription) -> None:
        sub.reader = self
        self.subs.setdefault(sub.key, set()).add(sub)
        cursor = self.cursors.get(sub.key)
        if cursor is None or sub.last < cursor:  # the others drop what they have seen twice
            self.cursors[sub.key] = sub.last
            self.changed.set()
            if self.reading:  # the blocked XREAD does not know this key yet: wake it
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": 1}, maxlen=1, approximate=False)
                    pipe.expire(self.wake_key, 60)
                    await pipe.execute()

    def remove(self, sub: RedisSubscription) -> None:
        subs = self.subs.get(sub.key)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.subs[sub.key]
            self.cursors.pop(sub.key, None)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self.cursors:
                self.changed.clear()
                await self.changed.wait()
            self.changed.clear()
            used = dict(self.cursors)
            keys = [self.wake_key, *used]
            ids = ["$", *(f"{ms}-{seq}" for ms, seq in used.values())]
            self.reading = True
            try:
                result = await self.client.execute_command(
                    "XREAD", "COUNT", 1000, "BLOCK", self.block_ms, "STREAMS", *keys, *ids
                )
                backoff = 0.1
            except FAILURES as exc:
                if asyncio.current_task().cancelling():  # a cancel redis-py took for a timeout
                    raise asyncio.CancelledError from exc
                self._fail_all(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            finally:
                self.reading = False
            if isinstance(result, dict):  # RESP3 answers a map of streams, RESP2 a list of pairs
                result = result.items()
            for key, entries in result or []:
                key = key.decode() if isinstance(key, bytes) else key
                if key in used and entries:
                    self._deliver(key, used[key], entries)

    def _deliver(self, key: str, used: tuple[int, int], entries: list[Entry]) -> None:
        """Entries read after `used`: to each subscriber that had read up to there. One that
        joined further back meanwhile lowered the cursor: the next read brings it its part."""
        cursor = self.cursors.get(key)
        if cursor is None:
            return
        if cursor >= used:
            self.cursors[key] = max(cursor, parse_id(entries[-1][0]))
        for sub in list(self.subs.get(key, ())):
            if sub.last >= used:
                sub.feed(entries)

    def _fail_all(self, exc: Exception) -> None:
        """Redis went away: every subscription goes on from the database."""
        if self.subs:
            log.warning("Redis unavailable (%s): %d stream(s) follow the database", exc, len(self.subs))
        for subs in self.subs.values():
            for sub in subs:
                sub.reader = None
                sub.fail()
        self.subs.clear()
        self.cursors.clear()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
