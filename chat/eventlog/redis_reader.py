"""Following replies through Redis: one reader per process, many subscriptions.

One blocking XREAD per viewer would cost a connection each, and redis-py returns a cancelled
blocked read's connection to the pool still busy; so one task per process reads with one
XREAD and feeds the local subscribers. It reads the frames streams of the processes that write
the followed replies (redis.py), not the replies' own streams: one key per writing process
and a few entries per read whatever the number of replies. Naming every reply's stream and
cursor in each XREAD cost the reader about as much as it saved (the arguments packed at every
frame, an entry's nested lists parsed and garbage-collected per token: NOTES-reader.md).

A new subscriber is first registered with the reader, which holds what it brings; then it
reads what it missed from the reply's stream (the catch-up, in RedisEventLog.subscribe), and
the held entries follow. Entries are told apart by id, so one seen twice is dropped. Frames
are numbered: a frame that never arrived (trimmed, or lost in a write that failed) fails the
subscriptions that needed it over to the database.
"""

import asyncio
import contextvars
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

import redis.asyncio as redis
from redis.exceptions import RedisError

from chat.eventlog import codec
from chat.eventlog.base import (
    APPROVAL,
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

Entry = tuple[bytes | str, str, bytes | str]  # id, kind, payload
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


def stream_head(entries: list) -> str | None:
    """The frames stream named by a reply stream's `open` entry (XRANGE key 0-1 0-1), if any."""
    if not entries:
        return None
    kind, data = kind_and_data(entries[0][1])
    frames = data.decode() if isinstance(data, bytes) else data
    return frames if kind == "open" and not frames.startswith("{") else None  # "{}": an older writer


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
        reply_id: str,
        offset: int,
        alive: Callable[[str], Awaitable[bool]],
        check_every: float,
        side: int | None = None,
    ):
        self.key, self.reply_id = key, reply_id
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
        self.frames = ""  # the frames stream that carries it, and the reader's place there:
        self.waiting: int | None = None  # the frame after which it needs them all (None: live)
        self.held: list[Entry] | None = None  # what the reader brought before the catch-up ended
        self.approval_shown = False  # the last status delivered asked for an approval (issue 31)

    def feed_stream(self, entries: list) -> None:
        """Entries as XRANGE answers them (raw: see raw_entries)."""
        self.feed([(entry_id, *kind_and_data(fields)) for entry_id, fields in entries])

    def caught_up(self, entries: list) -> None:
        """The end of the catch-up (XRANGE, raw), then what the reader brought meanwhile."""
        held, self.held = self.held or [], None
        self.feed_stream(entries)
        self.feed(held)

    def feed(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.take(*entry)

    def take(self, entry_id: bytes | str, kind: bytes | str, data: bytes | str) -> None:
        """One entry, unless seen already; held while the catch-up is read."""
        if self.held is not None:
            self.held.append((entry_id, kind, data))
            return
        seen = parse_id(entry_id)
        if seen <= self.last or self.failed:
            return
        self.last = seen
        self._apply(seen[0], kind.decode() if isinstance(kind, bytes) else kind, data)
        self._wake()

    def _apply(self, offset: int, kind: str, data: bytes | str) -> None:
        if kind == "moved":  # the writer could not go on through Redis: the database has the rest
            self.failed = True
        elif kind == "text":  # the payload is the text itself (codec.py), once per delta
            if offset <= self.queued:
                return
            text = data.decode() if isinstance(data, bytes) else data
            start = offset - len(text)
            if start > self.queued:  # the head of the stream was trimmed: a gap
                self.failed = True
                return
            self.queue.append(Text(offset, text if start == self.queued else text[self.queued - start :]))
            self.queued = offset
        elif kind != "open":
            event = codec.decode(kind, data, offset)
            if isinstance(event, Status) and not self._wants(event):
                return
            if isinstance(event, STEPS) and (
                event.side <= self.from_side if self.from_side is not None else event.offset < self.start
            ):
                return  # delivered before this subscription's place
            if event is not None:
                self.queue.append(event)

    def _wants(self, status: Status) -> bool:
        """A client with text already needs no progress state, but for an approval (issue 31),
        and the status that ends one it was shown. An approval still queued when it ends was
        decided before this client saw it (a catch-up): it is dropped."""
        if status.state == APPROVAL:
            return True
        stale = [e for e in self.queue if isinstance(e, Status) and e.state == APPROVAL]
        for event in stale:
            self.queue.remove(event)
        return self.queued == 0 or (self.approval_shown and not stale)

    def fail(self) -> None:
        self.failed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _pop(self) -> Event:
        item = self.queue.popleft()
        if isinstance(item, Text):
            if self.queue and isinstance(self.queue[0], Text):  # merged while the stream lagged
                parts = [item.text]
                while self.queue and isinstance(self.queue[0], Text):
                    item = self.queue.popleft()
                    parts.append(item.text)
                item = Text(item.offset, "".join(parts))
            self.offset = item.offset
        elif isinstance(item, STEPS):
            self.side = item.side
        elif isinstance(item, Status):
            self.approval_shown = item.state == APPROVAL
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
            if woken or self.queue or self.failed:
                continue
            if not await self.alive(self.key):
                self.failed = self.writer_gone = True

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.remove(self)
            self.reader = None


class Reader:
    """The process's one XREAD loop over the frames streams of the replies followed here."""

    def __init__(self, client: redis.Redis, wake_key: str, block_ms: int) -> None:
        self.client, self.wake_key, self.block_ms = client, wake_key, block_ms
        self.subs: dict[str, set[RedisSubscription]] = {}  # reply id -> its subscriptions
        self.following: dict[str, set[RedisSubscription]] = {}  # frames stream -> subscriptions
        self.cursors: dict[str, int] = {}  # frames stream -> the last frame read
        self.changed = asyncio.Event()
        self.reading = False
        self.reads = 0  # XREADs issued (tests count them)
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name="chat-redis-reader", context=contextvars.Context()
        )

    async def add(self, sub: RedisSubscription, frames: str) -> None:
        """From now on, `sub` gets every frame of `frames` written after this call began."""
        cursor = self.cursors.get(frames)
        if cursor is None:  # a new stream to follow: from its last frame (0: none yet, any first)
            last = await self.client.execute_command("XREVRANGE", frames, "+", "-", "COUNT", 1)
            cursor = parse_id(last[0][0])[0] if last else 0
        sub.reader, sub.frames, sub.waiting, sub.held = self, frames, cursor, []
        self.subs.setdefault(sub.reply_id, set()).add(sub)
        self.following.setdefault(frames, set()).add(sub)
        known = self.cursors.get(frames)
        if known is None or cursor < known:  # the others drop what they get twice
            self.cursors[frames] = cursor
            self.changed.set()
            if self.reading:  # the blocked XREAD does not know this place yet: wake it
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": 1}, maxlen=1, approximate=False)
                    pipe.expire(self.wake_key, 60)
                    await pipe.execute()

    def remove(self, sub: RedisSubscription) -> None:
        for table, name in ((self.subs, sub.reply_id), (self.following, sub.frames)):
            subs = table.get(name)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del table[name]
        if sub.frames not in self.following:
            self.cursors.pop(sub.frames, None)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self.cursors:
                self.changed.clear()
                await self.changed.wait()
            self.changed.clear()
            used = dict(self.cursors)
            self.reading = True
            self.reads += 1
            try:
                result = await self.client.execute_command(
                    "XREAD", "COUNT", 1000, "BLOCK", self.block_ms, "STREAMS",
                    *(self.wake_key, *used), *("$", *(f"{n}-0" for n in used.values())),
                )  # fmt: skip
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
            if asyncio.current_task().cancelling():  # a cancel redis-py swallowed: the read ended
                raise asyncio.CancelledError
            if isinstance(result, dict):  # RESP3 answers a map of streams, RESP2 a list of pairs
                result = result.items()
            for key, entries in result or []:
                key = key.decode() if isinstance(key, bytes) else key
                if key in used and entries:
                    self._deliver(key, used[key], entries)

    def _deliver(self, frames: str, used: int, entries: list) -> None:
        """Frames read after `used`, to each subscription that had all before: those live, and
        those waiting from `used` or later. One that joined further back meanwhile lowered the
        cursor: the next read brings it its part."""
        following = self.following.get(frames)
        if following is None:
            return
        numbers = [parse_id(entry_id)[0] for entry_id, _ in entries]
        first, last = numbers[0], numbers[-1]
        if used and first != used + 1 or last - first != len(numbers) - 1:
            self._gap(frames, used, numbers)
            following = self.following.get(frames, set())
        cursor = self.cursors.get(frames)
        if cursor is not None and cursor >= used:
            self.cursors[frames] = max(cursor, last)
        subs_of = self.subs
        for _, fields in entries:
            frame = json.loads(fields[-1])  # [b"f", frame]: [reply id, entry id, kind, payload, ...]
            # Entry by entry, no list per entry: what lives through a read sets off the garbage
            # collector, which walks every stream's objects (NOTES-reader.md).
            for i in range(0, len(frame), 4):
                subs = subs_of.get(frame[i])
                if subs is not None:
                    for sub in subs:
                        if sub.frames == frames and (sub.waiting is None or sub.waiting >= used):
                            sub.take(frame[i + 1], frame[i + 2], frame[i + 3])
        for sub in following:
            if sub.waiting is not None and sub.waiting >= used:
                sub.waiting = None  # live from here on

    def _gap(self, frames: str, used: int, numbers: list[int]) -> None:
        """Frames missing among those read after `used`: whoever needed them follows the database."""
        places = [used, *numbers] if used else numbers  # 0: the stream was new, any first frame
        after = next(b for a, b in zip(places, places[1:], strict=False) if b != a + 1)
        log.warning("Redis frames missing before %s in %s: their followers go to the database", after, frames)
        for sub in list(self.following.get(frames, ())):
            if sub.waiting is None or sub.waiting < after - 1:
                self.remove(sub)
                sub.reader = None
                sub.fail()

    def _fail_all(self, exc: Exception) -> None:
        """Redis went away: every subscription goes on from the database."""
        if self.subs:
            log.warning("Redis unavailable (%s): %d stream(s) follow the database", exc, len(self.subs))
        for subs in self.following.values():
            for sub in subs:
                sub.reader = None
                sub.fail()
        self.subs.clear()
        self.following.clear()
        self.cursors.clear()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
