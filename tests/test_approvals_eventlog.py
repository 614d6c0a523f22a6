"""The approval status (issue 31) in each event log: whoever joins while a reply waits is asked,
whatever its place; once decided, no one who joins later is."""

import pytest

from chat.eventlog import End, Status, ToolCallStep, ToolResultStep
from chat.eventlog.memory import MemoryEventLog
from chat.eventlog.redis import RedisEventLog
from tests.test_eventlog import Backend, new_uuid, run

ASK = {"tool_call_id": "c1", "name": "t", "arguments": {"n": 1}}


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> Backend:
    if request.param == "memory":
        log = MemoryEventLog()
        return Backend(log, log, new_uuid)
    request.getfixturevalue("redis_settings")
    return Backend(RedisEventLog(), RedisEventLog(), new_uuid)  # two instances: two processes


async def _upto_approval(backend: Backend, rid: str) -> None:
    log = backend.writer
    await log.open(rid)
    await log.set_status(rid, "thinking")
    await log.append(rid, "Hi")
    await log.append_step(rid, ToolCallStep(2, 1, "c1", "t", {"n": 1}))
    await log.set_status(rid, "approval", ASK)
    await backend.settle()


async def _decided(backend: Backend, rid: str) -> None:
    log = backend.writer
    await log.set_status(rid, "tool", {"name": "t"})
    await log.append_step(rid, ToolResultStep(2, 2, "c1", "t", {"ok": True}, None, 5))
    await log.end(rid, End(status="complete", finish_reason="stop"))
    await backend.settle()


async def _drain(sub) -> list:
    out = []
    while (item := await sub.next(0.3)) is not None:
        out.append(item)
        if isinstance(item, End):
            break
    return out


def test_every_subscriber_joining_while_it_waits_is_asked(backend):
    async def go():
        rid = backend.new_id()
        await _upto_approval(backend, rid)
        seen = {}
        for place in [(0, None), (2, None), (2, 1)]:  # the start, after the text, after the call
            sub = await backend.reader.subscribe(rid, *place)
            seen[place] = (sub, await _drain(sub))
        await _decided(backend, rid)
        for place, (sub, before) in seen.items():
            seen[place] = before + await _drain(sub)
            await sub.close()
        return seen

    seen = run(go())
    asked = Status("approval", ASK)
    for place, items in seen.items():
        kinds = [type(item).__name__ for item in items]
        assert asked in items, place
        # The request comes once the client has the call it is about; the status that ends it
        # (the tool runs) follows, then the result.
        if place != (2, 1):
            assert kinds.index("ToolCallStep") < items.index(asked), place
        assert items[items.index(asked) + 1] == Status("tool", {"name": "t"}), place
        assert isinstance(items[-1], End) and isinstance(items[-2], ToolResultStep)
    assert [type(i).__name__ for i in seen[(2, 1)]] == ["Status", "Status", "ToolResultStep", "End"]


def test_a_subscriber_joining_after_the_decision_is_not_asked(backend):
    async def go():
        rid = backend.new_id()
        await _upto_approval(backend, rid)
        await _decided(backend, rid)
        sub = await backend.reader.subscribe(rid, 2, 1)
        items = await _drain(sub)
        await sub.close()
        return items

    items = run(go())
    assert [type(i).__name__ for i in items] == ["ToolResultStep", "End"]
