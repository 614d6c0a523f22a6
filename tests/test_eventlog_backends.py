"""The event log contract (tests/test_eventlog.py) for Redis Streams and for the database."""

import asyncio
import random
import uuid

import pytest
import redis as redis_sync

from chat.eventlog import End, LogUnavailable, Text
from chat.eventlog.redis import RedisEventLog
from chat.models import Conversation, Message
from chat.replies.follower import DatabaseEventLog
from tests.test_eventlog import Backend, EventLogContract, follow, new_uuid, run


class TestRedisEventLog(EventLogContract):
    """Writer and reader are two instances, as two processes: the reader goes through Redis."""

    @pytest.fixture
    def backend(self, redis_settings):
        return Backend(RedisEventLog(), RedisEventLog(), new_uuid)


class TestDatabaseEventLog(EventLogContract):
    @pytest.fixture
    def backend(self, transactional_db, settings):
        settings.CHAT_CHECKPOINT_INTERVAL = 0.02  # the follower's polling
        settings.CHAT_STALE_INTERVALS = 1000  # these replies have no checkpointer keeping them alive
        conversation = Conversation.objects.create(visitor="contract")
        made = [
            str(Message.objects.create(conversation=conversation, role="assistant", status="streaming").pk)
            for _ in range(3)
        ]

        def new_id(missing: bool = False) -> str:  # rows made beforehand: called on the event loop
            return str(uuid.uuid4()) if missing else made.pop()

        log = DatabaseEventLog()
        return Backend(log, log, new_id)


# --- what only Redis does ---------------------------------------------------------------------


def redis_client(url: str) -> redis_sync.Redis:
    return redis_sync.Redis.from_url(url, decode_responses=True)


def test_entry_ids_carry_the_text_offset_and_deltas_are_merged_per_frame(redis_settings, settings):
    rid = new_uuid()

    async def go():
        log = RedisEventLog()
        await log.open(rid)
        await log.set_status(rid, "thinking")
        for part in ["ab"] * 50:  # within one frame: one entry
            await log.append(rid, part)
        await log.drained()
        await log.append(rid, "cd")
        await log.end(rid, End(status="complete", finish_reason="stop"))
        await log.drained()
        await log.close()

    run(go())
    client = redis_client(settings.REDIS_URL)
    key = f"{redis_settings}reply:{rid}"
    entries = client.xrange(key)
    assert [(entry_id, fields["k"]) for entry_id, fields in entries] == [
        ("0-1", "open"),
        ("0-2", "status"),
        ("100-0", "text"),
        ("102-0", "text"),
        ("102-1", "end"),
    ]
    assert 0 < client.ttl(key) <= settings.CHAT_LOG_GRACE  # shortened at the end


def test_a_write_retried_after_it_landed_changes_nothing(redis_settings, settings):
    """Redis refuses an id not above the last: the writer takes that as already written."""
    rid = new_uuid()
    client = redis_client(settings.REDIS_URL)
    key = f"{redis_settings}reply:{rid}"

    async def go():
        log = RedisEventLog()
        await log.open(rid)
        client.xadd(key, {"k": "text", "d": "abc"}, id="3-0")  # as if a reply got lost
        await log.append(rid, "abc")
        await log.drained()
        await log.append(rid, "de")
        await log.end(rid, End(status="complete"))
        await log.drained()
        reader = RedisEventLog()
        sub = await reader.subscribe(rid, 0)
        items = [await sub.next(1) for _ in range(2)]
        await sub.close()
        await reader.close()
        await log.close()
        return items

    assert run(go()) == [Text(5, "abcde"), End("complete")]
    assert [entry_id for entry_id, _ in client.xrange(key)] == ["0-1", "3-0", "5-0", "5-1"]


def test_the_stream_lives_while_checkpoints_keep_it(redis_settings, settings):
    settings.CHAT_CHECKPOINT_INTERVAL = 1
    settings.CHAT_STALE_INTERVALS = 10
    rid = new_uuid()
    client = redis_client(settings.REDIS_URL)
    key = f"{redis_settings}reply:{rid}"

    async def go():
        log = RedisEventLog()
        await log.open(rid)
        client.expire(key, 2)
        await log.keep([rid])
        await log.close()

    run(go())
    assert 10 < client.ttl(key) <= 12


def test_one_reader_and_a_few_connections_serve_many_followers(redis_settings, settings):
    ids = [new_uuid() for _ in range(60)]

    async def go():
        writer, reader = RedisEventLog(), RedisEventLog()
        for rid in ids:
            await writer.open(rid)
        await writer.drained()
        subs = [await reader.subscribe(rid, 0) for rid in ids]
        for rid in ids:
            await writer.append(rid, f"text of {rid}")
        got = [await sub.next(2) for sub in subs]
        readers = [t for t in asyncio.all_tasks() if t.get_name() == "chat-redis-reader"]
        pool = reader._conn.client.connection_pool
        connections = len(pool._in_use_connections) + len(pool._available_connections)
        for sub in subs:
            await sub.close()
        await reader.close()
        await writer.close()
        return got, readers, connections

    got, readers, connections = run(go(), timeout=15)
    assert got == [Text(len(f"text of {rid}"), f"text of {rid}") for rid in ids]
    assert len(readers) == 1
    assert connections <= 4  # the reader's XREAD, the stop listener, a catch-up or two


def test_the_reader_names_one_frames_stream_per_writing_process_and_reads_once_a_frame(redis_settings):
    """Following 200 replies of two processes, the reader's XREAD names two streams, and it
    reads about once per frame written, not once per reply (counted, not timed)."""
    writers = [RedisEventLog(), RedisEventLog()]
    ids = [[new_uuid() for _ in range(100)] for _ in writers]

    async def go():
        reader = RedisEventLog()
        for writer, rids in zip(writers, ids, strict=True):
            for rid in rids:
                await writer.open(rid)
        subs = [await reader.subscribe(rid, 0) for rids in ids for rid in rids]
        for part in "abcde":
            for writer, rids in zip(writers, ids, strict=True):
                for rid in rids:
                    await writer.append(rid, part)
            for writer in writers:
                await writer.drained()
        got = []
        for sub in subs:
            text = ""
            while len(text) < 5 and (event := await sub.next(2)) is not None:
                text += event.text if isinstance(event, Text) else ""
            got.append(text)
        follower = reader._conn.reader
        followed, reads = set(follower.cursors), follower.reads
        frames = sum(writer._conn.frames for writer in writers)
        for sub in subs:
            await sub.close()
        await reader.close()
        names = {writer._conn.frames_key for writer in writers}
        for writer in writers:
            await writer.close()
        return got, followed, names, reads, frames

    got, followed, names, reads, frames = run(go(), timeout=20)
    assert got == ["abcde"] * 200
    assert followed == names
    # One read per frame, one woken for each stream it began to follow, the first, a timeout.
    assert reads <= frames + len(names) + 2, (reads, frames)


@pytest.mark.parametrize("seed", range(3))
def test_followers_joining_anywhere_get_every_delta_once_across_many_replies(redis_settings, seed):
    """Many replies written frame after frame while followers join from random places: each
    gets the rest of its reply once, contiguous, then the end."""
    rng = random.Random(seed)
    ids = [new_uuid() for _ in range(120)]

    async def go():
        writer, reader = RedisEventLog(), RedisEventLog()
        texts = dict.fromkeys(ids, "")
        for rid in ids:
            await writer.open(rid)
        subs = []
        for _ in range(30):
            for rid in rng.sample(ids, 40):
                delta = rng.choice(["a", "bc", "déf", "🙂"])
                texts[rid] += delta
                await writer.append(rid, delta)
            for rid in rng.sample(ids, 6):
                offset = rng.randint(0, len(texts[rid]))
                subs.append((rid, offset, await reader.subscribe(rid, offset)))
            if rng.random() < 0.5:
                await asyncio.sleep(0.02)  # a frame goes out meanwhile
        for rid in ids:
            await writer.end(rid, End("complete"))
        await writer.drained()
        followed = []
        for rid, offset, sub in subs:
            followed.append((rid, offset, await follow(sub)))
            await sub.close()
        await reader.close()
        await writer.close()
        return texts, followed

    texts, followed = run(go(), timeout=30)
    for rid, offset, events in followed:
        assert events[-1] == End("complete"), (rid, offset, events)
        place, text = offset, ""
        for event in events[:-1]:
            assert isinstance(event, Text) and event.offset - len(event.text) == place, (offset, events)
            place, text = event.offset, text + event.text
        assert text == texts[rid][offset:]


async def unavailable(sub, timeout: float) -> LogUnavailable | None:
    """Reads `sub` until it says the log is unavailable (returned) or goes quiet (None)."""
    try:
        while await sub.next(timeout) is not None:
            pass
    except LogUnavailable as exc:
        return exc
    return None


def _followed_then_broken(rid: str, breaks, timeout: float) -> tuple:
    """A reply written "ab" and followed from another process; then `breaks(writer)` (async)
    does something to Redis: the follower's first event, and how it ended (LogUnavailable, or
    None if it just went quiet)."""

    async def go():
        writer, reader = RedisEventLog(), RedisEventLog()
        await writer.open(rid)
        await writer.append(rid, "ab")
        await writer.drained()
        sub = await reader.subscribe(rid, 0)
        first = await sub.next(1)
        try:
            await breaks(writer)
            return first, await unavailable(sub, timeout)
        finally:
            await sub.close()
            await reader.close()
            await writer.close()

    return run(go())


def test_a_frame_that_never_arrived_sends_its_followers_to_the_database(redis_settings, settings):
    """Frames are numbered: one missing (trimmed, or lost in a write that failed) could hold a
    delta, so its followers go on from the database rather than skip it."""
    rid = new_uuid()
    client = redis_client(settings.REDIS_URL)
    key = f"{redis_settings}reply:{rid}"

    async def lose_frames(writer) -> None:
        frames = client.xrange(key, "0-1", "0-1")[0][1]["d"]  # the `open` entry names it
        client.xadd(frames, {"f": "[]"}, id="1000-0")  # as if frames before it were lost

    first, failed = _followed_then_broken(rid, lose_frames, 1)
    assert first == Text(2, "ab")
    assert failed is not None and failed.offset == 2 and not failed.writer_gone


def test_a_reply_redis_refuses_sends_its_followers_to_the_database(redis_settings, settings):
    """The writer could not append to the reply's stream: the `moved` entry that tells its
    followers reaches them through the frames stream all the same."""
    rid = new_uuid()
    client = redis_client(settings.REDIS_URL)
    key = f"{redis_settings}reply:{rid}"

    async def refuse(writer) -> None:
        client.delete(key)
        client.set(key, "not a stream", ex=60)  # its next entries are refused
        await writer.append(rid, "cd")
        await writer.drained()

    first, failed = _followed_then_broken(rid, refuse, 0.5)
    assert first == Text(2, "ab")
    assert failed is not None and failed.offset == 2 and not failed.writer_gone


def test_a_stop_reaches_the_generating_process_at_once(redis_settings):
    async def go():
        generating, elsewhere = RedisEventLog(), RedisEventLog()
        stopped = asyncio.get_running_loop().create_future()
        generating.start(on_stop=stopped.set_result)
        await asyncio.sleep(0.05)  # its listener subscribes
        sent = asyncio.get_running_loop().time()
        await elsewhere.request_stop("reply-1")
        reply_id = await asyncio.wait_for(stopped, 2)
        took = asyncio.get_running_loop().time() - sent
        await generating.close()
        await elsewhere.close()
        return reply_id, took

    reply_id, took = run(go())
    assert reply_id == "reply-1"
    assert took < 0.5


@pytest.mark.parametrize("seed", range(8))
def test_redis_resumes_text_and_steps_alike_from_every_id(redis_settings, seed):
    """Issue 12's steps through Redis: a reader in another process resumes from any id as the
    in-memory log and the database replay do (tests/test_steps.py)."""
    import random

    from chat.steps import replay
    from tests.test_steps import _flat, log_random_reply

    rng = random.Random(seed)
    rid = new_uuid()

    async def go():
        writer, reader = RedisEventLog(), RedisEventLog()
        steps, text = await log_random_reply(rng, writer, rid)
        await writer.drained()
        stored = steps.stored()
        whole = replay(text, stored["reasoning"], stored["steps"], 0, None)
        places = [(0, None)] + [
            (event.offset, None if type(event).__name__ == "Text" else event.side) for event in whole
        ]
        drained = []
        for offset, side in places:
            sub = await reader.subscribe(rid, offset, side)
            events = []
            while (event := await sub.next(0.05)) is not None:
                events.append(event)
            await sub.close()
            drained.append(events)
        await reader.close()
        await writer.close()
        return whole, drained

    whole, drained = run(go(), timeout=20)
    assert _flat(drained[0]) == _flat(whole)
    for i, events in enumerate(drained[1:]):
        assert _flat(events) == _flat(whole[i + 1 :]), i
