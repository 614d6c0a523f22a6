"""Conversation history as data: export, delete and prune (the admin and commands call these).

The export is the contract's JSON shapes (chat/serializers.py) plus what an import into another
install needs to give back equal data: each conversation's owner, and the message fields the
contract leaves out (error code, timings, last save). chat/history_import.py reads it back.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from chat.models import Conversation, Message
from chat.serializers import conversation_json, message_json

FORMAT = "chat-history"
VERSION = 1
BATCH = 500


# --- export -------------------------------------------------------------------------------


def owner_json(conversation: Conversation) -> dict[str, Any]:
    if conversation.user_id is not None:
        return {"kind": "user", "username": conversation.user.get_username()}
    return {"kind": "anonymous", "visitor": conversation.visitor}


def message_record(message: Message) -> dict[str, Any]:
    return {
        **message_json(message),
        "error_code": message.error_code,
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "duration_ms": message.duration_ms,
        "updated_at": message.updated_at.isoformat(),
    }


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    data = conversation_json(conversation)
    data["owner"] = owner_json(conversation)
    data["messages"] = [message_record(m) for m in conversation.messages.all()]
    return data


def export_queryset(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """The conversations with what the export reads, in a few queries per chunk, oldest first."""
    messages = Message.objects.order_by("created_at", "id")
    return (
        conversations.select_related("user")
        .prefetch_related(Prefetch("messages", queryset=messages))
        .order_by("created_at", "id")
    )


def header() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "exported_at": timezone.now().isoformat()}


def conversations_export(conversations: QuerySet[Conversation]) -> dict[str, Any]:
    """The whole export as one object (for the admin action: a selection fits in memory)."""
    return {**header(), "conversations": [conversation_record(c) for c in export_queryset(conversations)]}


def conversations_export_chunks(conversations: QuerySet[Conversation]) -> Iterator[dict[str, Any]]:
    """One record at a time, reading the database in chunks (for the command: any size)."""
    for conversation in export_queryset(conversations).iterator(chunk_size=BATCH):
        yield conversation_record(conversation)


# --- delete and prune ---------------------------------------------------------------------


def replies_stop_requested(messages: QuerySet[Message]) -> int:
    """Ask the replies still generating among `messages` to stop, from any process or thread.

    The task generating each one sees the flag at its next checkpoint and stops; a row deleted
    meanwhile also fails that checkpoint, so the order "flag, then delete" is belt and braces.
    """
    return messages.filter(status=Message.Status.STREAMING).update(stop_requested=True)


@dataclass(frozen=True)
class Deleted:
    conversations: int = 0
    messages: int = 0
    stopped: int = 0  # replies that were still generating, asked to stop


def conversations_delete(conversations: QuerySet[Conversation]) -> Deleted:
    """Delete conversations and their messages, stopping their running replies first."""
    pks = list(conversations.order_by().values_list("pk", flat=True))
    total = Deleted()
    for start in range(0, len(pks), BATCH):
        batch = pks[start : start + BATCH]
        with transaction.atomic():
            stopped = replies_stop_requested(Message.objects.filter(conversation_id__in=batch))
            _, counts = Conversation.objects.filter(pk__in=batch).delete()
        total = Deleted(
            conversations=total.conversations + counts.get(Conversation._meta.label, 0),
            messages=total.messages + counts.get(Message._meta.label, 0),
            stopped=total.stopped + stopped,
        )
    return total


def messages_delete(messages: QuerySet[Message]) -> Deleted:
    pks = list(messages.order_by().values_list("pk", flat=True))
    deleted = stopped = 0
    for start in range(0, len(pks), BATCH):
        batch = Message.objects.filter(pk__in=pks[start : start + BATCH])
        with transaction.atomic():
            stopped += replies_stop_requested(batch)
            deleted += batch.delete()[1].get(Message._meta.label, 0)
    return Deleted(messages=deleted, stopped=stopped)


_AGE = re.compile(r"\s*([0-9]+)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'90d' -> 90 days; units s, m (minutes), h, d, w."""
    match = _AGE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an age: write a number and a unit, as 90d, 12h, 2w, 30m or 45s.")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def prunable(older_than: timedelta) -> QuerySet[Conversation]:
    """Conversations with no activity for longer than `older_than`."""
    return Conversation.objects.filter(updated_at__lt=timezone.now() - older_than)
