"""The contract every event log backend meets; each backend's test class inherits it."""

import asyncio

import pytest

from chat.eventlog import End, Status, Text
from chat.eventlog.memory import MemoryEventLog


def run(coro, timeout: float = 5):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class EventLogContract:
    @pytest.fixture
    def make_log(self):
        raise NotImplementedError

    def test_unknown_reply_has_no_subscription(self, make_log):
        async def go():
            return await make_log().subscribe("nope", 0)

        assert run(go()) is None

    def test_subscriber_sees_status_then_text_then_end(self, make_log):
        async def go():
            log = make_log()
            await log.open("r")
            await log.set_status("r", "thinking")
            sub = await log.subscribe("r", 0)
            first = await sub.next(1)
            await log.append("r", "Hel")
            second = await sub.next(1)
            await log.append("r", "lo")
            await log.end("r", End(status="complete", finish_reason="stop"))
            return first, second, await sub.next(1), await sub.next(1)

        assert run(go()) == (Status("thinking"), Text(3, "Hel"), Text(5, "lo"), End("complete", "stop"))

    def test_lagging_subscriber_gets_merged_text_from_any_offset(self, make_log):
        async def go():
            log = make_log()
            for part in ["ab", "cd", "ef"]:
                await log.append("r", part)
            return [await (await log.subscribe("r", offset)).next(1) for offset in (0, 1, 2, 3, 6)]

        assert run(go()) == [Text(6, "abcdef"), Text(6, "bcdef"), Text(6, "cdef"), Text(6, "def"), None]

    def test_silence_returns_none_after_timeout(self, make_log):
        async def go():
            log = make_log()
            await log.open("r")
            sub = await log.subscribe("r", 0)
            return await sub.next(0.05)

        assert run(go()) is None

    def test_two_subscribers_see_the_same_reply(self, make_log):
        async def follow(sub):
            out = []
            while not isinstance(item := await sub.next(1), End):
                out.append(item)
            return out

        async def go():
            log = make_log()
            await log.open("r")
            subs = [await log.subscribe("r", 0) for _ in range(2)]
            tasks = [asyncio.create_task(follow(s)) for s in subs]
            for part in "abc":
                await log.append("r", part)
                await asyncio.sleep(0.01)
            await log.end("r", End(status="complete"))
            return await asyncio.gather(*tasks)

        a, b = run(go())
        assert a == b == [Text(1, "a"), Text(2, "b"), Text(3, "c")]

    def test_end_is_seen_after_the_remaining_text(self, make_log):
        async def go():
            log = make_log()
            await log.append("r", "abc")
            await log.end("r", End(status="stopped"))
            sub = await log.subscribe("r", 1)
            return await sub.next(1), await sub.next(1)

        assert run(go()) == (Text(3, "bc"), End("stopped"))


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    def make_log(self):
        return MemoryEventLog

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
