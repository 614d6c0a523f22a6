"""Following a reply from the database: a finished one replayed, a live one by its checkpoints."""

import asyncio

from django.core.exceptions import ValidationError
from django.utils import timezone

from chat import conf, db
from chat.approvals import ApprovalWaiting, approval_waiting_for
from chat.eventlog import End, Event, EventLog, Status, Step, Subscription, Text
from chat.models import Message
from chat.replies import generation
from chat.replies.stale import replies_recover_stale
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

    def __init__(self, message: Message, offset: int, side: int | None = None, status: bool = True) -> None:
        self.message = message
        self.offset = offset
        self.side = side_before(message.steps, offset) if side is None else side
        # A client with nothing yet: a cached answer says so, a reply under way is thinking.
        # (`status` False: taking over from a log that already said it.)
        first = status and offset == 0 and self.side == 0
        self.state = _first_state(message) if first else None
        self.pending: list[Event] = []
        self.approval: str | None = None  # the call whose approval request it showed (issue 31)

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
            if (status := await self._approval()) is not None:
                return status
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(conf.get_float("CHAT_CHECKPOINT_INTERVAL"), left))
            await db.run(message.refresh_from_db, fields=_REFRESH)
            if message.is_finished:
                continue
            if (timezone.now() - message.updated_at).total_seconds() > conf.stale_after():
                await db.run(replies_recover_stale, running=generation.running_ids())
                await db.run(message.refresh_from_db, fields=_REFRESH)

    async def _approval(self) -> Status | None:
        """The approval request of the tool call the reply waits on, once that call is shown
        (issue 31), from its ToolApproval row; then `thinking` when it is no longer waiting."""
        steps = self.message.steps
        running = steps[-1] if steps and steps[-1].get("type") == "tool" else None
        waiting = None
        if running is not None and running.get("duration_ms") is None:
            waiting = await db.run(approval_waiting_for, str(self.message.pk))
        call_id = waiting.call_id if waiting is not None and waiting.call_id == running["id"] else None
        if call_id == self.approval:
            return None
        shown, self.approval = self.approval, call_id
        if waiting is not None and call_id is not None:
            return Status(*ApprovalWaiting(call_id, waiting.name, waiting.arguments).status())
        return Status("thinking") if shown is not None else None


class DatabaseEventLog(EventLog):
    """The database as an event log: what every process without the reply in its own log
    follows (DatabaseFollower). As a configured backend (CHAT_EVENT_LOG) it writes each event
    through, one UPDATE per delta: it serves several processes without Redis at checkpoint
    pace, and lets the event log contract run against the follower."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    async def open(self, reply_id: str) -> None:
        self.texts.setdefault(reply_id, "")

    async def append(self, reply_id: str, text: str) -> int:
        content = self.texts[reply_id] = self.texts.get(reply_id, "") + text
        await db.run(
            lambda: Message.objects.filter(pk=reply_id).update(content=content, updated_at=timezone.now())
        )
        return len(content)

    async def set_status(self, reply_id: str, state: str, detail: dict | None = None) -> None:
        """The database keeps no progress state: a follower with no text yet hears `thinking`
        (and one of a reply waiting for an approval, the ToolApproval row's request)."""

    async def end(self, reply_id: str, end: End) -> None:
        usage = end.usage or {}
        await db.run(
            lambda: Message.objects.filter(pk=reply_id).update(
                status=end.status,
                finish_reason=end.finish_reason,
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
                error=end.error,
                error_code=end.error_code,
                updated_at=timezone.now(),
            )
        )
        self.texts.pop(reply_id, None)

    async def append_step(self, reply_id: str, step: Step) -> None:
        """Reasoning and tool steps reach the database with the generator's checkpoints and
        final save (Message.reasoning, Message.steps), which the follower replays."""

    async def subscribe(self, reply_id: str, offset: int, side: int | None = None) -> Subscription | None:
        try:
            message = await db.run(Message.objects.filter(pk=reply_id, role=Message.Role.ASSISTANT).first)
        except (ValueError, ValidationError):  # not a message id
            return None
        return None if message is None else DatabaseFollower(message, offset, side)
