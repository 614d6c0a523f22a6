"""`python -m tests.runtime_cycles`: the runtime started and stopped twice in this process,
with one of everything it owns made in between; prints what each cycle left (JSON).

tests/test_runtime.py runs it in a process of its own, whose every thread and task is known.
"""

import asyncio
import json
import sys
import threading


def number() -> int:
    """A number, from a sync tool (it runs on the tools' threads)."""
    return 7


async def cycle() -> dict:
    """Start, make one of everything the runtime owns, stop; what is left running."""
    from chat import db
    from chat.eventlog import Text, get_event_log
    from chat.ratelimit import get_limiter
    from chat.runtime import runtime
    from chat.services import Owner, conversation_create, message_send
    from chat.tools import ToolContext, tool_from
    from chat.tools.runner import tool_run

    async with asyncio.timeout(30):
        await runtime.start()
        owner = Owner(visitor="runtime-test")
        conversation = await db.run(conversation_create, owner=owner, data={})
        _, reply = await message_send(owner=owner, conversation=conversation, data={"content": "go on"})
        subscription = await get_event_log().subscribe(str(reply.pk), 0)
        while not isinstance(await subscription.next(1), Text):  # it streams, and a follower waits
            pass
        await get_limiter().charge(owner=owner.key, ip="127.0.0.1", tokens=1)
        context = ToolContext(user_id=None, visitor="runtime-test", conversation_id="c", reply_id="r")
        outcome = await tool_run(tool_from(number), "number", {}, None, context)
        runtime.spawn(asyncio.sleep(3600), name="chat-title-runtime-test")
        await runtime.stop()
    me = asyncio.current_task()
    return {
        "tool": outcome.result,
        "reply": str(reply.pk),
        "tasks": sorted(task.get_name() for task in asyncio.all_tasks() if task is not me),
    }


def main() -> None:
    import django

    django.setup()
    from chat.models import Message

    cycles = []
    for _ in range(2):
        result = asyncio.run(cycle())
        result["reply"] = Message.objects.get(pk=result["reply"]).status  # saved by the stop
        result["threads"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("chat-"))
        cycles.append(result)
    print(json.dumps(cycles))


if __name__ == "__main__":
    sys.exit(main())
