"""Import of a history export (chat/history.py writes it): all of it, or nothing.

An import file is trusted input (the command's help says so): it decides who owns what and
what they said, and it can create accounts. What is checked here is that it cannot do more
than it says (attach history to an existing account, staff and superusers included, only
when asked), that every value is one the models accept, and that a bad file ends in a
sentence with nothing written rather than a traceback or half an import.
"""

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat.history import BATCH, FORMAT, VERSION
from chat.models import Conversation, Message, ToolApproval

MAX_ERRORS_SHOWN = 20
VERSIONS = (1, VERSION)  # 1: before branches (its messages become a chain)


class ImportRejected(Exception):
    """The input is not a valid export, or clashes with this database; nothing was imported."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.version = VERSION
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
_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON pairs become one character: any left is unpaired
MAX_QUOTED = 80


def _quoted(value: str) -> str:
    """A value from the file, in an error message: repr'd (no control characters) and short."""
    return repr(value if len(value) <= MAX_QUOTED else value[: MAX_QUOTED - 1] + "…")


def _short(problem: str) -> str:
    """Django's messages quote the value whole, and a file's value can be megabytes long: keep
    the start and the end ("Value 'xxx…xxx' is not a valid choice.")."""
    return problem if len(problem) <= 300 else f"{problem[:200]}…{problem[-80:]}"


class _Reader:
    """Checks one record's fields against the export's shapes, collecting errors with their path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.version = VERSION

    def fail(self, path: str, problem: str) -> None:
        self.errors.append(f"{path}: {problem}")

    def object(self, value: Any, path: str) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {_json_type(value)}")
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
            self.fail(where, f"expected a string, got {_json_type(value)}")
        elif kind == _TEXT_OR_NULL and value is not None and not isinstance(value, str):
            self.fail(where, f"expected a string or null, got {_json_type(value)}")
        elif kind == _INT_OR_NULL and value is not None and _json_type(value) != "integer":
            self.fail(where, f"expected an integer or null, got {_json_type(value)}")
        elif kind == _TIME:
            return self.time(value, where)
        elif isinstance(value, str) and not self.text(value, where):
            return None
        else:
            return value
        return None

    def text(self, value: str, where: str) -> bool:
        """Text any database here stores and gives back as it was: True if so."""
        if "\x00" in value:
            self.fail(where, "contains a NUL character (U+0000), which the database cannot store")
        elif _SURROGATE.search(value):
            self.fail(where, "contains an unpaired surrogate (U+D800 to U+DFFF), which is not valid Unicode")
        else:
            return True
        return False

    def time(self, value: Any, where: str) -> datetime | None:
        try:
            parsed = parse_datetime(value) if isinstance(value, str) else None
        except ValueError as exc:  # well formed, but no such time: "2024-02-30T00:00:00Z"
            self.fail(where, f"{_quoted(value)} is not a real time ({exc})")
            return None
        if parsed is None:
            self.fail(where, "expected an ISO 8601 time, such as 2024-05-01T12:00:00Z")
            return None
        if timezone.is_naive(parsed):
            self.fail(where, "the time has no time zone")
            return None
        try:
            parsed.astimezone(UTC)  # the database stores it in UTC
        except OverflowError:
            self.fail(where, f"{_quoted(value)} is out of range (years 1 to 9999, in UTC)")
            return None
        return parsed

    def uuid(self, record: dict, path: str) -> uuid.UUID | None:
        value = self.field(record, "id", _STRING, path)
        if value is None:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            self.fail(f"{path}.id", f"{_quoted(value)} is not a UUID")
            return None

    def clean(self, obj: Conversation | Message, path: str, exclude: list[str]) -> None:
        """Django's own field checks: lengths, choices, ranges (no query: uniqueness is checked apart)."""
        try:
            obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for name, problems in exc.message_dict.items():
                self.fail(f"{path}.{name}", " ".join(_short(p) for p in problems))


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, as the person who wrote the file knows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "integer"
    names = {float: "a number with a fraction", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


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
    parent = record.get("parent_id")
    if parent is not None and not isinstance(parent, str):
        reader.fail(f"{path}.parent_id", f"expected a string or null, got {_json_type(parent)}")
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
        **_read_steps(reader, record, path),
        **_read_feedback(reader, record, path, given=created_at),
    )
    if isinstance(parent, str):
        try:
            message.parent_id = uuid.UUID(parent)
        except ValueError:
            reader.fail(f"{path}.parent_id", f"{_quoted(parent)} is not a UUID")
    if len(reader.errors) > before:
        return None
    # No process generates it here: it is what the stale-reply sweeper would make of it anyway.
    if message.status == Message.Status.STREAMING:
        message.status = Message.Status.INTERRUPTED
    reader.clean(message, path, exclude=["conversation", "parent"])
    return message if len(reader.errors) == before else None


def _read_steps(reader: _Reader, record: dict, path: str) -> dict[str, Any]:
    """A reply's reasoning, tool steps and `cached` mark (issue 12), as the message stores them.

    The export gives each reasoning run its text (the contract's `steps`); stored, a run is a
    slice of `reasoning`, so the runs must be the reasoning's parts, in order. An export from
    before issue 12 has none of these fields: the message gets none.
    """
    reasoning = reader.field(record, "reasoning", _STRING, path, required=False) or ""
    fields: dict[str, Any] = {
        "reasoning": reasoning,
        "reasoning_ms": reader.field(record, "reasoning_ms", _INT_OR_NULL, path, required=False),
        "steps": [],
    }
    cached = record.get("cached", False)
    if not isinstance(cached, bool):
        reader.fail(f"{path}.cached", f"expected true or false, got {_json_type(cached)}")
    fields["cached"] = cached is True
    steps = record.get("steps", [])
    if not isinstance(steps, list):
        reader.fail(f"{path}.steps", f"expected a list, got {_json_type(steps)}")
        return fields
    content = record.get("content")
    length = len(content) if isinstance(content, str) else 0
    cursor, runs, last_offset = 0, False, 0
    for i, data in enumerate(steps):
        where = f"{path}.steps[{i}]"
        step = reader.object(data, where)
        if step is None:
            continue
        offset = _whole(reader, step, "offset", where, required=True)
        if offset is not None and not last_offset <= offset <= length:
            reader.fail(f"{where}.offset", f"{offset} is not between the step before's and the content's end")
        last_offset = offset if offset is not None else last_offset
        duration = _whole(reader, step, "duration_ms", where, required=False)
        if step.get("type") == "reasoning":
            runs = True
            text = reader.field(step, "text", _STRING, where)
            if text is None:
                continue
            if reasoning[cursor : cursor + len(text)] != text:
                reader.fail(f"{where}.text", "is not the next part of the message's reasoning")
            end = cursor + len(text)
            run = {
                "type": "reasoning",
                "offset": offset,
                "start": cursor,
                "end": end,
                "duration_ms": duration or 0,
            }
            fields["steps"].append(run)
            cursor = end
        elif step.get("type") == "tool":
            tool = {"type": "tool", "offset": offset}
            tool["id"] = reader.field(step, "id", _STRING, where)
            tool["name"] = reader.field(step, "name", _STRING, where)
            for key in ("arguments", "result"):  # any JSON value, stored as it is
                tool[key] = step.get(key)
                _storable_json(reader, tool[key], f"{where}.{key}")
            tool["error"] = reader.field(step, "error", _TEXT_OR_NULL, where, required=False)
            tool["duration_ms"] = duration
            if step.get("approval") is not None:  # a call that waited for the person (issue 31)
                if step["approval"] not in ToolApproval.State.values:
                    reader.fail(
                        f"{where}.approval", f"expected one of {', '.join(ToolApproval.State.values)}"
                    )
                tool["approval"] = step["approval"]
            fields["steps"].append(tool)
        else:
            reader.fail(f"{where}.type", 'expected "reasoning" or "tool"')
    if runs and cursor != len(reasoning):
        reader.fail(f"{path}.reasoning", "is not the reasoning runs of its steps put together")
    return fields


def _read_feedback(reader: _Reader, record: dict, path: str, *, given: datetime | None) -> dict[str, Any]:
    """A reply's rating and comment (contract v3, "Feedback"): `null`, or `{"rating": 1 | -1,
    "comment"}`, given at `feedback_at` (else, in a file without it, at the reply's time). An
    export from before feedback existed has none: the message gets none."""
    data = record.get("feedback")
    if data is None:
        return {}
    feedback = reader.object(data, f"{path}.feedback")
    if feedback is None:
        return {}
    rating = feedback.get("rating")
    if _json_type(rating) != "integer" or rating not in (1, -1):
        reader.fail(f"{path}.feedback.rating", "expected 1 (good) or -1 (bad)")
        return {}
    if record.get("role") in (Message.Role.USER, Message.Role.SYSTEM):  # another role fails elsewhere
        reader.fail(f"{path}.feedback", "is on a message that is not a reply")
    comment = reader.field(feedback, "comment", _STRING, f"{path}.feedback", required=False) or ""
    at = reader.field(record, "feedback_at", _TIME, path, required=False)
    return {"feedback_rating": rating, "feedback_comment": comment, "feedback_at": at or given}


def _whole(reader: _Reader, record: dict, key: str, path: str, *, required: bool) -> int | None:
    """A whole number, 0 or more (null allowed when not required)."""
    value = record.get(key)
    if value is None and not required:
        return None
    if _json_type(value) != "integer" or value < 0 or value > 2**31 - 1:
        got = str(value) if _json_type(value) == "integer" else _json_type(value)
        reader.fail(f"{path}.{key}", f"expected a whole number from 0 to 2147483647, got {got}")
        return None
    return value


def _storable_json(reader: _Reader, value: Any, where: str) -> None:
    """Every string inside a JSON value, keys too, is text the database can store."""
    if isinstance(value, str):
        reader.text(value, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _storable_json(reader, item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable_json(reader, key, f"{where} (a key)")
            _storable_json(reader, item, f"{where}.{key}")


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
        return username or None, ""
    if kind == "anonymous":
        return None, reader.field(owner, "visitor", _STRING, path) or ""
    reader.fail(f"{path}.kind", "expected 'user' or 'anonymous'")
    return None, ""


_Item = tuple[Conversation, str | None, list[Message]]


def _read_conversation(reader: _Reader, item: Any, path: str) -> _Item | None:
    record = reader.object(item, path)
    if record is None:
        return None
    before = len(reader.errors)
    conversation = Conversation(
        id=reader.uuid(record, path),
        title=reader.field(record, "title", _STRING, path, required=False) or "",
        model=reader.field(record, "model", _STRING, path),
        system_prompt=reader.field(record, "system_prompt", _STRING, path, required=False) or "",
        created_at=reader.field(record, "created_at", _TIME, path),
        updated_at=reader.field(record, "updated_at", _TIME, path),
    )
    username, conversation.visitor = _read_owner(reader, record.get("owner"), f"{path}.owner")
    if len(reader.errors) == before:
        reader.clean(conversation, path, exclude=["user", "current_leaf"])
    messages_data = record.get("messages", [])
    if not isinstance(messages_data, list):
        reader.fail(f"{path}.messages", f"expected a list, got {_json_type(messages_data)}")
        return None
    messages = [
        _read_message(reader, m, f"{path}.messages[{j}]", conversation) for j, m in enumerate(messages_data)
    ]
    if reader.version == 1:
        _chain(conversation, [m for m in messages if m is not None])
    elif len(reader.errors) == before:
        _read_tree(reader, record, path, conversation, messages)
    return conversation, username, messages


def _chain(conversation: Conversation, messages: list[Message]) -> None:
    """A version 1 export (before branches): its messages, by time, become a chain, as
    migration 0006 made of the conversations already stored."""
    parent = None
    for message in sorted(messages, key=lambda m: m.created_at):
        message.parent_id = parent
        parent = message.pk
    conversation.current_leaf_id = parent


def _read_tree(
    reader: "_Reader", record: dict, path: str, conversation: Conversation, messages: list[Message]
) -> None:
    """Version 2: each parent is a message of the same conversation, never younger than its
    child (chat/branches.py), so no loop; `current_leaf` is one of them, or null."""
    by_id = {m.pk: (j, m) for j, m in enumerate(messages)}
    for j, message in enumerate(messages):
        if message.parent_id is None:
            continue
        parent = by_id.get(message.parent_id)
        where = f"{path}.messages[{j}].parent_id"
        if parent is None:
            reader.fail(where, "is not the id of a message of the same conversation")
        elif parent[1].created_at > message.created_at or parent[1] is message:
            reader.fail(where, "names a message younger than this one (a parent comes first)")
    rooted: set[uuid.UUID] = set()  # messages known to lead up to a root
    for j, message in enumerate(messages):  # equal times could still make a loop
        node, seen = message, set()
        while node.pk not in rooted and node.parent_id in by_id:
            if node.pk in seen:
                reader.fail(f"{path}.messages[{j}].parent_id", "makes a loop of messages")
                return
            seen.add(node.pk)
            node = by_id[node.parent_id][1]
        rooted |= seen
    leaf = record.get("current_leaf")
    if leaf is None:
        return
    try:
        pk = uuid.UUID(leaf) if isinstance(leaf, str) else None
    except ValueError:
        pk = None
    if pk not in by_id:
        reader.fail(f"{path}.current_leaf", "is not null nor the id of a message of this conversation")
    conversation.current_leaf_id = pk


def _read(data: Any) -> tuple[list[_Item], list[str]]:
    errors: list[str] = []
    reader = _Reader(errors)
    top = reader.object(data, "export")
    if top is None:
        return [], errors
    version = top.get("version")
    if top.get("format") != FORMAT or type(version) is not int or version not in VERSIONS:  # not true, 1.0
        reader.fail("export", f"not a {FORMAT} export of version 1 to {VERSION} (its 'format' and 'version')")
        return [], errors
    reader.version = version
    items = top.get("conversations")
    if not isinstance(items, list):
        reader.fail("export.conversations", f"expected a list, got {_json_type(items)}")
        return [], errors
    read = [_read_conversation(reader, item, f"conversations[{i}]") for i, item in enumerate(items)]
    return [item for item in read if item is not None], errors


def _existing(model: type, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), BATCH):
        found.update(model.objects.filter(pk__in=ids[start : start + BATCH]).values_list("pk", flat=True))
    return found


def _duplicates(ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    seen: set[uuid.UUID] = set()
    return {i for i in ids if i in seen or seen.add(i)}


def _duplicate_errors(read: list[_Item]) -> list[str]:
    conversations = _duplicates(c.pk for c, _, _ in read)
    messages = _duplicates(m.pk for _, _, ms in read for m in ms)
    return [
        f"conversation {pk}: appears more than once in the file" for pk in sorted(conversations, key=str)
    ] + [f"message {pk}: appears more than once in the file" for pk in sorted(messages, key=str)]


def _clashes(read: list[_Item], errors: list[str], *, skip_existing: bool) -> list[_Item]:
    """What to import of `read`, with an error for each record already here."""
    existing = _existing(Conversation, [c.pk for c, _, _ in read])
    if skip_existing:
        read = [item for item in read if item[0].pk not in existing]
    else:
        errors.extend(
            f"conversation {pk}: already exists here (--skip-existing leaves it as it is)"
            for pk in sorted(existing, key=str)
        )
    # The messages of a conversation already here are there too: no need to say so.
    new_message_ids = [m.pk for c, _, ms in read if c.pk not in existing for m in ms]
    errors.extend(
        f"message {pk}: already exists here, in another conversation"
        for pk in sorted(_existing(Message, new_message_ids), key=str)
    )
    return read


def _rank(user: Any) -> str:
    if getattr(user, "is_superuser", False):
        return " (a superuser)"
    return " (staff)" if getattr(user, "is_staff", False) else ""


def _new_user(name: str, errors: list[str]) -> Any:
    """An unsaved user named `name` with no usable password, checked by the user model itself."""
    User = get_user_model()
    user = User(**{User.USERNAME_FIELD: name})
    user.set_unusable_password()
    try:
        user.full_clean()  # the username's own validators and length, and that it is free
    except ValidationError as exc:
        problems = " ".join(_short(p) for ps in exc.message_dict.values() for p in ps)
        errors.append(f"user {_quoted(name)}: cannot be created here: {problems}")
        return None
    stored = getattr(user, User.USERNAME_FIELD)
    if stored != name:  # AbstractUser.clean() normalizes (NFKC): the file's name would not match
        errors.append(
            f"user {_quoted(name)}: would be stored as {_quoted(stored)}; write that name in the file"
        )
        return None
    return user


def _owners(
    usernames: set[str], errors: list[str], *, create_users: bool, attach_users: bool
) -> tuple[dict[str, Any], list[Any]]:
    """The users the file names, by name: those here (if `attach_users`), and new ones to save."""
    User = get_user_model()
    field = User.USERNAME_FIELD
    names = sorted(usernames)
    found: dict[str, Any] = {}
    for start in range(0, len(names), BATCH):
        batch = User.objects.filter(**{f"{field}__in": names[start : start + BATCH]})
        found.update((getattr(u, field), u) for u in batch)
    if not attach_users:
        errors.extend(
            f"user {_quoted(name)}{_rank(found[name])}: already exists here; conversations are "
            "attached to an existing user only with --attach-users"
            for name in sorted(found)
        )
    missing = [name for name in names if name not in found]
    if missing and not create_users:
        errors.extend(
            f"user {_quoted(name)}: no such user here (--create-users creates it)" for name in missing
        )
        return found, []
    new = [_new_user(name, errors) for name in missing]
    return found, [u for u in new if u is not None]


def conversations_import(
    data: Any, *, create_users: bool = False, attach_users: bool = False, skip_existing: bool = False
) -> ImportResult:
    """Import an export, all or nothing: every problem is reported and nothing is written then.

    Users are matched by username. A conversation goes to a user already here only with
    `attach_users` (any user: staff and superusers too); a missing one is an error unless
    `create_users` (created without a usable password, its name checked by the user model).
    A conversation whose id exists here is an error unless `skip_existing`.
    """
    read, errors = _read(data)
    if errors:
        raise ImportRejected(errors)
    errors = _duplicate_errors(read)
    total = len(read)
    try:
        with transaction.atomic():
            read = _clashes(read, errors, skip_existing=skip_existing)
            usernames = {u for _, u, _ in read if u is not None}
            users, new_users = _owners(
                usernames, errors, create_users=create_users, attach_users=attach_users
            )
            if errors:
                raise ImportRejected(errors)
            messages = _write(read, users, new_users)
    except DatabaseError as exc:  # a row written meanwhile by someone else, say: all rolled back
        raise ImportRejected([f"the database refused the import: {_short(str(exc))}"]) from exc
    return ImportResult(
        conversations=len(read), messages=messages, skipped=total - len(read), users_created=len(new_users)
    )


def _write(read: list[_Item], users: dict[str, Any], new_users: list[Any]) -> int:
    User = get_user_model()
    for user in new_users:
        user.save()
        users[getattr(user, User.USERNAME_FIELD)] = user
    for conversation, username, _ in read:
        conversation.user = users[username] if username is not None else None
    Conversation.objects.bulk_create([c for c, _, _ in read], batch_size=BATCH)
    messages = [m for _, _, ms in read for m in ms]
    Message.objects.bulk_create(messages, batch_size=BATCH)
    return len(messages)
