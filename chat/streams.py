"""The SSE stream of one reply: live from the event log, or from the database."""

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import SyncToAsync, sync_to_async
from django.db import connections
from django.utils import timezone

from chat import conf, db, generation
from chat.eventlog import (
    End,
    Event,
    ReasoningText,
    Status,
    Step,
    Subscription,
    Text,
    ToolCallStep,
    ToolResultStep,
    get_event_log,
)
from chat.models import Message
from chat.services import replies_recover_stale
from chat.sse import PING, ServerSentEvent, event, text_event
from chat.steps import replay, side_before

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
    "reasoning",  # issue 12
    "steps",
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

    def __init__(self, message: Message, offset: int, side: int | None = None) -> None:
        self.message = message
        self.offset = offset
        self.side = side_before(message.steps, offset) if side is None else side
        # A client with nothing yet: a cached answer says so, a reply under way is thinking.
        self.state = _first_state(message) if offset == 0 and self.side == 0 else None
        self.pending: list[Event] = []

    def _advance(self) -> Event | None:
        """The next stored event after the place reached, reasoning and tool steps included."""
        message = self.message
        if not self.pending and not message.steps:  # a reply without steps: its text at once
            if len(message.content) > self.offset:
                self.pending = [Text(len(message.content), message.content[self.offset :])]
        elif not self.pending:
            self.pending = replay(message.content, message.reasoning, message.steps, self.offset, self.side)
        if not self.pending:
            return None
        item = self.pending.pop(0)
        if isinstance(item, Text):
            self.offset = item.offset
        else:
            self.side = item.side
        return item

    async def next(self, timeout: float) -> Event | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.state is not None:
            state, self.state = self.state, None
            return Status(state)
        while True:
            message = self.message
            if (item := self._advance()) is not None:
                return item
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


def encode_step(item: Step) -> bytes:
    """A reasoning delta or a tool step, with its `<offset>.<side>` id (issue 12)."""
    place = f"{item.offset}.{item.side}"
    if isinstance(item, ReasoningText):
        return event("reasoning", {"text": item.text}, id=place)
    if isinstance(item, ToolCallStep):
        data = {"id": item.call_id, "name": item.name, "arguments": item.arguments}
        return event("tool_call", data, id=place)
    data = {
        "id": item.call_id,
        "name": item.name,
        "result": item.result,
        "error": item.error,
        "duration_ms": item.duration_ms,
    }
    return event("tool_result", data, id=place)


class Progress:
    """The `status` events that say what a reply is doing, derived from the events around them
    (issue 12): `reasoning`, `tool` (with its name), `writing`, and `thinking` after a result."""

    def __init__(self, offset: int, side: int | None) -> None:
        # After a text id the client was writing; after a step id, it is not known.
        self.kind = "text" if side is None and offset > 0 else None

    def before(self, item: Event) -> bytes:
        kind = type(item).__name__
        if isinstance(item, Status):
            self.kind = None
            return b""
        if isinstance(item, ToolCallStep):
            self.kind = kind
            return event("status", {"state": "tool", "name": item.name})
        if kind == self.kind or isinstance(item, End | ToolResultStep):
            return b""
        self.kind = kind
        return event("status", {"state": "writing" if isinstance(item, Text) else "reasoning"})

    def after(self, item: Event) -> bytes:
        if isinstance(item, ToolResultStep):
            self.kind = None
            return event("status", {"state": "thinking"})
        return b""


def encode(item: Event, message: Message) -> bytes:
    if isinstance(item, Text):
        return text_event(item.offset, item.text)
    if isinstance(item, Status):
        return event("status", {"state": item.state})
    if isinstance(item, ReasoningText | ToolCallStep | ToolResultStep):
        return encode_step(item)
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


async def reply_stream(message: Message, offset: int, side: int | None = None) -> AsyncIterator[bytes]:
    """retry, start, what came after the place (`offset`, and `side` for a step id; live or
    stored), then done or error."""
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
        subscription = await get_event_log().subscribe(str(message.pk), offset, side)
    if subscription is None:
        subscription = DatabaseFollower(message, offset, side)
    progress = Progress(offset, side)
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
            if isinstance(item, Text | ReasoningText):
                wait = last_text + window - loop.time()
                if wait > 0:  # a busy stream: what arrives within this frame goes out as one event
                    await asyncio.sleep(wait)
                    more = await subscription.next(0)
                    if isinstance(item, Text) and isinstance(more, Text):
                        item = Text(more.offset, item.text + more.text)
                    elif isinstance(item, ReasoningText) and isinstance(more, ReasoningText):
                        item = ReasoningText(more.offset, more.side, item.text + more.text)
                    else:
                        held = more
                last_text = loop.time()
            yield progress.before(item) + encode(item, message) + progress.after(item)
            if isinstance(item, End):
                return
    finally:
        await subscription.close()
