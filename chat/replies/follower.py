"""Following a reply from the database: a finished one replayed, a live one by its checkpoints."""

import asyncio

from django.utils import timezone

from chat import conf, db
from chat.eventlog import End, Event, Status, Subscription, Text
from chat.models import Message
from chat.replies import generation
from chat.replies.stale import replies_recover_stale

_REFRESH = [
    "content",
    "status",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "error",
    "error_code",
    "updated_at",
]


def end_of(message: Message) -> End:
    return End(
        status=message.status,
        finish_reason=message.finish_reason,
        usage=message.usage,
        error=message.error,
        error_code=message.error_code,
    )


class DatabaseFollower(Subscription):
    """Replays a finished reply; follows by its checkpoints one that no local log holds."""

    def __init__(self, message: Message, offset: int) -> None:
        self.message = message
        self.offset = offset
        self.thinking = not message.is_finished and offset == 0

    async def next(self, timeout: float) -> Event | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.thinking:
            self.thinking = False
            return Status("thinking")
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
            await asyncio.sleep(min(conf.get_float("CHAT_CHECKPOINT_INTERVAL"), left))
            await db.run(message.refresh_from_db, fields=_REFRESH)
            if message.is_finished:
                continue
            if (timezone.now() - message.updated_at).total_seconds() > conf.stale_after():
                await db.run(replies_recover_stale, running=generation.running_ids())
                await db.run(message.refresh_from_db, fields=_REFRESH)
