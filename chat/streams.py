"""The SSE stream of one reply: live from the event log, or from the database."""

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import SyncToAsync, sync_to_async
from django.db import connections
from django.utils import timezone

from chat import conf, db, generation
from chat.eventlog import End, Event, Status, Subscription, Text, get_event_log
from chat.models import Message
from chat.services import replies_recover_stale
from chat.sse import PING, ServerSentEvent, event, text_event

_REFRESH = [
    "content",
    "status",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "error",
    "error_code",
    "updated_at",
    "cached",
]


def end_of(message: Message) -> End:
    return End(
        status=message.status,
        finish_reason=message.finish_reason,
        usage=message.usage,
        error=message.error,
        error_code=message.error_code,
        cached=message.cached,
    )


def _first_state(message: Message) -> str | None:
    """A cached answer says so, even replayed once finished; a reply under way is thinking."""
    if message.cached:
        return "cached"
    return None if message.is_finished else "thinking"


class DatabaseFollower(Subscription):
    """Replays a finished reply; follows by its checkpoints one that no local log holds."""

    def __init__(self, message: Message, offset: int) -> None:
        self.message = message
        self.offset = offset
        self.state = _first_state(message) if offset == 0 else None  # a client with no text yet

    async def next(self, timeout: float) -> Event | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.state is not None:
            state, self.state = self.state, None
            return Status(state)
        while True:
            message = self.message
            if len(message.content) > self.offset:
                text = message.content[self.offset :]
                self.offset = len(message.content)
                return Text(self.offset, text)
            if message.is_finished:
                return end_of(message)
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(float(conf.get("CHAT_CHECKPOINT_INTERVAL")), left))
            await db.run(message.refresh_from_db, fields=_REFRESH)
            if message.is_finished:
                continue
            if (timezone.now() - message.updated_at).total_seconds() > conf.stale_after():
                await db.run(replies_recover_stale, running=generation.running_ids())
                await db.run(message.refresh_from_db, fields=_REFRESH)


def encode(item: Event, message: Message) -> bytes:
    if isinstance(item, Text):
        return text_event(item.offset, item.text)
    if isinstance(item, Status):
        return event("status", {"state": item.state})
    if item.status == Message.Status.ERROR:
        return event(
            "error", {"error": item.error or "The model failed.", "code": item.error_code or "upstream_error"}
        )
    done = {
        "message_id": str(message.pk),
        "status": item.status,
        "finish_reason": item.finish_reason,
        "usage": item.usage,
    }
    if item.cached:
        done["cached"] = True
    return event("done", done)


async def release_request_thread() -> None:
    """Give back the thread and database connection that Django holds for this request.

    Under ASGI each request gets a thread of its own (asgiref's ThreadSensitiveContext) for
    its sync work, and keeps it, with its database connection, until the response ends. A
    stream can stay open for minutes: a thousand open streams would hold a thousand threads
    and connections (PostgreSQL's default limit is 100). Runs when the body starts, after
    the middleware; a later sync call in this request simply gets a new thread.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    executor = SyncToAsync.context_to_thread_executor.get(context) if context is not None else None
    if executor is None:
        return
    await sync_to_async(connections.close_all)()
    SyncToAsync.context_to_thread_executor.pop(context, None)
    executor.shutdown(wait=False)


async def reply_stream(message: Message, offset: int) -> AsyncIterator[bytes]:
    """retry, start, the text after `offset` (live or stored), then done or error."""
    await release_request_thread()
    heartbeat = float(conf.get("CHAT_HEARTBEAT_INTERVAL"))
    yield ServerSentEvent(retry=int(conf.get("CHAT_RETRY_MS"))).encode()
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
    window = float(conf.get("CHAT_MERGE_WINDOW"))
    last_text = -window
    held: Event | None = None
    try:
        while True:
            item, held = held or await subscription.next(heartbeat), None
            if item is None:
                yield PING
                continue
            if isinstance(item, Text):
                wait = last_text + window - loop.time()
                if wait > 0:  # a busy stream: what arrives within this frame goes out as one event
                    await asyncio.sleep(wait)
                    more = await subscription.next(0)
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
