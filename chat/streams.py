"""The SSE stream of one reply: live from the event log, or from the database."""

import asyncio
from collections.abc import AsyncIterator

from chat import conf, db
from chat.eventlog import End, Event, LogUnavailable, Status, Subscription, Text, get_event_log
from chat.models import Message
from chat.replies.follower import DatabaseFollower
from chat.replies.stale import reply_rescue_text
from chat.request_thread import release_request_thread
from chat.sse import PING, ServerSentEvent, event, text_event


def encode(item: Event, message: Message) -> bytes:
    if isinstance(item, Text):
        return text_event(item.offset, item.text)
    if isinstance(item, Status):
        return event("status", {"state": item.state})
    if item.status == Message.Status.ERROR:
        return event(
            "error", {"error": item.error or "The model failed.", "code": item.error_code or "upstream_error"}
        )
    return event(
        "done",
        {
            "message_id": str(message.pk),
            "status": item.status,
            "finish_reason": item.finish_reason,
            "usage": item.usage,
        },
    )


async def _follow_database(
    subscription: Subscription, message: Message, gone: LogUnavailable
) -> Subscription:
    """The rest from the database. If the generating process died, the text its streams
    showed past its last checkpoint is still in Redis: it is kept (the reply then ends
    `interrupted` with exactly the text every viewer saw)."""
    await subscription.close()
    if gone.writer_gone:
        text = await get_event_log().text_of(str(message.pk))
        if text:
            await db.run(reply_rescue_text, reply_id=str(message.pk), text=text)
    return DatabaseFollower(message, gone.offset, status=False)


async def reply_stream(message: Message, offset: int) -> AsyncIterator[bytes]:
    """retry, start, the text after `offset` (live or stored), then done or error."""
    await release_request_thread()
    heartbeat = conf.get_float("CHAT_HEARTBEAT_INTERVAL")
    yield ServerSentEvent(retry=conf.get_int("CHAT_RETRY_MS")).encode()
    yield event(
        "start",
        {
            "message_id": str(message.pk),
            "conversation_id": str(message.conversation_id),
            "model": message.model,
        },
    )
    subscription = None
    if not message.is_finished:
        subscription = await get_event_log().subscribe(str(message.pk), offset)
    if subscription is None:
        subscription = DatabaseFollower(message, offset)
    loop = asyncio.get_running_loop()
    window = conf.get_float("CHAT_MERGE_WINDOW")
    last_text = -window
    held: Event | None = None
    try:
        while True:
            try:
                item, held = held or await subscription.next(heartbeat), None
            except LogUnavailable as gone:  # Redis went away: the database has the rest
                subscription = await _follow_database(subscription, message, gone)
                continue
            if item is None:
                yield PING
                continue
            if isinstance(item, Text):
                wait = last_text + window - loop.time()
                if wait > 0:  # a busy stream: what arrives within this frame goes out as one event
                    await asyncio.sleep(wait)
                    try:
                        more = await subscription.next(0)
                    except LogUnavailable:
                        more = None  # seen at the next turn
                    if isinstance(more, Text):
                        item = Text(more.offset, item.text + more.text)
                    else:
                        held = more
                last_text = loop.time()
            yield encode(item, message)
            if isinstance(item, End):
                return
    finally:
        await subscription.close()
