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

from chat import branches
from chat.models import Conversation, Message
from chat.serializers import conversation_json, message_json

FORMAT = "chat-history"
# 2: conversations are trees (contract v3, "Branches"): each message has `parent_id` (and the
# derived `sibling_ids`), each conversation `current_leaf`. Version 1 files are still read:
# their messages become a chain (chat/history_import.py).
VERSION = 2
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
    messages = list(conversation.messages.all())  # the whole tree, oldest first
    shape = branches.Tree.of((m.pk, m.parent_id) for m in messages)
    for message in messages:
        message.sibling_ids = shape.siblings(message.pk)
    # The files' metadata (not their bytes): one query per conversation.
    branches.attachments_put(conversation, messages)
    leaf = shape.leaf(conversation.current_leaf_id)
    data["current_leaf"] = None if leaf is None else str(leaf)
    data["messages"] = [message_record(m) for m in messages]
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
    """Delete messages, splicing the tree (contract v3, "Branches"): a deleted message's
    children move up to its parent (its nearest ancestor kept), and a conversation whose
    current leaf is deleted shows the newest leaf under what was above it."""
    rows = list(messages.order_by().values_list("pk", "parent_id", "conversation_id"))
    deleted = stopped = 0
    for start in range(0, len(rows), BATCH):
        part = rows[start : start + BATCH]
        batch = Message.objects.filter(pk__in=[pk for pk, _, _ in part])
        with transaction.atomic():
            stopped += replies_stop_requested(batch)
            kept_above = _splice(part)
            deleted += batch.delete()[1].get(Message._meta.label, 0)
            _leaves_fix(kept_above)
    return Deleted(messages=deleted, stopped=stopped)


def _splice(rows: list[tuple]) -> dict[Any, Any]:
    """Give the children of the messages in `rows` (pk, parent, conversation) their nearest
    ancestor that stays; the answer maps each deleted message to that ancestor."""
    parents = {pk: parent for pk, parent, _ in rows}
    above: dict[Any, Any] = {}
    for pk in parents:
        node, seen = parents[pk], {pk}
        while node in parents and node not in seen:  # its parent is deleted too: further up
            seen.add(node)
            node = parents[node]
        above[pk] = None if node in parents else node
    moves: dict[tuple, list] = {}
    for pk, _, conversation in rows:
        moves.setdefault((conversation, above[pk]), []).append(pk)
    for (conversation, parent), children_of in moves.items():
        # By conversation: its index finds the rows, none for `parent` (it has no index).
        Message.objects.filter(conversation_id=conversation, parent_id__in=children_of).update(
            parent_id=parent
        )
    return {pk: (conversation, above[pk]) for pk, _, conversation in rows}


def _leaves_fix(kept_above: dict[Any, tuple]) -> None:
    conversations = {conversation for conversation, _ in kept_above.values()}
    lost = Conversation.objects.filter(pk__in=conversations, current_leaf_id__in=list(kept_above))
    for conversation in lost.only("pk", "current_leaf_id"):
        shape = branches.tree(conversation.pk)
        above = kept_above[conversation.current_leaf_id][1]
        leaf = shape.newest_leaf(above) if above in shape.parents else shape.leaf(None)
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=leaf)


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
