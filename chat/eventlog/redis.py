"""Redis Streams: every process serves every reply live (API.md, "Several processes and machines").

One stream per reply (`<prefix>reply:<id>`), never reused. Each entry is a kind and a JSON
payload (codec.py); its id is `<text offset>-<n>`: a text entry ends at that offset (n = 0),
other events come after the text they follow (n = 1, 2, ...). Redis refuses an id not above
the stream's last, so a write retried after a lost reply changes nothing. Deltas are merged
per frame (CHAT_MERGE_WINDOW) and every reply's entries of a frame go in one pipeline, with
an approximate MAXLEN. The stream lives while the reply's checkpoints refresh its TTL; at the
end it is shortened to CHAT_LOG_GRACE (the database has the reply by then).

The process generating a reply keeps it in memory too (MemoryEventLog): its own streams
never wait for Redis, and go on if Redis goes away. Then the reply goes on without Redis (the
other processes follow it from the database, told so by a `moved` entry when Redis answers
again, or by the stream's TTL running out), and new replies try Redis again a second later.
Stops travel on a pub/sub channel to every process; the generating one ends the reply at once.
"""

import asyncio
import contextvars
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis.asyncio as redis

from chat import conf
from chat.eventlog import codec
from chat.eventlog.base import End, Event, EventLog, ReasoningText, Status, Step, Subscription, Text
from chat.eventlog.memory import MemoryEventLog
from chat.eventlog.redis_reader import (
    FAILURES,
    Reader,
    RedisSubscription,
    kind_and_data,
    parse_id,
    raw_entries,
)

log = logging.getLogger("chat.eventlog")
RETRY_AFTER = 1.0  # seconds without trying Redis after it failed

# One frame's entries, of every reply, in one round trip and one command (EVALSHA): as a
# pipeline of XADDs, redis-py parsed each reply in Python, which cost the writing process
# more than the reply itself (README: Deploying, figures). KEYS[i] gets the entry ARGV[3i]
# (id), ARGV[3i+1] (kind), ARGV[3i+2] (payload); ARGV[1] is the MAXLEN, ARGV[2] the TTL in ms
# after an `end`. Returns per entry 0 (written), 1 (that id was written before: a retry) or
# the error. Its keys are many streams: a single Redis, not a Cluster.
WRITE_FRAME = """
local out = {}
for i, key in ipairs(KEYS) do
  local j = 3 * i
  local ok = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], ARGV[j], 'k', ARGV[j + 1], 'd', ARGV[j + 2])
  if type(ok) == 'table' and ok.err then
    out[i] = string.find(ok.err, 'equal or smaller', 1, true) and 1 or ok.err
  else
    out[i] = 0
    if ARGV[j + 1] == 'end' then redis.call('PEXPIRE', key, ARGV[2]) end
  end
end
return out
"""


def _last_is_reasoning(pending: list[list]) -> bool:
    return bool(pending) and isinstance(pending[-1][2], ReasoningText)


@dataclass(eq=False)
class _Outgoing:
    """A reply this process writes to Redis: what is still to be written, and its ids."""

    key: str
    offset: int = 0
    seq: int = 0
    pending: list[list] = field(default_factory=list)  # [id, kind, payload or Text]
    ended: bool = False

    def add(self, event: Event) -> None:
        if isinstance(event, Text):
            self.offset, self.seq = event.offset, 0
            last = self.pending[-1] if self.pending else None
            if last is not None and last[1] == "text":  # merged while waiting for the frame
                last[0], last[2] = f"{event.offset}-0", Text(event.offset, last[2].text + event.text)
                return
            self.pending.append([f"{event.offset}-0", "text", event])
        elif (
            isinstance(event, ReasoningText)
            and self.pending
            and isinstance(self.pending[-1][2], ReasoningText)
        ):
            last = self.pending[-1]  # reasoning is merged per frame too, under its first id
            last[2] = ReasoningText(event.offset, event.side, last[2].text + event.text)
        else:
            self.seq += 1
            self.pending.append([f"{self.offset}-{self.seq}", "event", event])
        self.ended = self.ended or isinstance(event, End)

    def take(self) -> list[list]:
        taken, self.pending = self.pending, []
        return taken


class _Connection:
    """The Redis client and the tasks of one event loop."""

    def __init__(self, url: str, prefix: str, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            client_name=f"chat-{os.getpid()}",
        )
        raw_entries(self.client)
        self.prefix, self.timeout = prefix, timeout
        self.reader: Reader | None = None
        self.tasks: list[asyncio.Task] = []
        self.write_frame = self.client.register_script(WRITE_FRAME)

    def reader_for(self) -> Reader:
        if self.reader is None or self.reader.task.done():
            block_ms = max(int(self.timeout * 500), 50)  # well within the socket timeout
            self.reader = Reader(self.client, f"{self.prefix}wake:{uuid.uuid4().hex}", block_ms)
        return self.reader

    def spawn(self, coro, name: str) -> None:
        self.tasks.append(self.loop.create_task(coro, name=name, context=contextvars.Context()))

    async def close(self) -> None:
        tasks = [*self.tasks, *([self.reader.task] if self.reader else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1)
            if pending:
                log.warning("Redis tasks did not stop: %s", pending)
        await self.client.aclose()


class RedisEventLog(EventLog):
    def __init__(self) -> None:
        self.local = MemoryEventLog()
        self.writing: dict[str, _Outgoing] = {}
        self.moved: dict[str, str] = {}  # key -> id of a `moved` entry still to write
        self.down_until = 0.0
        self.dirty: asyncio.Event | None = None
        self.busy = False  # a pipeline is being written
        self.on_stop: Callable[[str], None] | None = None
        self._conn: _Connection | None = None

    # --- connection, per event loop ------------------------------------------------------

    def _key(self, reply_id: str) -> str:
        return f"{conf.get_str('CHAT_REDIS_PREFIX')}reply:{reply_id}"

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.loop is not loop:
            self._conn = _Connection(
                conf.get_str("REDIS_URL"),
                conf.get_str("CHAT_REDIS_PREFIX"),
                conf.get_float("CHAT_REDIS_TIMEOUT"),
            )
            self.dirty = asyncio.Event()
            self._conn.spawn(self._write_forever(self._conn), "chat-redis-writer")
            self._conn.spawn(self._listen_forever(self._conn), "chat-redis-stops")
        return self._conn

    def _available(self) -> bool:
        return asyncio.get_running_loop().time() >= self.down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        if self._available():
            log.warning(
                "Redis unavailable (%s: %s): replies go on without it", what, exc or type(exc).__name__
            )
        self.down_until = asyncio.get_running_loop().time() + RETRY_AFTER

    def _ttl_ms(self) -> int:
        """A live reply's stream outlives the stale window by a checkpoint interval."""
        return round((conf.stale_after() + conf.get_float("CHAT_CHECKPOINT_INTERVAL")) * 1000) + 500

    def start(self, on_stop: Callable[[str], None]) -> None:
        self.on_stop = on_stop
        self._connection()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.loop is asyncio.get_running_loop():
            await self.drained()  # the replies' last entries first
            await conn.close()

    async def drained(self, timeout: float = 2.0) -> None:
        """Wait until what was appended so far is written to Redis (or given up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.busy or any(out.pending for out in self.writing.values()):  # noqa: ASYNC110
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.005)  # polled: only tests and shutdown wait for this

    # --- writing ---------------------------------------------------------------------------

    async def open(self, reply_id: str) -> None:
        """Creates the stream before the reply starts, so that a stream asked for at once, on
        any process, finds it. Without Redis the reply is this process's alone."""
        await self.local.open(reply_id)
        if not self._available():
            return
        conn, out = self._connection(), _Outgoing(self._key(reply_id))
        out.seq = 1
        try:
            async with conn.client.pipeline(transaction=False) as pipe:
                pipe.xadd(out.key, {"k": "open", "d": "{}"}, id="0-1")
                pipe.pexpire(out.key, self._ttl_ms())
                await pipe.execute()
        except FAILURES as exc:
            self._failed("open", exc)
            return
        self.writing[reply_id] = out

    def _put(self, reply_id: str, event: Event) -> None:
        out = self.writing.get(reply_id)
        if out is not None:
            out.add(event)
            self.dirty.set()

    async def append(self, reply_id: str, text: str) -> int:
        length = await self.local.append(reply_id, text)
        self._put(reply_id, Text(length, text))
        return length

    async def append_step(self, reply_id: str, step: Step) -> None:
        await self.local.append_step(reply_id, step)
        self._put(reply_id, step)

    async def set_status(self, reply_id: str, state: str) -> None:
        await self.local.set_status(reply_id, state)
        self._put(reply_id, Status(state))

    async def end(self, reply_id: str, end: End) -> None:
        await self.local.end(reply_id, end)
        self._put(reply_id, end)

    async def _write_forever(self, conn: _Connection) -> None:
        frame = conf.get_float("CHAT_MERGE_WINDOW")
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            batch = [(rid, out, out.take()) for rid, out in list(self.writing.items()) if out.pending]
            if batch:
                self.busy = True
                try:
                    await self._write(conn, batch)
                finally:
                    self.busy = False
            if self.moved and self._available():
                await self._write_moved(conn)
            await asyncio.sleep(frame)  # what arrives meanwhile goes in the next pipeline, merged

    async def _write(self, conn: _Connection, batch: list[tuple[str, _Outgoing, list[list]]]) -> None:
        """Every entry of the frame in one call (WRITE_FRAME); an entry Redis refuses marks its
        reply, which goes on without Redis."""
        keys: list[str] = []
        args: list[object] = [
            conf.get_int("CHAT_REDIS_MAXLEN"),
            round(conf.get_float("CHAT_LOG_GRACE") * 1000),
        ]
        owners: list[str] = []
        for reply_id, out, entries in batch:
            for entry_id, _, event in entries:
                keys.append(out.key)
                args.extend((entry_id, *codec.encode(event)))
                owners.append(reply_id)
        try:
            results = await conn.write_frame(keys=keys, args=args)
        except FAILURES as exc:
            self._failed("write", exc)
            results = [str(exc)] * len(keys)
        failed = {rid for rid, result in zip(owners, results, strict=True) if result not in (0, 1)}
        for reply_id, out, _ in batch:
            if reply_id in failed:
                self._abandon(reply_id, out)
            elif out.ended and not out.pending:
                self.writing.pop(reply_id, None)

    def _abandon(self, reply_id: str, out: _Outgoing) -> None:
        """This reply goes on without Redis; its followers elsewhere switch to the database."""
        self.writing.pop(reply_id, None)
        self.moved[out.key] = f"{out.offset}-{out.seq + 1000}"

    async def _write_moved(self, conn: _Connection) -> None:
        moved, self.moved = self.moved, {}
        try:
            async with conn.client.pipeline(transaction=False) as pipe:
                for key, entry_id in moved.items():
                    pipe.xadd(key, {"k": "moved", "d": "{}"}, id=entry_id, nomkstream=True)
                await pipe.execute(raise_on_error=False)
        except FAILURES as exc:
            self._failed("write", exc)
            self.moved.update(moved)

    async def keep(self, reply_ids: Iterable[str]) -> None:
        keys = [self.writing[rid].key for rid in reply_ids if rid in self.writing]
        if not keys or not self._available():
            return
        try:
            async with self._connection().client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, self._ttl_ms())
                await pipe.execute(raise_on_error=False)
        except FAILURES as exc:
            self._failed("keep", exc)

    # --- stops -----------------------------------------------------------------------------

    async def request_stop(self, reply_id: str) -> None:
        if not self._available():
            return
        try:
            await self._connection().client.publish(f"{conf.get_str('CHAT_REDIS_PREFIX')}stop", reply_id)
        except FAILURES as exc:
            self._failed("stop", exc)

    async def _listen_forever(self, conn: _Connection) -> None:
        """One pub/sub connection per process hears every stop. It blocks without a timeout:
        with one, a cancel that meets the read timeout can be taken for the timeout
        (asyncio.timeout's race) and the task would not end; the loop checks anyway."""
        channel = f"{conn.prefix}stop"
        task = asyncio.current_task()
        while not task.cancelling():
            pubsub = conn.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                while not task.cancelling():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is not None and self.on_stop is not None:
                        data = message["data"]
                        self.on_stop(data.decode() if isinstance(data, bytes) else str(data))
            except FAILURES:
                if not task.cancelling():
                    await asyncio.sleep(RETRY_AFTER)
            finally:
                await pubsub.aclose()

    # --- following -------------------------------------------------------------------------

    async def subscribe(self, reply_id: str, offset: int, side: int | None = None) -> Subscription | None:
        """This process's own replies from memory; others' from Redis: what was written after
        the place (`offset`, `side`: the catch-up), then live from the reader. None: follow
        the database."""
        local = await self.local.subscribe(reply_id, offset, side)
        if local is not None or not self._available():
            return local
        conn, key = self._connection(), self._key(reply_id)
        try:
            entries = await conn.client.execute_command("XRANGE", key, f"{offset}-0" if offset else "-", "+")
        except FAILURES as exc:
            self._failed("read", exc)
            return None
        # No entry: no such stream (any stream holds its `open` entry), then the database.
        if not entries and (offset == 0 or not await self._exists(key)):
            return None
        check_every = max(conf.stale_after() / 2, 0.05)
        sub = RedisSubscription(key, offset, self._alive, check_every, side)
        sub.feed(entries)
        if sub.failed:  # trimmed, or moved to the database
            return None
        if not any(isinstance(e, End) for e in sub.queue):
            try:
                await conn.reader_for().add(sub)
            except FAILURES as exc:
                self._failed("read", exc)
                return None
        return sub

    async def text_of(self, reply_id: str) -> str | None:
        """The text of a reply's stream, whole and contiguous, or None."""
        try:
            entries = await self._connection().client.execute_command("XRANGE", self._key(reply_id), "-", "+")
        except FAILURES:
            return None
        parts, length = [], 0
        for entry_id, fields in entries:
            kind, data = kind_and_data(fields)
            if kind != "text":
                continue
            end = parse_id(entry_id)[0]
            text = codec.decode("text", data, end).text
            if end - len(text) != length:  # trimmed or torn: not the whole text
                return None
            parts.append(text)
            length = end
        return "".join(parts)

    async def _exists(self, key: str) -> bool:
        try:
            return bool(await self._connection().client.exists(key))
        except FAILURES:
            return False

    async def _alive(self, key: str) -> bool:
        """Is the reply's writer still there? Its checkpoints refresh the TTL at least every
        third of the stale window; a TTL not refreshed for a whole window: its process died."""
        try:
            left = await self._connection().client.pttl(key)
        except FAILURES:
            return False
        return left > self._ttl_ms() - conf.stale_after() * 1000
