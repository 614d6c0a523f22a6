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
from chat.request_thread import release_request_thread
from chat.sse import GO_ON, PING, Outlet, ServerSentEvent, event, text_event, turn_of


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
        return event("status", {"state": item.state})
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
    """A stream's merge window (when it last sent a text) and, as `push`, the texts the reply's
    own task hands to its outlet while the stream waits. Fields, not a closure's cells: an open
    stream keeps less (issue 14: memory per idle stream)."""

    __slots__ = ("turn", "window", "last_text", "progress", "outlet")

    def __init__(self, progress: Progress, outlet: Outlet | None) -> None:
        self.turn = turn_of(asyncio.get_running_loop())  # the loop's, looked up once, not per text
        self.window = conf.get_float("CHAT_MERGE_WINDOW")
        self.last_text = -self.window
        self.progress = progress
        self.outlet = outlet

    def wait(self) -> float:
        """How long a text must wait for the window to pass (none if 0 or less)."""
        return self.last_text + self.window - self.turn.loop.time()

    def sent(self) -> None:
        self.last_text = self.turn.loop.time()

    def push(self, offset: int, text: str) -> bool:
        """A text that came while this stream waited, handed to the outlet by the reply's own
        task (a task wake-up less per token; the outlet sends it at the end of the loop's
        turn); refused where the stream's task has more to do: a status to send first, a text
        within the merge window, a write the server is still doing."""
        now = self.turn.loop.time()
        if (
            self.progress.kind != "Text"
            or now - self.last_text < self.window
            or self.outlet.pending is not None
        ):
            return False
        self.outlet.write(text_event(offset, text), self.turn)
        self.last_text = now
        return True


async def reply_stream(
    message: Message, offset: int, side: int | None = None, outlet: Outlet | None = None
) -> AsyncIterator[bytes]:
    """retry, start, what came after the place (`offset`, and `side` for a step id; live or
    stored), then done or error. With an `outlet` (chat/sse.py) that its response opens, the
    reply's own task writes the texts that come while this waits."""
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
    subscription = None
    if not message.is_finished:
        subscription = await get_event_log().subscribe(reply_id, offset, side)
    if subscription is None:
        subscription = DatabaseFollower(message, offset, side)
    del message  # an open stream keeps the reply's id, not its row (memory per idle stream)
    progress = Progress(offset, side)
    pace = _Pace(progress, outlet)
    held: Event | None = None
    thread_held = True  # the request's thread, given back after the first event

    try:
        while True:
            try:
                item, held = held or await subscription.next(heartbeat), None
            except LogUnavailable as gone:  # Redis went away: the database has the rest
                subscription = await _follow_database(subscription, reply_id, gone, side)
                continue
            if outlet is not None and outlet.busy:  # its parts go out in order
                await outlet.drain()
            if item is None:
                yield PING
                continue
            if isinstance(item, Text | ReasoningText):
                wait = pace.wait()
                if wait > 0:  # a busy stream: what arrives within this frame goes out as one event
                    await asyncio.sleep(wait)
                    try:
                        more = await subscription.next(0)
                    except LogUnavailable:
                        more = None  # seen at the next turn
                    if isinstance(item, Text) and isinstance(more, Text):
                        item = Text(more.offset, item.text + more.text)
                    elif isinstance(item, ReasoningText) and isinstance(more, ReasoningText):
                        item = ReasoningText(more.offset, more.side, item.text + more.text)
                    else:
                        held = more
                pace.sent()
            yield progress.before(item) + encode(item, reply_id) + progress.after(item)
            if isinstance(item, End):
                return
            if thread_held:  # once the first event is out, not before it (one hop less to wait for)
                thread_held = False
                if outlet is not None and outlet.open:
                    subscription.push_text(pace.push)
                    # The rest without Django's handler (chat/sse.py, Outlet): it finishes the
                    # request now, on the request's thread, which then goes back to the pool.
                    yield GO_ON
                else:
                    await release_request_thread()
    finally:
        await subscription.close()
