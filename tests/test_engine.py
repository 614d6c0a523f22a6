"""The reply engine: started and stopped as a whole, nothing left running after stop()."""

import asyncio

from asgiref.sync import sync_to_async

from chat.eventlog import Text, get_event_log
from chat.models import Message
from chat.replies.generation import engine
from chat.services import Owner, conversation_create, message_send


def test_stop_saves_the_replies_in_flight_and_ends_every_task_it_started(transactional_db, settings):
    settings.CHAT_DEMO_RATE = 50
    settings.CHAT_DEMO_TOKENS = 400
    owner = Owner(visitor="engine-test")

    async def go():
        await engine.start()
        background = engine.background()
        conversation = await sync_to_async(conversation_create)(owner=owner, data={})
        _, reply = await message_send(owner=owner, conversation=conversation, data={"content": "go on"})
        subscription = await get_event_log().subscribe(str(reply.pk), 0)
        while not isinstance(await subscription.next(1), Text):  # it is generating
            pass
        await engine.stop()
        return background, reply.pk

    background, reply_id = asyncio.run(asyncio.wait_for(go(), 20))
    assert {task.get_name() for task in background} == {"chat-checkpointer", "chat-sweeper"}
    assert all(task.done() for task in background)
    assert not engine.running_ids()
    reply = Message.objects.get(pk=reply_id)
    assert reply.status == "interrupted" and reply.content
