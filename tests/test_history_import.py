"""Import of untrusted-looking files: users attached only when asked, every value checked, and a
malformed file of any kind ends in a sentence with nothing written (never a traceback)."""

import copy
import io
import json
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from chat import history_import
from chat.management.commands.chat_import import Command as ImportCommand
from chat.models import Conversation, Message
from tests.test_admin import make
from tests.test_history import export_command, history_data  # noqa: F401 - a fixture

EXPORT_HEADER = '{"format": "chat-history", "version": 1, "conversations": '


@pytest.fixture
def exported(history_data) -> dict:  # noqa: F811 - the fixture imported above
    """An export of alice's, an anonymous and an empty conversation, then an empty database."""
    data = export_command()
    Conversation.objects.all().delete()
    return data


def run_import(tmp_path, data: dict | bytes, *flags: str) -> str:
    target = tmp_path / "import.json"
    target.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    out = io.StringIO()
    call_command("chat_import", str(target), *flags, stdout=out)
    return out.getvalue()


def nothing_imported(users_before: int) -> bool:
    return (
        not Conversation.objects.exists()
        and not Message.objects.exists()
        and get_user_model().objects.count() == users_before
    )


def test_an_existing_user_gets_conversations_only_with_attach_users(exported, tmp_path):
    with pytest.raises(CommandError) as failure:
        run_import(tmp_path, exported)
    assert "user 'alice': already exists here; conversations are attached to an existing user only " in str(
        failure.value
    )
    assert "--attach-users" in str(failure.value)
    assert nothing_imported(users_before=1)
    run_import(tmp_path, exported, "--attach-users")
    assert Conversation.objects.get(title="Mine").user.username == "alice"


@pytest.mark.parametrize(
    ("flags", "rank"),
    [({"is_staff": True, "is_superuser": True}, "a superuser"), ({"is_staff": True}, "staff")],
)
def test_a_file_naming_staff_or_a_superuser_is_refused_saying_so(
    exported, tmp_path, django_user_model, flags, rank
):
    django_user_model.objects.create_user("root", **flags)
    exported["conversations"][0]["owner"] = {"kind": "user", "username": "root"}
    with pytest.raises(CommandError, match=rf"user 'root' \({rank}\): already exists here"):
        run_import(tmp_path, exported, "--create-users")
    assert not Conversation.objects.exists()


def test_created_users_must_pass_the_user_models_own_checks(exported, tmp_path, django_user_model):
    names = ["bad name!", "x" * 151, "ﬁsh", "ok.name"]
    for conversation, name in zip(exported["conversations"], names, strict=False):
        conversation["owner"] = {"kind": "user", "username": name}
    with pytest.raises(CommandError) as failure:
        run_import(tmp_path, exported, "--create-users")
    message = str(failure.value)
    assert "user 'bad name!': cannot be created here: Enter a valid username." in message
    assert "cannot be created here: Ensure this value has at most 150 characters" in message
    assert "user 'ﬁsh': would be stored as 'fish'" in message  # NFKC: the file's name would not match
    assert "ok.name" not in message
    assert nothing_imported(users_before=1)
    assert not django_user_model.objects.filter(username="ok.name").exists()


def test_a_created_user_has_no_usable_password_and_is_not_staff(exported, tmp_path, django_user_model):
    django_user_model.objects.filter(username="alice").delete()
    assert "created 1 user(s)" in run_import(tmp_path, exported, "--create-users")
    alice = django_user_model.objects.get(username="alice")
    assert not alice.has_usable_password() and not alice.is_staff and not alice.is_superuser


def test_the_help_says_import_files_must_be_trusted():
    parser = ImportCommand().create_parser("manage.py", "chat_import")
    text = " ".join(parser.format_help().split())
    assert "Import only files from a trusted source" in text
    assert "(staff and superusers included) only with --attach-users" in text


def change(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (
            ("conversations", 0, "messages", 1, "content"),
            "a\x00b",
            "conversations[0].messages[1].content: contains a NUL character (U+0000)",
        ),
        (
            ("conversations", 0, "title"),
            "\ud800 lone",
            "conversations[0].title: contains an unpaired surrogate",
        ),
        (("conversations", 1, "owner", "visitor"), "v\x00", "conversations[1].owner.visitor: contains a NUL"),
        (
            ("conversations", 0, "created_at"),
            "2024-02-30T10:00:00Z",
            "created_at: '2024-02-30T10:00:00Z' is not a real time",
        ),
        (
            ("conversations", 0, "updated_at"),
            "0001-01-01T00:00:00+05:00",
            "updated_at: '0001-01-01T00:00:00+05:00' is out of range",
        ),
        (("conversations", 0, "messages", 0, "created_at"), "yesterday", "expected an ISO 8601 time"),
        (
            ("conversations", 0, "messages", 1, "usage", "output_tokens"),
            10**30,
            "Ensure this value is less than or equal to",
        ),
        (
            ("conversations", 0, "messages", 1, "usage", "output_tokens"),
            1e400,
            "expected an integer or null, got a number",
        ),
        (
            ("conversations", 0, "messages", 1, "role"),
            "tool",
            "messages[1].role: Value 'tool' is not a valid choice.",
        ),
        (("conversations", 0, "messages", 1, "status"), "x" * 10_000, "is not a valid choice"),
        (
            ("conversations", 0, "messages", 1, "feedback"),
            {"rating": 2, "comment": ""},
            "messages[1].feedback.rating: expected 1 (good) or -1 (bad)",
        ),
        (
            ("conversations", 0, "messages", 0, "feedback"),
            {"rating": 1},
            "messages[0].feedback: is on a message that is not a reply",
        ),
        (("conversations", 0, "owner", "username"), 7, "owner.username: expected a string, got integer"),
        (("conversations", 0, "id"), "not-a-uuid", "conversations[0].id: 'not-a-uuid' is not a UUID"),
        (
            ("conversations", 0, "messages", 1, "finish_reason"),
            "r" * 65,
            "finish_reason: Ensure this value has at most 64",
        ),
        (
            ("conversations", 0, "messages", 3, "steps", 0, "text"),
            "Thought.",
            "messages[3].steps[0].text: is not the next part of the message's reasoning",
        ),
        (("conversations", 0, "messages", 3, "steps", 1, "offset"), -1, "steps[1].offset: expected a whole"),
        (("conversations", 0, "messages", 3, "steps", 1, "offset"), 99, "steps[1].offset: 99 is not between"),
        (
            ("conversations", 0, "messages", 3, "steps", 1, "arguments"),
            {"zone": ["ok", "a\x00"]},
            "steps[1].arguments.zone[1]: contains a NUL",
        ),
        (
            ("conversations", 0, "messages", 3, "steps", 1, "approval"),
            "maybe",
            "steps[1].approval: expected one of waiting, approved, denied, expired",
        ),
        (
            ("conversations", 0, "messages", 3, "steps", 1, "type"),
            "shell",
            'steps[1].type: expected "reasoning"',
        ),
        (
            ("conversations", 0, "messages", 3, "steps"),
            {},
            "messages[3].steps: expected a list, got an object",
        ),
        (
            ("conversations", 0, "messages", 3, "reasoning"),
            "Think. Then more. And more.",
            "messages[3].reasoning: is not the reasoning runs of its steps put together",
        ),
        (("conversations", 0, "messages", 1, "cached"), "yes", "messages[1].cached: expected true or false"),
        (("version",), True, "not a chat-history export of version 1 to 2"),
        (("conversations", 0, "messages"), {}, "conversations[0].messages: expected a list, got an object"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, str) else None,
)
def test_every_value_is_checked_as_the_models_would(exported, tmp_path, path, value, problem):
    exported["conversations"].sort(key=lambda c: c["title"] != "Mine")  # alice's first
    with pytest.raises(CommandError) as failure:
        run_import(tmp_path, change(exported, path, value), "--attach-users")
    assert problem in str(failure.value)
    assert str(failure.value).startswith("Nothing was imported:")
    assert len(str(failure.value)) < 2000  # a value's megabytes are not echoed
    assert nothing_imported(users_before=1)


def test_a_message_id_twice_in_the_file_is_refused(exported, tmp_path):
    mine = next(c for c in exported["conversations"] if c["title"] == "Mine")
    failed = next(c for c in exported["conversations"] if c["title"] == "Failed")
    failed["messages"][0]["id"] = failed["messages"][1]["parent_id"] = mine["messages"][0]["id"]
    with pytest.raises(CommandError, match=f"message {mine['messages'][0]['id']}: appears more than once"):
        run_import(tmp_path, exported, "--attach-users")
    assert nothing_imported(users_before=1)


MALFORMED_FILES = {
    "empty": b"",
    "a list": b"[]",
    "a string": b'"chat-history"',
    "null": b"null",
    "not JSON": b"{format: chat-history}",
    "truncated": EXPORT_HEADER.encode() + b'[{"id": "',
    "Latin-1": '{"format": "chat-history", "title": "café"}'.encode("latin-1"),
    "UTF-16": '{"format": "chat-history"}'.encode("utf-16"),
    "a NUL byte": b'{"format": "chat-\x00history"}',
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "an object nested 100,000 deep": EXPORT_HEADER.encode()
    + b'{"a":' * 100_000
    + b"1"
    + b"}" * 100_000
    + b"}",
    "a 5,000-digit number": EXPORT_HEADER.encode() + b"[" + b"9" * 5000 + b"]}",
    "NaN": EXPORT_HEADER.encode() + b"NaN}",
    "no conversations": b'{"format": "chat-history", "version": 1}',
    "conversations of every type": EXPORT_HEADER.encode() + b'[1, "a", null, true, [], {}, 2.5]}',
    "every field of the wrong type": EXPORT_HEADER.encode()
    + json.dumps(
        [
            {
                "id": 5,
                "title": [],
                "model": {},
                "system_prompt": 1.5,
                "created_at": 5,
                "updated_at": None,
                "owner": "alice",
                "messages": [{"id": [], "role": 1, "content": {}, "status": None, "usage": "lots"}, 7],
            }
        ]
    ).encode()
    + b"}",
}


@pytest.mark.parametrize("name", MALFORMED_FILES)
def test_a_malformed_file_ends_in_a_sentence_and_imports_nothing(db, tmp_path, name):
    with pytest.raises(CommandError) as failure:
        run_import(tmp_path, MALFORMED_FILES[name], "--create-users", "--attach-users")
    sentence = str(failure.value)
    assert "Nothing was imported" in sentence and "Traceback" not in sentence
    assert nothing_imported(users_before=0)


def leaves(value, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    else:
        yield path


BAD_VALUES = [None, True, 0, -1, 2**63, 1.5, "", "x" * 300, "\x00", "\udc80", [], {}]


def test_any_value_anywhere_is_imported_whole_or_refused_with_sentences(exported, django_user_model):
    """Every leaf of a real export, replaced by each kind of bad value: no other outcome."""
    users = set(django_user_model.objects.values_list("pk", flat=True))
    outcomes = {"refused": 0, "imported": 0}
    for path in leaves(exported):
        for value in BAD_VALUES:
            data = change(exported, path, value)
            try:
                history_import.conversations_import(data, create_users=True, attach_users=True)
            except history_import.ImportRejected as exc:
                assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
                assert not Conversation.objects.exists() and not Message.objects.exists(), (path, value)
                outcomes["refused"] += 1
            else:
                outcomes["imported"] += 1
                Conversation.objects.all().delete()
                django_user_model.objects.exclude(pk__in=users).delete()
    assert outcomes["refused"] > outcomes["imported"] > 0


def test_a_streaming_reply_and_a_bom_are_fine(db, tmp_path):
    make("Live", "q", "partial", status="streaming")
    data = export_command()
    Conversation.objects.all().delete()
    run_import(tmp_path, b"\xef\xbb\xbf" + json.dumps(data).encode())
    assert Message.objects.get(content="partial").status == "interrupted"


def test_a_tool_steps_approval_is_imported(exported, tmp_path):
    """Issue 31: the outcome of a call that waited for the person goes through export and import."""
    exported["conversations"].sort(key=lambda c: c["title"] != "Mine")
    exported["conversations"][0]["messages"][3]["steps"][1]["approval"] = "denied"
    run_import(tmp_path, exported, "--attach-users")
    reply = Message.objects.get(pk=exported["conversations"][0]["messages"][3]["id"])
    assert reply.steps[1]["approval"] == "denied"
