"""Redis Streams: every process serves every reply live (API.md, "Several processes and machines").

One stream per reply (`<prefix>reply:<id>`), never reused. Each entry is a kind and a JSON
payload (codec.py); its id is `<text offset>-<n>`: a text entry ends at that offset (n = 0),
other events come after the text they follow (n = 1, 2, ...). Redis refuses an id not above
the stream's last, so a write retried after a lost reply changes nothing. Deltas are merged
per frame (CHAT_MERGE_WINDOW) and every reply's entries of a frame go in one call, with an
approximate MAXLEN. The stream lives while the reply's checkpoints refresh its TTL; at the
end it is shortened to CHAT_LOG_GRACE (the database has the reply by then).

Each frame also goes whole, as one entry, to the writing process's frames stream
(`<prefix>frames:<uuid>`, named in every reply's `open` entry): the other processes follow
live replies there, one key per writing process whatever the number of replies
(redis_reader.py); a reply's own stream serves the catch-ups, resumes and rescues.

The process generating a reply keeps it in memory too (MemoryEventLog): its own streams
never wait for Redis, and go on if Redis goes away. Then the reply goes on without Redis (the
other processes follow it from the database, told so by a `moved` entry when Redis answers
again, or by the stream's TTL running out), and new replies try Redis again a second later.
Stops travel on a pub/sub channel to every process; the generating one ends the reply at once.
"""

import asyncio
import contextvars
import json
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
    stream_head,
)

log = logging.getLogger("chat.eventlog")
RETRY_AFTER = 1.0  # seconds without trying Redis after it failed

FRAMES_KEPT = 1000  # a frames stream's approximate MAXLEN: a reader further behind fails over

# One frame's entries, of every reply, in one round trip and one command (EVALSHA): as a
# pipeline of XADDs, redis-py parsed each reply in Python, which cost the writing process
# more than the reply itself; and the frame travels as one JSON argument, as redis-py's
# packing of four arguments per entry cost the writer a tenth of its CPU (NOTES-reader.md).
# ARGV[7] is the frame, a flat array [reply id, entry id, kind, payload, ...]: each entry goes
# to the stream ARGV[1]..reply id (MAXLEN ~ARGV[2]; an `end` shortens its TTL to ARGV[3] ms; a
# `moved` never creates it), then the frame as it is to the frames stream KEYS[1], id ARGV[5]
# (the frame's number), MAXLEN ~ARGV[4], TTL ARGV[6] ms, without the entries Redis refused (a
# follower gets nothing its reply's stream lacks). Returns per entry 0 (written), 1 (that id
# was written before: a retry) or the error. It writes many streams: a single Redis, not a
# Cluster.
WRITE_FRAME = """
local frame = cjson.decode(ARGV[7])
local out, kept = {}, nil
for i = 1, #frame, 4 do
  local key, id, kind, data = ARGV[1] .. frame[i], frame[i + 1], frame[i + 2], frame[i + 3]
  local ok
  if kind == 'moved' then
    ok = redis.pcall('XADD', key, 'NOMKSTREAM', 'MAXLEN', '~', ARGV[2], id, 'k', kind, 'd', data)
  else
    ok = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[2], id, 'k', kind, 'd', data)
  end
  local refused = type(ok) == 'table' and ok.err
  if refused then
    out[#out + 1] = string.find(ok.err, 'equal or smaller', 1, true) and 1 or ok.err
  else
    out[#out + 1] = 0
    if kind == 'end' then redis.call('PEXPIRE', key, ARGV[3]) end
  end
  -- The frames stream gets all but an entry refused (a retry's is there; a `moved` goes anyway).
  local drop = refused and out[#out] ~= 1 and kind ~= 'moved'
  if drop and not kept then
    kept = {}
    for j = 1, i - 1 do kept[j] = frame[j] end
  elseif kept and not drop then
    for j = i, i + 3 do kept[#kept + 1] = frame[j] end
  end
end
if kept then frame = #kept > 0 and cjson.encode(kept) or '[]' else frame = ARGV[7] end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], ARGV[5], 'f', frame)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return out
"""


@dataclass(eq=False)
class _Outgoing:
    """A reply this process writes to Redis: what is still to be written, and its ids."""

    key: str
    offset: int = 0
    seq: int = 0
    # [id, kind, payload]; a text entry is [end offset, "text", its deltas], joined when written
    pending: list[list] = field(default_factory=list)
    ended: bool = False

    def add_text(self, offset: int, text: str) -> None:
        """A delta ending at `offset`, merged with the text before it while waiting for the frame."""
        self.offset, self.seq = offset, 0
        last = self.pending[-1] if self.pending else None
        if last is not None and last[1] == "text":
            last[0] = offset
            last[2].append(text)
        else:
            self.pending.append([offset, "text", [text]])

    def add(self, event: Event) -> None:
        if isinstance(event, Text):
            self.add_text(event.offset, event.text)
            return
        if (
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
        self.frames_key = f"{prefix}frames:{uuid.uuid4().hex}"  # this process's frames stream
        self.frames = 0  # the number of the last frame written (or tried)
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
        self.queued: dict[str, _Outgoing] = {}  # those of `writing` with entries for the next frame
        self.moved: dict[str, str] = {}  # reply id -> id of a `moved` entry still to write
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
        while self.busy or self.queued or (self.moved and self._available()):  # noqa: ASYNC110
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.005)  # polled: only tests and shutdown wait for this

    # --- writing ---------------------------------------------------------------------------

    async def open(self, reply_id: str) -> None:
        """Creates the stream before the reply starts, so that a stream asked for at once, on
        any process, finds it; its `open` entry names the frames stream that carries it live.
        Without Redis the reply is this process's alone."""
        await self.local.open(reply_id)
        if not self._available():
            return
        conn, out = self._connection(), _Outgoing(self._key(reply_id))
        out.seq = 1
        try:
            async with conn.client.pipeline(transaction=False) as pipe:
                pipe.xadd(out.key, {"k": "open", "d": conn.frames_key}, id="0-1")
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
            self.queued[reply_id] = out
            self.dirty.set()

    async def append(self, reply_id: str, text: str) -> int:
        return self.append_now(reply_id, text)

    def append_now(self, reply_id: str, text: str) -> int:
        length = self.local.append_now(reply_id, text)
        out = self.writing.get(reply_id)
        if out is not None:  # _put's, without a Text per delta
            out.add_text(length, text)
            self.queued[reply_id] = out
            self.dirty.set()
        return length

    async def append_step(self, reply_id: str, step: Step) -> None:
        await self.local.append_step(reply_id, step)
        self._put(reply_id, step)

    async def set_status(self, reply_id: str, state: str, detail: dict | None = None) -> None:
        await self.local.set_status(reply_id, state, detail)
        self._put(reply_id, Status(state, detail))

    async def end(self, reply_id: str, end: End) -> None:
        await self.local.end(reply_id, end)
        self._put(reply_id, end)

    async def _write_forever(self, conn: _Connection) -> None:
        frame, loop = conf.get_float("CHAT_MERGE_WINDOW"), asyncio.get_running_loop()
        while True:
            await self.dirty.wait()
            started = loop.time()
            self.dirty.clear()
            queued, self.queued = self.queued, {}
            batch = [(rid, out, out.take()) for rid, out in queued.items() if out.pending]
            moved = {}
            if self.moved and self._available():
                moved, self.moved = self.moved, {}
            if batch or moved:
                self.busy = True
                try:
                    await self._write(conn, batch, moved)
                finally:
                    self.busy = False
            # What arrives meanwhile goes in the next frame, merged; a frame from this one's
            # start, not from its write's end (on a busy core the write's round trip was as long).
            await asyncio.sleep(max(frame - (loop.time() - started), 0))

    async def _write(
        self, conn: _Connection, batch: list[tuple[str, _Outgoing, list[list]]], moved: dict[str, str]
    ) -> None:
        """Every entry of the frame in one call (WRITE_FRAME), `moved` entries last; an entry
        Redis refuses marks its reply, which goes on without Redis."""
        frame: list[str] = []
        owners: list[str] = []
        for reply_id, _, entries in batch:
            for entry_id, kind, payload in entries:
                if kind == "text":
                    frame.extend((reply_id, f"{entry_id}-0", "text", "".join(payload)))
                else:
                    frame.extend((reply_id, entry_id, *codec.encode(payload)))
                owners.append(reply_id)
        for reply_id, entry_id in moved.items():
            frame.extend((reply_id, entry_id, "moved", "{}"))
        conn.frames += 1  # a frame that failed leaves a gap: its readers fail over (redis_reader.py)
        args = [
            f"{conn.prefix}reply:",
            conf.get_int("CHAT_REDIS_MAXLEN"),
            round(conf.get_float("CHAT_LOG_GRACE") * 1000),
            FRAMES_KEPT,
            f"{conn.frames}-0",
            self._ttl_ms(),
            json.dumps(frame, ensure_ascii=False, separators=(",", ":")),
        ]
        try:
            results = await conn.write_frame(keys=[conn.frames_key], args=args)
        except FAILURES as exc:
            self._failed("write", exc)
            results = [str(exc)] * (len(owners) + len(moved))
            self.moved.update(moved)
        failed = {rid for rid, result in zip(owners, results, strict=False) if result not in (0, 1)}
        for reply_id, out, _ in batch:
            if reply_id in failed:
                self._abandon(reply_id, out)
            elif out.ended and not out.pending:
                self.writing.pop(reply_id, None)

    def _abandon(self, reply_id: str, out: _Outgoing) -> None:
        """This reply goes on without Redis; its followers elsewhere switch to the database."""
        self.writing.pop(reply_id, None)
        self.queued.pop(reply_id, None)
        self.moved[reply_id] = f"{out.offset}-{out.seq + 1000}"
        self.dirty.set()  # told in the next frame, or (Redis away) in the first one after

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
        since = f"{offset}-0" if offset else "-"
        try:
            async with conn.client.pipeline(transaction=False) as pipe:
                pipe.execute_command("XRANGE", key, "0-1", "0-1")
                pipe.execute_command("XRANGE", key, since, "+")
                head, entries = await pipe.execute()
        except FAILURES as exc:
            self._failed("read", exc)
            return None
        # No `open` entry naming a frames stream: no such stream (or one trimmed that far, or
        # written by an older version), then the database.
        frames = stream_head(head)
        if frames is None:
            return None
        check_every = max(conf.stale_after() / 2, 0.05)
        sub = RedisSubscription(key, reply_id, offset, self._alive, check_every, side)
        sub.feed_stream(entries)
        if sub.failed:  # trimmed, or moved to the database
            return None
        if any(isinstance(e, End) for e in sub.queue):
            return sub  # nothing more will come
        try:
            # Live from the reader, which holds what it brings until the rest written meanwhile
            # is read: from the last entry taken, so nothing falls between.
            await conn.reader_for().add(sub, frames)
            since = "{}-{}".format(*sub.last) if sub.last != (0, 0) else since
            sub.caught_up(await conn.client.execute_command("XRANGE", key, since, "+"))
        except FAILURES as exc:
            await sub.close()
            self._failed("read", exc)
            return None
        if sub.failed:
            await sub.close()
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

    async def _alive(self, key: str) -> bool:
        """Is the reply's writer still there? Its checkpoints refresh the TTL at least every
        third of the stale window; a TTL not refreshed for a whole window: its process died."""
        try:
            left = await self._connection().client.pttl(key)
        except FAILURES:
            return False
        return left > self._ttl_ms() - conf.stale_after() * 1000
