"""The SSE stream of one reply: live from the event log, or from the database."""

import asyncio
from collections.abc import AsyncIterator

from chat import conf, db
from chat.eventlog import (
    End,
    Event,
    LogUnavailable,
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
from chat.replies.follower import DatabaseFollower
from chat.replies.stale import reply_rescue_text
from chat.sse import PING, ServerSentEvent, event, text_event
from chat.threads import release_request_thread


def encode_step(item: Step) -> bytes:
    """A reasoning delta or a tool step, with its `<offset>.<side>` id (docs/API-extensions.md)."""
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
    (docs/API-extensions.md): `reasoning`, `tool` (with its name), `writing`, and `thinking` after
    a result."""

    __slots__ = ("kind",)

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


def encode(item: Event, reply_id: str) -> bytes:
    if isinstance(item, Text):
        return text_event(item.offset, item.text)
    if isinstance(item, Status):
        return event("status", {"state": item.state, **(item.detail or {})})
    if isinstance(item, ReasoningText | ToolCallStep | ToolResultStep):
        return encode_step(item)
    if item.status == Message.Status.ERROR:
        return event(
            "error", {"error": item.error or "The model failed.", "code": item.error_code or "upstream_error"}
        )
    done = {
        "message_id": reply_id,
        "status": item.status,
        "finish_reason": item.finish_reason,
        "usage": item.usage,
    }
    if item.cached:
        done["cached"] = True
    return event("done", done)


async def _follow_database(
    subscription: Subscription, reply_id: str, gone: LogUnavailable, side: int | None
) -> Subscription:
    """The rest from the database. If the generating process died, the text its streams
    showed past its last checkpoint is still in Redis: it is kept (the reply then ends
    `interrupted` with exactly the text every viewer saw)."""
    await subscription.close()
    if gone.writer_gone:
        text = await get_event_log().text_of(reply_id)
        if text:
            await db.run(reply_rescue_text, reply_id=reply_id, text=text)
    message = await db.run(Message.objects.get, pk=reply_id)
    return DatabaseFollower(message, gone.offset, gone.side if gone.side is not None else side, status=False)


class _Pace:
    """A stream's merge window: when it last sent a text. Fields, not a closure's cells: an open
    stream keeps less (memory per idle stream)."""

    __slots__ = ("loop", "window", "last_text")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.window = conf.get_float("CHAT_MERGE_WINDOW")
        self.last_text = -self.window

    def wait(self) -> float:
        """How long a text must wait for the window to pass (none if 0 or less)."""
        return self.last_text + self.window - self.loop.time()

    def sent(self) -> None:
        self.last_text = self.loop.time()


async def _merged(
    subscription: Subscription, item: Text | ReasoningText, wait: float
) -> tuple[Event, Event | None]:
    """`item` with what else of its kind arrives within `wait` (a busy stream sends it as one
    event); the next event, if it is of another kind, is held for the next turn."""
    await asyncio.sleep(wait)
    try:
        more = await subscription.next(0)
    except LogUnavailable:
        return item, None  # seen at the next turn
    if isinstance(item, Text) and isinstance(more, Text):
        return Text(more.offset, item.text + more.text), None
    if isinstance(item, ReasoningText) and isinstance(more, ReasoningText):
        return ReasoningText(more.offset, more.side, item.text + more.text), None
    return item, more


async def _subscribe(message: Message, offset: int, side: int | None) -> Subscription:
    """The reply from the place: its live log, else the database (a finished or foreign reply)."""
    subscription = None
    if not message.is_finished:
        subscription = await get_event_log().subscribe(str(message.pk), offset, side)
    return subscription or DatabaseFollower(message, offset, side)


async def reply_events(
    message: Message, offset: int = 0, side: int | None = None
) -> AsyncIterator[Event | None]:
    """The reply's events after the place, live or stored, up to its End; None after each
    heartbeat interval without one. For other encodings of the same stream (chat/uistream.py):
    the SSE stream above adds its merge window and progress states to this same loop."""
    heartbeat = conf.get_float("CHAT_HEARTBEAT_INTERVAL")
    reply_id = str(message.pk)
    subscription = await _subscribe(message, offset, side)
    del message
    connections_held = True
    try:
        while True:
            try:
                item = await subscription.next(heartbeat)
            except LogUnavailable as gone:  # Redis went away: the database has the rest
                subscription = await _follow_database(subscription, reply_id, gone, side)
                continue
            yield item
            if isinstance(item, End):
                return
            if connections_held and item is not None:  # as reply_stream: after the first event
                connections_held = False
                await release_request_thread()
    finally:
        await subscription.close()


async def reply_stream(message: Message, offset: int, side: int | None = None) -> AsyncIterator[bytes]:
    """retry, start, what came after the place (`offset`, and `side` for a step id; live or
    stored), then done or error."""
    heartbeat = conf.get_float("CHAT_HEARTBEAT_INTERVAL")
    reply_id = str(message.pk)
    yield ServerSentEvent(retry=conf.get_int("CHAT_RETRY_MS")).encode()
    yield event(
        "start",
        {
            "message_id": reply_id,
            "conversation_id": str(message.conversation_id),
            "model": message.model,
        },
    )
    subscription = await _subscribe(message, offset, side)
    del message  # an open stream keeps the reply's id, not its row (memory per idle stream)
    progress, pace = Progress(offset, side), _Pace()
    held: Event | None = None
    connections_held = True  # the request's, let go once the first event is out

    try:
        while True:
            try:
                item, held = held or await subscription.next(heartbeat), None
            except LogUnavailable as gone:  # Redis went away: the database has the rest
                subscription = await _follow_database(subscription, reply_id, gone, side)
                continue
            if item is None:
                yield PING
                continue
            if isinstance(item, Text | ReasoningText):
                wait = pace.wait()
                if wait > 0:  # a busy stream: what arrives within this frame goes out as one event
                    item, held = await _merged(subscription, item, wait)
                pace.sent()
            yield progress.before(item) + encode(item, reply_id) + progress.after(item)
            if isinstance(item, End):
                return
            if connections_held:  # after the first event, not before it: one hop less to wait for
                connections_held = False
                await release_request_thread()
    finally:
        await subscription.close()
