"""The event log contract (tests/test_eventlog.py) for Redis Streams and for the database."""

import asyncio
import uuid

import pytest
import redis as redis_sync

from chat.eventlog import End, Text
from chat.eventlog.redis import RedisEventLog
from chat.models import Conversation, Message
from chat.replies.follower import DatabaseEventLog
from tests.test_eventlog import Backend, EventLogContract, new_uuid, run


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

    from chat.steps import Steps, replay
    from tests.test_steps import _flat

    rng = random.Random(seed)
    rid = new_uuid()

    async def go():
        writer, reader, steps, text = RedisEventLog(), RedisEventLog(), Steps(), ""
        await writer.open(rid)
        for _ in range(rng.randint(5, 25)):
            kind = rng.choice(["text", "text", "reasoning", "reasoning", "tool"])
            if kind == "text":
                delta = rng.choice(["a", "bc", "déf", "🙂g"])
                steps.close_run()
                text += delta
                await writer.append(rid, delta)
            elif kind == "reasoning":
                await writer.append_step(rid, steps.add_reasoning(rng.choice(["x", "yz", "∑w"]), len(text)))
            else:
                call = f"c{len(steps.steps)}"
                await writer.append_step(rid, steps.tool_call(call, "t", {"n": 1}, len(text)))
                await writer.append_step(rid, steps.tool_result(call, {"ok": True}, None, 3))
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
