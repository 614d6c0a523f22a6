"""Conversation history as data: export, import, delete and prune (the admin and commands call these).

The export is the contract's JSON shapes (chat/serializers.py) plus what an import into another
install needs to give back equal data: each conversation's owner, and the message fields the
contract leaves out (error code, timings, last save).
"""

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat.models import Conversation, Message
from chat.serializers import conversation_json, message_json

FORMAT = "chat-history"
VERSION = 1
BATCH = 500
MAX_ERRORS_SHOWN = 20


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


# --- import -------------------------------------------------------------------------------


class ImportRejected(Exception):
    """The input is not a valid export, or clashes with this database; nothing was imported."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        shown = "\n".join(f"  - {e}" for e in errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        if more > 0:
            shown += f"\n  ... and {more} more"
        noun = "problem" if len(errors) == 1 else "problems"
        super().__init__(f"Nothing was imported: {len(errors)} {noun}:\n{shown}")


@dataclass(frozen=True)
class ImportResult:
    conversations: int
    messages: int
    skipped: int
    users_created: int


_STRING, _TEXT_OR_NULL, _INT_OR_NULL, _TIME = "string", "string or null", "integer or null", "time"


class _Reader:
    """Checks one record's fields against the export's shapes, collecting errors with their path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def fail(self, path: str, problem: str) -> None:
        self.errors.append(f"{path}: {problem}")

    def object(self, value: Any, path: str) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {type(value).__name__}")
            return None
        return value

    def field(self, record: dict, key: str, kind: str, path: str, *, required: bool = True) -> Any:
        if key not in record:
            if required:
                self.fail(f"{path}.{key}", "missing")
            return None
        value = record[key]
        where = f"{path}.{key}"
        if kind == _STRING and not isinstance(value, str):
            self.fail(where, "expected a string")
        elif kind == _TEXT_OR_NULL and value is not None and not isinstance(value, str):
            self.fail(where, "expected a string or null")
        elif (
            kind == _INT_OR_NULL
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            self.fail(where, "expected an integer or null")
        elif kind == _TIME:
            return self.time(value, where)
        else:
            return value
        return None

    def time(self, value: Any, where: str) -> datetime | None:
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is None:
            self.fail(where, "expected an ISO 8601 time")
        elif timezone.is_naive(parsed):
            self.fail(where, "the time has no time zone")
            return None
        return parsed

    def uuid(self, record: dict, path: str) -> uuid.UUID | None:
        value = self.field(record, "id", _STRING, path)
        if value is None:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            self.fail(f"{path}.id", f"{value!r} is not a UUID")
            return None

    def clean(self, obj: Conversation | Message, path: str, exclude: list[str]) -> None:
        """Django's own field checks: lengths, choices, ranges (no query: uniqueness is checked apart)."""
        try:
            obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for name, problems in exc.message_dict.items():
                self.fail(f"{path}.{name}", " ".join(problems))


def _read_message(reader: _Reader, data: Any, path: str, conversation: Conversation) -> Message | None:
    record = reader.object(data, path)
    if record is None:
        return None
    before = len(reader.errors)
    pk = reader.uuid(record, path)
    if conversation.pk is not None and record.get("conversation_id") not in (None, str(conversation.pk)):
        reader.fail(f"{path}.conversation_id", "is not the id of the conversation it is in")
    created_at = reader.field(record, "created_at", _TIME, path)
    updated_at = reader.field(record, "updated_at", _TIME, path, required=False) or created_at
    usage = record.get("usage")
    tokens: dict[str, int | None] = {"input_tokens": None, "output_tokens": None}
    if usage is not None:
        usage = reader.object(usage, f"{path}.usage")
        if usage is not None:
            tokens = {k: reader.field(usage, k, _INT_OR_NULL, f"{path}.usage") for k in tokens}
    message = Message(
        id=pk,
        conversation=conversation,
        role=reader.field(record, "role", _STRING, path),
        content=reader.field(record, "content", _STRING, path),
        status=reader.field(record, "status", _STRING, path),
        model=reader.field(record, "model", _STRING, path, required=False) or "",
        created_at=created_at,
        updated_at=updated_at,
        finish_reason=reader.field(record, "finish_reason", _TEXT_OR_NULL, path, required=False),
        error=reader.field(record, "error", _TEXT_OR_NULL, path, required=False),
        error_code=reader.field(record, "error_code", _TEXT_OR_NULL, path, required=False),
        time_to_first_token_ms=reader.field(
            record, "time_to_first_token_ms", _INT_OR_NULL, path, required=False
        ),
        duration_ms=reader.field(record, "duration_ms", _INT_OR_NULL, path, required=False),
        **tokens,
    )
    if len(reader.errors) > before:
        return None
    # No process generates it here: it is what the stale-reply sweeper would make of it anyway.
    if message.status == Message.Status.STREAMING:
        message.status = Message.Status.INTERRUPTED
    reader.clean(message, path, exclude=["conversation"])
    return message if len(reader.errors) == before else None


def _read_owner(reader: _Reader, data: Any, path: str) -> tuple[str | None, str]:
    """(username, visitor) of a conversation's owner."""
    owner = reader.object(data, path)
    if owner is None:
        return None, ""
    kind = owner.get("kind")
    if kind == "user":
        username = reader.field(owner, "username", _STRING, path)
        if username is not None and not username:
            reader.fail(f"{path}.username", "is empty")
        return username, ""
    if kind == "anonymous":
        return None, reader.field(owner, "visitor", _STRING, path) or ""
    reader.fail(f"{path}.kind", "expected 'user' or 'anonymous'")
    return None, ""


def _read(data: Any) -> tuple[list[tuple[Conversation, str | None, list[Message]]], list[str]]:
    errors: list[str] = []
    reader = _Reader(errors)
    top = reader.object(data, "export")
    if top is None:
        return [], errors
    if top.get("format") != FORMAT or top.get("version") != VERSION:
        reader.fail("export", f"not a {FORMAT} export of version {VERSION} (its 'format' and 'version')")
        return [], errors
    items = top.get("conversations")
    if not isinstance(items, list):
        reader.fail("export.conversations", "expected a list")
        return [], errors
    read = []
    for i, item in enumerate(items):
        path = f"conversations[{i}]"
        record = reader.object(item, path)
        if record is None:
            continue
        before = len(errors)
        conversation = Conversation(
            id=reader.uuid(record, path),
            title=reader.field(record, "title", _STRING, path, required=False) or "",
            model=reader.field(record, "model", _STRING, path),
            system_prompt=reader.field(record, "system_prompt", _STRING, path, required=False) or "",
            created_at=reader.field(record, "created_at", _TIME, path),
            updated_at=reader.field(record, "updated_at", _TIME, path),
        )
        username, conversation.visitor = _read_owner(reader, record.get("owner"), f"{path}.owner")
        if len(errors) == before:
            reader.clean(conversation, path, exclude=["user"])
        messages_data = record.get("messages", [])
        if not isinstance(messages_data, list):
            reader.fail(f"{path}.messages", "expected a list")
            continue
        messages = [
            _read_message(reader, m, f"{path}.messages[{j}]", conversation)
            for j, m in enumerate(messages_data)
        ]
        read.append((conversation, username, messages))
    return read, errors


def _existing(model: type, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), BATCH):
        found.update(model.objects.filter(pk__in=ids[start : start + BATCH]).values_list("pk", flat=True))
    return found


def _duplicates(ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    seen: set[uuid.UUID] = set()
    return {i for i in ids if i in seen or seen.add(i)}


def conversations_import(
    data: Any, *, create_users: bool = False, skip_existing: bool = False
) -> ImportResult:
    """Import an export, all or nothing: every problem is reported and nothing is written then.

    Users are matched by username; a missing one is an error unless `create_users` (created
    without a usable password). A conversation whose id exists here is an error unless
    `skip_existing`.
    """
    read, errors = _read(data)
    if errors:
        raise ImportRejected(errors)
    conversation_ids = [c.pk for c, _, _ in read]
    message_ids = [m.pk for _, _, ms in read for m in ms]
    for pk in sorted(_duplicates(conversation_ids), key=str):
        errors.append(f"conversation {pk}: appears more than once in the file")
    for pk in sorted(_duplicates(message_ids), key=str):
        errors.append(f"message {pk}: appears more than once in the file")
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    with transaction.atomic():
        existing = _existing(Conversation, conversation_ids)
        if skip_existing:
            read = [item for item in read if item[0].pk not in existing]
        else:
            for pk in sorted(existing, key=str):
                errors.append(f"conversation {pk}: already exists here (--skip-existing leaves it as it is)")
        # The messages of a conversation already here are there too: no need to say so.
        new_message_ids = [m.pk for c, _, ms in read if c.pk not in existing for m in ms]
        for pk in sorted(_existing(Message, new_message_ids), key=str):
            errors.append(f"message {pk}: already exists here, in another conversation")
        usernames = {u for _, u, _ in read if u is not None}
        users = {
            getattr(u, username_field): u for u in User.objects.filter(**{f"{username_field}__in": usernames})
        }
        missing = sorted(usernames - set(users))
        if missing and not create_users:
            errors.extend(f"user {name!r}: no such user here (--create-users creates it)" for name in missing)
        if errors:
            raise ImportRejected(errors)
        for name in missing:
            user = User(**{username_field: name})
            user.set_unusable_password()
            user.save()
            users[name] = user
        for conversation, username, _ in read:
            conversation.user = users[username] if username is not None else None
        Conversation.objects.bulk_create([c for c, _, _ in read], batch_size=BATCH)
        messages = [m for _, _, ms in read for m in ms]
        Message.objects.bulk_create(messages, batch_size=BATCH)
    return ImportResult(
        conversations=len(read),
        messages=len(messages),
        skipped=len(conversation_ids) - len(read),
        users_created=len(missing),
    )


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
