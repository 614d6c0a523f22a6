"""The contract every event log backend meets; each backend's test class inherits it.

A backend gives a writer (the process generating the reply) and a reader (a process
following it: the same log in one process, another instance for Redis), a way to make reply
ids, and `settle()`, which returns once what was written is visible to the reader.
"""

import asyncio
import inspect
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from chat.eventlog import End, EventLog, Status, Text
from chat.eventlog.memory import MemoryEventLog


def run(coro, timeout: float = 5):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Backend:
    writer: EventLog
    reader: EventLog
    new_id: Any  # () -> str

    async def settle(self) -> None:
        drained = getattr(self.writer, "drained", None)
        if drained is not None:
            await drained()


async def follow(sub, limit: int = 100) -> list:
    out = []
    for _ in range(limit):
        item = await sub.next(2)
        out.append(item)
        if isinstance(item, End) or item is None:
            break
    return out


def texts(items: list) -> str:
    return "".join(item.text for item in items if isinstance(item, Text))


class EventLogContract:
    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError

    def test_unknown_reply_has_no_subscription(self, backend):
        async def go():
            return await backend.reader.subscribe(backend.new_id(missing=True), 0)

        assert run(go()) is None

    def test_append_now_where_offered_is_append(self, backend):
        """Issue 14: the reply's task appends with a plain call where the log offers one."""
        if backend.writer.append_now is None:  # a log whose append waits (the database's): only it
            assert inspect.iscoroutinefunction(backend.writer.append)
            return

        async def go():
            log, rid = backend.writer, backend.new_id()
            await log.open(rid)
            sub = await backend.reader.subscribe(rid, 0)
            lengths = [log.append_now(rid, "Hel"), await log.append(rid, "lo"), log.append_now(rid, " you")]
            await log.end(rid, End(status="complete", finish_reason="stop"))
            rest = await follow(sub)
            await sub.close()
            return lengths, rest

        lengths, rest = run(go())
        assert lengths == [3, 5, 9]
        assert texts(rest) == "Hello you" and rest[-1] == End("complete", "stop")

    def test_subscriber_sees_status_then_text_then_end(self, backend):
        async def go():
            log, rid = backend.writer, backend.new_id()
            await log.open(rid)
            await log.set_status(rid, "thinking")
            await backend.settle()
            sub = await backend.reader.subscribe(rid, 0)
            first = await sub.next(1)
            await log.append(rid, "Hel")
            second = await sub.next(1)
            await log.append(rid, "lo")
            await log.end(rid, End(status="complete", finish_reason="stop"))
            rest = await follow(sub)
            await sub.close()
            return first, second, rest

        first, second, rest = run(go())
        assert (first, second) == (Status("thinking"), Text(3, "Hel"))
        assert rest[-1] == End("complete", "stop")
        assert texts(rest) == "lo" and rest[-2].offset == 5

    def test_texts_written_while_the_subscriber_waits_arrive_once_in_order(self, backend):
        """Each text wakes a waiting subscriber; next() returns it, and the end after it."""

        async def go():
            log, rid = backend.writer, backend.new_id()
            await log.open(rid)
            await backend.settle()
            sub = await backend.reader.subscribe(rid, 0)
            returned = []
            waiting = asyncio.ensure_future(sub.next(5))
            for part in ["a", "b", "c", "d"]:
                await asyncio.sleep(0.05)  # one at a time, each while the subscriber waits
                await log.append(rid, part)
                await backend.settle()
                await asyncio.sleep(0.05)
                if waiting.done():
                    returned.append(waiting.result())
                    waiting = asyncio.ensure_future(sub.next(5))
            await log.end(rid, End(status="complete"))
            returned.append(await waiting)
            if not isinstance(returned[-1], End):
                returned += await follow(sub)
            await sub.close()
            return returned

        returned = run(go())
        texts_returned = [e for e in returned if isinstance(e, Text)]
        assert "".join(e.text for e in texts_returned) == "abcd"
        assert [e.offset for e in texts_returned] == sorted({e.offset for e in texts_returned})
        assert texts_returned[-1].offset == 4
        assert returned[-1] == End("complete")

    def test_lagging_subscriber_gets_merged_text_from_any_offset(self, backend):
        async def go():
            log, rid = backend.writer, backend.new_id()
            await log.open(rid)
            for part in ["ab", "cd", "ef"]:
                await log.append(rid, part)
            await backend.settle()
            got = []
            for offset in (0, 1, 2, 3, 6):
                sub = await backend.reader.subscribe(rid, offset)
                item = await sub.next(0.2)
                while isinstance(item, Status):
                    item = await sub.next(0.2)
                got.append(item)
                await sub.close()
            return got

        assert run(go()) == [Text(6, "abcdef"), Text(6, "bcdef"), Text(6, "cdef"), Text(6, "def"), None]

    def test_silence_returns_none_after_timeout(self, backend):
        async def go():
            rid = backend.new_id()
            await backend.writer.open(rid)
            await backend.settle()
            sub = await backend.reader.subscribe(rid, 0)
            first = await sub.next(0.05)
            if isinstance(first, Status):
                first = await sub.next(0.05)
            await sub.close()
            return first

        assert run(go()) is None

    def test_two_subscribers_see_the_same_reply(self, backend):
        async def go():
            log, rid = backend.writer, backend.new_id()
            await log.open(rid)
            await backend.settle()
            subs = [await backend.reader.subscribe(rid, 0) for _ in range(2)]
            tasks = [asyncio.create_task(follow(s)) for s in subs]
            for part in "abc":
                await log.append(rid, part)
                await asyncio.sleep(0.01)
            await log.end(rid, End(status="complete"))
            results = await asyncio.gather(*tasks)
            for sub in subs:
                await sub.close()
            return results

        a, b = run(go())
        assert texts(a) == texts(b) == "abc"
        assert a[-1] == b[-1] == End("complete")

    def test_end_is_seen_after_the_remaining_text(self, backend):
        async def go():
            log, rid = backend.writer, backend.new_id()
            await log.open(rid)
            await log.append(rid, "abc")
            await log.end(rid, End(status="stopped"))
            await backend.settle()
            sub = await backend.reader.subscribe(rid, 1)
            return await sub.next(1), await sub.next(1)

        assert run(go()) == (Text(3, "bc"), End("stopped"))


def new_uuid(missing: bool = False) -> str:
    return str(uuid.uuid4())


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    def backend(self):
        log = MemoryEventLog()
        return Backend(log, log, new_uuid)

    def test_every_delta_is_its_own_event_when_the_subscriber_keeps_up(self):
        async def go():
            log = MemoryEventLog()
            await log.open("r")
            sub = await log.subscribe("r", 0)
            got = []
            for part in "abc":
                await log.append("r", part)
                got.append(await sub.next(1))
            return got

        assert run(go()) == [Text(1, "a"), Text(2, "b"), Text(3, "c")]

    def test_a_finished_reply_is_forgotten_after_the_grace_period(self, settings):
        settings.CHAT_LOG_GRACE = 0.05

        async def go():
            log = MemoryEventLog()
            await log.append("r", "x")
            await log.end("r", End(status="complete"))
            kept = await log.subscribe("r", 0)
            await asyncio.sleep(0.1)
            return kept, await log.subscribe("r", 0)

        kept, later = run(go())
        assert kept is not None
        assert later is None
