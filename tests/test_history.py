"""Export, import and prune: the admin action, the commands, and their round trip."""

import copy
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chat import history, history_import
from chat.models import Conversation, Message
from tests.test_admin import LIST, make

CONTRACT_MESSAGE = {
    "id",
    "conversation_id",
    "role",
    "content",
    "status",
    "model",
    "created_at",
    "finish_reason",
    "usage",
    "error",
}
CONTRACT_CONVERSATION = {"id", "title", "model", "system_prompt", "created_at", "updated_at", "messages"}


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("operator", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def history_data(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    mine = make("Mine", "hello <there>", "hi", "more?", "no", user=alice, system_prompt="Be kind.")
    failed = make("Failed", "q", "half an answer", status="error", model="script:fake")
    Message.objects.filter(conversation=failed, status="error").update(
        error="Upstream said no.", error_code="upstream_error", time_to_first_token_ms=12, duration_ms=345
    )
    empty = make("Empty")
    # A reply that reasoned and called a tool between two reasoning runs (issue 12), and an
    # answer from the cache: the export carries them, and an import gives them back.
    Message.objects.filter(conversation=mine, content="no").update(
        reasoning="Think. Then more.",
        reasoning_ms=40,
        steps=[
            {"type": "reasoning", "offset": 0, "start": 0, "end": 6, "duration_ms": 15},
            {
                "type": "tool",
                "offset": 0,
                "id": "call_1",
                "name": "current_time",
                "arguments": {"zone": "Europe/Oslo", "nested": [1, {"a": None}]},
                "result": {"time": "12:00"},
                "error": None,
                "duration_ms": 3,
            },
            {"type": "reasoning", "offset": 0, "start": 6, "end": 17, "duration_ms": 25},
        ],
    )
    Message.objects.filter(conversation=mine, content="hi").update(cached=True)
    # The owner's verdict on a reply (contract v3, "Feedback") goes with it too.
    Message.objects.filter(conversation=mine, content="hi").update(
        feedback_rating=-1, feedback_comment="Too short.", feedback_at=timezone.now()
    )
    return [mine, failed, empty]


def export_command(*args: str) -> dict:
    out = io.StringIO()
    call_command("chat_export", *args, stdout=out)
    return json.loads(out.getvalue())


def without_time_of_export(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "exported_at"}


def test_export_action_downloads_the_selection_in_the_contract_shapes(client, staff, history_data):
    mine, failed, _ = history_data
    response = client.post(LIST, {"action": "export_json", "_selected_action": [mine.pk, failed.pk]})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    data = json.loads(response.content)
    assert (data["format"], data["version"]) == ("chat-history", 2)
    by_title = {c["title"]: c for c in data["conversations"]}
    assert set(by_title) == {"Mine", "Failed"}
    conversation = by_title["Mine"]
    assert set(conversation) >= CONTRACT_CONVERSATION
    assert conversation["owner"] == {"kind": "user", "username": "alice"}
    assert by_title["Failed"]["owner"] == {"kind": "anonymous", "visitor": "v-Failed"}
    assert [m["content"] for m in conversation["messages"]] == ["hello <there>", "hi", "more?", "no"]
    message = conversation["messages"][1]
    assert set(message) >= CONTRACT_MESSAGE
    assert message["usage"] == {"input_tokens": 10, "output_tokens": 20}
    error = by_title["Failed"]["messages"][1]
    assert (error["status"], error["error"], error["error_code"]) == (
        "error",
        "Upstream said no.",
        "upstream_error",
    )
    assert (error["time_to_first_token_ms"], error["duration_ms"]) == (12, 345)


def test_export_one_conversation_from_its_page(client, staff, history_data):
    mine = history_data[0]
    response = client.get(f"/admin/chat/conversation/{mine.pk}/export/")
    assert response.status_code == 200
    assert [c["id"] for c in json.loads(response.content)["conversations"]] == [str(mine.pk)]


def test_export_command_matches_the_action_and_filters(client, staff, history_data, tmp_path):
    everything = export_command()
    assert len(everything["conversations"]) == 3
    action = client.post(
        LIST, {"action": "export_json", "_selected_action": [c.pk for c in history_data]}
    ).content
    assert without_time_of_export(json.loads(action)) == without_time_of_export(everything)
    assert [c["title"] for c in export_command("--user", "alice")["conversations"]] == ["Mine"]
    failed = history_data[1]
    assert [c["title"] for c in export_command("--id", str(failed.pk))["conversations"]] == ["Failed"]
    target = tmp_path / "out.json"
    call_command("chat_export", "-o", str(target), stderr=io.StringIO())
    assert without_time_of_export(json.loads(target.read_text())) == without_time_of_export(everything)


def test_import_of_an_export_round_trips_to_equal_data(history_data, tmp_path):
    before = export_command()
    rows = sorted(Message.objects.values(), key=lambda r: str(r["id"]))
    target = tmp_path / "history.json"
    target.write_text(json.dumps(before))
    Conversation.objects.all().delete()
    out = io.StringIO()
    call_command("chat_import", str(target), "--attach-users", stdout=out)
    assert "Imported 3 conversation(s) and 6 message(s)." in out.getvalue()
    assert without_time_of_export(export_command()) == without_time_of_export(before)
    assert sorted(Message.objects.values(), key=lambda r: str(r["id"])) == rows


def test_import_into_an_install_without_the_users_needs_create_users(
    history_data, django_user_model, tmp_path
):
    target = tmp_path / "history.json"
    target.write_text(json.dumps(export_command()))
    Conversation.objects.all().delete()
    django_user_model.objects.filter(username="alice").delete()
    with pytest.raises(CommandError, match="user 'alice': no such user here"):
        call_command("chat_import", str(target))
    assert not Conversation.objects.exists()
    call_command("chat_import", str(target), "--create-users", stdout=io.StringIO())
    alice = django_user_model.objects.get(username="alice")
    assert not alice.has_usable_password()
    assert Conversation.objects.get(title="Mine").user == alice


def test_import_refuses_existing_conversations_unless_told_to_skip_them(history_data, tmp_path):
    target = tmp_path / "history.json"
    target.write_text(json.dumps(export_command()))
    Conversation.objects.filter(title="Empty").delete()
    with pytest.raises(CommandError, match="already exists here") as failure:
        call_command("chat_import", str(target), "--attach-users")
    assert "2 problems" in str(failure.value)
    assert Conversation.objects.count() == 2
    out = io.StringIO()
    call_command("chat_import", str(target), "--skip-existing", stdout=out)
    assert "Imported 1 conversation(s) and 0 message(s); skipped 2 already here." in out.getvalue()


def broken(data: dict, change) -> dict:
    data = copy.deepcopy(data)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(format="other"), "not a chat-history export"),
        (lambda d: d.update(conversations={}), "export.conversations: expected a list"),
        (lambda d: d["conversations"][0].update(id="nope"), "conversations[2].id: 'nope' is not a UUID"),
        (lambda d: d["conversations"][0].pop("model"), "conversations[2].model: missing"),
        (
            lambda d: d["conversations"][0].update(title="t" * 300),
            "conversations[2].title: Ensure this value",
        ),
        (lambda d: d["conversations"][0]["owner"].update(kind="robot"), "owner.kind: expected 'user' or"),
        (
            lambda d: d["conversations"][0].update(created_at="2024-01-01T00:00:00"),
            "conversations[2].created_at: the time has no time zone",
        ),
        (
            lambda d: d["conversations"][0]["messages"][1].update(status="done"),
            "conversations[2].messages[1].status: Value 'done' is not a valid choice",
        ),
        (
            lambda d: d["conversations"][0]["messages"][1].update(content=None),
            "conversations[2].messages[1].content: expected a string",
        ),
        (
            lambda d: d["conversations"][0]["messages"][1]["usage"].update(input_tokens=-1),
            "messages[1].input_tokens: Ensure this value is greater than or equal to 0",
        ),
        (
            lambda d: d["conversations"][0]["messages"][1].update(duration_ms="fast"),
            "messages[1].duration_ms: expected an integer or null",
        ),
        (
            lambda d: d["conversations"].append(copy.deepcopy(d["conversations"][1])),
            "appears more than once in the file",
        ),
    ],
)
def test_import_of_bad_input_says_what_and_where_and_imports_nothing(history_data, change, problem):
    exported = export_command()
    Conversation.objects.all().delete()
    data = broken(exported, change)
    if isinstance(data["conversations"], list):
        # The broken record last: an import that wrote as it went would leave others behind.
        data["conversations"].reverse()
    with pytest.raises(history_import.ImportRejected) as failure:
        history_import.conversations_import(data)
    assert problem in str(failure.value)
    assert str(failure.value).startswith("Nothing was imported:")
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_import_command_reports_a_file_that_is_not_json(db, tmp_path):
    target = tmp_path / "bad.json"
    target.write_text("{not json")
    with pytest.raises(CommandError, match="is not JSON"):
        call_command("chat_import", str(target))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("chat_import", str(tmp_path / "missing.json"))


def test_a_reply_exported_while_streaming_is_imported_as_interrupted(db):
    make("Live", "q", "partial", status="streaming")
    exported = export_command()
    Conversation.objects.all().delete()
    history_import.conversations_import(exported)
    assert Message.objects.get(content="partial").status == "interrupted"


def test_prune_deletes_conversations_idle_longer_than_the_age(db):
    old = make("Old", "q", "a")
    recent = make("Recent", "q", "a")
    running = make("Old but running", "q", "partial", status="streaming")
    Conversation.objects.filter(pk__in=[old.pk, running.pk]).update(
        updated_at=timezone.now() - timedelta(days=91)
    )
    Conversation.objects.filter(pk=recent.pk).update(updated_at=timezone.now() - timedelta(days=89))
    out = io.StringIO()
    call_command("chat_prune", "--older-than", "90d", "--dry-run", stdout=out)
    assert "Would delete 2 conversation(s) and 4 message(s)" in out.getvalue()
    assert Conversation.objects.count() == 3
    out = io.StringIO()
    call_command("chat_prune", "--older-than", "90d", stdout=out)
    assert "Deleted 2 conversation(s) and 4 message(s)" in out.getvalue()
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Recent"]


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("30m", timedelta(minutes=30)),
    ],
)
def test_ages_read_as_a_number_and_a_unit(text, age):
    assert history.parse_age(text) == age


@pytest.mark.parametrize("text", ["90", "d", "-3d", "1y", "ninety days"])
def test_prune_refuses_an_age_it_cannot_read(db, text):
    with pytest.raises(CommandError, match="is not an age"):
        call_command("chat_prune", f"--older-than={text}")


def test_deleting_flags_running_replies_before_deleting(db):
    running = make("Running", "q", "partial", status="streaming")
    deleted = history.conversations_delete(Conversation.objects.filter(pk=running.pk))
    assert (deleted.conversations, deleted.messages, deleted.stopped) == (1, 2, 1)
