"""Conversations as trees (contract v3, "Branches"), against the real server: edit and
regenerate keep what they replace, the model sees the current branch only, and the branch
chosen is stored."""

import json
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat import history, history_import
from chat.context import turns_newest_first
from chat.models import Conversation, Message
from chat.providers import Turn
from tests.fakes import CLOSED, PROMPTS, gate, script
from tests.sse_client import text_of
from tests.test_admin import staff  # noqa: F401 - a fixture


def finished(tab, sent: dict) -> dict:
    reply = sent["assistant_message"]
    return tab.wait_finished(reply["id"], reply["conversation_id"])


def say(text: str) -> str:
    return script({"say": text})


def turn(tab, cid: str, text: str, **extra) -> dict:
    """Send `say(text)` (or an edit) and wait for its reply."""
    body = {"content": say(text), **extra}
    response = tab.post(f"/api/conversations/{cid}/messages", json=body)
    assert response.status_code == 201, response.text
    sent = response.json()
    finished(tab, sent)
    return sent


def shown(tab, cid: str) -> list[str]:
    """The current branch as the API shows it: the replies' texts and the questions' scripts."""
    conversation = tab.get(f"/api/conversations/{cid}").json()
    assert conversation["current_leaf"] == (
        conversation["messages"][-1]["id"] if conversation["messages"] else None
    )
    return [m["content"] for m in conversation["messages"]]


@pytest.fixture
def chat(tab):
    """A conversation of two turns: one, two."""
    cid = tab.conversation(model="script:fake")["id"]
    first, second = turn(tab, cid, "one"), turn(tab, cid, "two")
    return cid, first, second


def test_edit_of_an_earlier_message_keeps_the_old_one_and_everything_under_it(tab, chat):
    cid, first, second = chat
    edited = turn(tab, cid, "uno", edit=first["user_message"]["id"])
    user, reply = edited["user_message"], edited["assistant_message"]
    assert user["parent_id"] is None
    assert user["sibling_ids"] == [first["user_message"]["id"], user["id"]]
    assert reply["parent_id"] == user["id"] and reply["sibling_ids"] == [reply["id"]]
    assert shown(tab, cid) == [say("uno"), "uno"]
    assert Message.objects.filter(conversation_id=cid).count() == 6  # nothing deleted
    assert PROMPTS[-1].turns == (Turn("user", say("uno")),)  # the old branch is not sent
    # The old version is still reachable, with everything under it.
    back = tab.post(f"/api/conversations/{cid}/branch", json={"message_id": first["user_message"]["id"]})
    assert back.status_code == 200, back.text
    assert [m["content"] for m in back.json()["messages"]] == [say("one"), "one", say("two"), "two"]
    assert back.json()["current_leaf"] == second["assistant_message"]["id"]
    assert back.json()["messages"][0]["sibling_ids"] == [first["user_message"]["id"], user["id"]]


def test_regenerate_keeps_the_old_reply_and_names_its_siblings(tab, chat):
    cid, first, second = chat
    again = tab.post(f"/api/conversations/{cid}/regenerate", json={})
    assert again.status_code == 201, again.text
    body = again.json()
    finished(tab, body)
    old, new = second["assistant_message"]["id"], body["assistant_message"]["id"]
    assert body["user_message"]["id"] == second["user_message"]["id"]
    assert body["assistant_message"]["parent_id"] == second["user_message"]["id"]
    assert body["assistant_message"]["sibling_ids"] == [old, new]
    assert Message.objects.filter(pk=old).exists()
    messages = tab.get(f"/api/conversations/{cid}").json()["messages"]
    assert [m["id"] for m in messages][-1] == new
    assert messages[-1]["sibling_ids"] == [old, new]
    assert tab.get(f"/api/messages/{old}").json()["sibling_ids"] == [old, new]
    assert [t.content for t in PROMPTS[-1].turns] == [say("one"), "one", say("two")]


def test_regenerate_of_an_earlier_reply_answers_with_the_branch_up_to_its_question(tab, chat):
    cid, first, _ = chat
    body = {"message_id": first["assistant_message"]["id"]}
    again = tab.post(f"/api/conversations/{cid}/regenerate", json=body)
    assert again.status_code == 201, again.text
    finished(tab, again.json())
    assert shown(tab, cid) == [say("one"), "one"]
    assert PROMPTS[-1].turns == (Turn("user", say("one")),)
    # A send continues from the new leaf: the model sees the current branch only.
    turn(tab, cid, "three")
    assert [t.content for t in PROMPTS[-1].turns] == [say("one"), "one", say("three")]


def test_the_model_sees_the_current_branch_only_after_a_switch(tab, chat):
    cid, first, second = chat
    turn(tab, cid, "deux", edit=second["user_message"]["id"])
    switched = tab.post(f"/api/conversations/{cid}/branch", json={"message_id": second["user_message"]["id"]})
    assert switched.status_code == 200
    turn(tab, cid, "three")
    assert [t.content for t in PROMPTS[-1].turns] == [say("one"), "one", say("two"), "two", say("three")]


def test_a_branch_switch_is_stored_and_a_fresh_get_shows_it(tab, new_tab, chat):
    cid, first, second = chat
    turn(tab, cid, "deux", edit=second["user_message"]["id"])
    before = Conversation.objects.get(pk=cid).updated_at
    response = tab.post(
        f"/api/conversations/{cid}/branch", json={"message_id": second["assistant_message"]["id"]}
    )
    assert response.status_code == 200
    assert Conversation.objects.get(pk=cid).current_leaf_id == uuid.UUID(second["assistant_message"]["id"])
    assert Conversation.objects.get(pk=cid).updated_at == before  # not activity
    assert shown(tab, cid) == [say("one"), "one", say("two"), "two"]
    # By a message above the fork: down by the newest child each time.
    tab.post(f"/api/conversations/{cid}/branch", json={"message_id": first["assistant_message"]["id"]})
    assert shown(tab, cid) == [say("one"), "one", say("deux"), "deux"]  # down by the newest child


@pytest.mark.parametrize(
    "which", ["not a uuid", "unknown", "other conversation", "a number", "missing", "a list", "a NUL", "huge"]
)
def test_a_bad_message_id_for_branch_answers_400_and_changes_nothing(tab, chat, which):
    cid, first, _ = chat
    other = tab.send("elsewhere")["user_message"]["id"]
    value = {
        "not a uuid": "nope",
        "unknown": str(uuid.uuid4()),
        "other conversation": other,
        "a number": 5,
        "a list": [first["user_message"]["id"]],
        "a NUL": first["user_message"]["id"][:-1] + "\x00",
        "huge": "f" * 100_000,
    }.get(which)
    body = {} if which == "missing" else {"message_id": value}
    leaf = Conversation.objects.get(pk=cid).current_leaf_id
    response = tab.post(f"/api/conversations/{cid}/branch", json=body)
    assert response.status_code == 400 and response.json()["code"] == "invalid", response.text
    assert Conversation.objects.get(pk=cid).current_leaf_id == leaf


@pytest.mark.parametrize("which", ["a question", "not a uuid", "other conversation", "unknown"])
def test_a_bad_message_id_for_regenerate_answers_400_and_stores_nothing(tab, chat, which):
    cid, first, _ = chat
    other = tab.send("elsewhere")["assistant_message"]["id"]
    value = {
        "a question": first["user_message"]["id"],
        "not a uuid": "x",
        "other conversation": other,
        "unknown": str(uuid.uuid4()),
    }[which]
    before = Message.objects.filter(conversation_id=cid).count()
    response = tab.post(f"/api/conversations/{cid}/regenerate", json={"message_id": value})
    assert response.status_code == 400 and response.json()["code"] == "invalid", response.text
    assert Message.objects.filter(conversation_id=cid).count() == before


def test_an_edit_of_another_conversations_message_answers_400(tab, chat):
    cid, _, _ = chat
    other = tab.send("elsewhere")["user_message"]["id"]
    response = tab.post(f"/api/conversations/{cid}/messages", json={"content": "x", "edit": other})
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert Message.objects.filter(conversation_id=cid).count() == 4


def test_branch_of_someone_elses_conversation_answers_404_and_needs_csrf(tab, new_tab, chat):
    cid, first, _ = chat
    other = new_tab()
    body = {"message_id": first["user_message"]["id"]}
    response = other.post(f"/api/conversations/{cid}/branch", json=body)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    regenerate = other.post(
        f"/api/conversations/{cid}/regenerate", json={"message_id": first["assistant_message"]["id"]}
    )
    assert regenerate.status_code == 404
    no_token = tab.http.post(f"/api/conversations/{cid}/branch", json=body)
    assert no_token.status_code == 403 and no_token.json()["code"] == "csrf"
    cross = tab.post(
        f"/api/conversations/{cid}/branch", json=body, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert tab.http.get(f"/api/conversations/{cid}/branch").status_code == 405


def test_a_streaming_reply_goes_on_across_a_branch_switch(tab, chat):
    cid, first, second = chat
    steps = script({"say": "partial"}, {"gate": "switch-away"}, {"say": " and the end"})
    running = tab.post(
        f"/api/conversations/{cid}/messages", json={"content": steps, "edit": second["user_message"]["id"]}
    ).json()
    assert text_of(tab.stream(running["assistant_message"]["id"], limit=1)) == "partial"
    switched = tab.post(f"/api/conversations/{cid}/branch", json={"message_id": second["user_message"]["id"]})
    assert switched.status_code == 200
    assert [m["content"] for m in switched.json()["messages"]][-1] == "two"
    gate("switch-away").set()
    done = finished(tab, running)
    assert (done["status"], done["content"]) == ("complete", "partial and the end")
    assert steps not in CLOSED
    assert shown(tab, cid)[-1] == "two"  # the switch stands


def test_context_reading_over_a_branched_conversation_sends_exactly_the_branch(db):
    """Many branches interleaved in time: the reader keeps exactly the chain from the leaf."""
    conversation = Conversation.objects.create(visitor="v", model="demo")
    start = timezone.now() - timedelta(days=1)
    rows, parent, at = [], None, start
    chain = []
    for i in range(300):  # the branch, with a dead-end sibling beside every message
        at += timedelta(seconds=1)
        role = "user" if i % 2 == 0 else "assistant"
        kept = Message(
            conversation=conversation, role=role, content=f"kept {i}", created_at=at, parent_id=parent
        )
        other = Message(
            conversation=conversation, role=role, content=f"other {i}", created_at=at, parent_id=parent
        )
        rows += [kept, other]
        chain.append(Turn(role, kept.content))
        parent = kept.pk
    for j in range(100):  # newer messages of another branch, after the leaf
        at += timedelta(seconds=1)
        rows.append(
            Message(
                conversation=conversation,
                role="user",
                content=f"later {j}",
                created_at=at,
                parent_id=rows[1].pk,
            )
        )
    Message.objects.bulk_create(rows)
    assert list(turns_newest_first(conversation.pk, parent)) == chain[::-1]
    seen: dict = {}
    assert next(turns_newest_first(conversation.pk, rows[4].pk, seen=seen)) == chain[2]
    assert seen["leaf"][0] == rows[4].pk


# --- export, import and the admin's delete keep the tree -------------------------------------


def tree_of(conversation_id) -> tuple[dict, object]:
    parents = dict(Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id"))
    return parents, Conversation.objects.get(pk=conversation_id).current_leaf_id


def branched(db) -> Conversation:
    """u1 - a1 - u2 - a2, with u2' (an edit of u2) and its reply a2' current."""
    from tests.test_admin import make

    conversation = make("Branched", "u1", "a1", "u2", "a2")
    a1 = Message.objects.get(conversation=conversation, content="a1")
    at = Message.objects.get(conversation=conversation, content="a2").created_at
    u2b = Message.objects.create(
        conversation=conversation, role="user", content="u2'", parent=a1, created_at=at + timedelta(seconds=1)
    )
    a2b = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="a2'",
        parent=u2b,
        created_at=at + timedelta(seconds=2),
    )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=a2b)
    return conversation


def test_export_then_import_keeps_parents_and_the_current_leaf(db):
    conversation = branched(db)
    before = tree_of(conversation.pk)
    data = history.conversations_export(Conversation.objects.filter(pk=conversation.pk))
    assert data["version"] == 2
    record = data["conversations"][0]
    assert record["current_leaf"] == str(before[1])
    u2 = next(m for m in record["messages"] if m["content"] == "u2")
    assert len(u2["sibling_ids"]) == 2
    Conversation.objects.all().delete()
    history_import.conversations_import(json.loads(json.dumps(data)))
    assert tree_of(conversation.pk) == before


def test_a_version_1_import_becomes_a_chain(db):
    conversation = branched(db)
    data = history.conversations_export(Conversation.objects.filter(pk=conversation.pk))
    Conversation.objects.all().delete()
    data["version"] = 1
    for record in data["conversations"]:
        record.pop("current_leaf")
        for message in record["messages"]:
            message.pop("parent_id"), message.pop("sibling_ids")
    history_import.conversations_import(data)
    ordered = list(Message.objects.filter(conversation_id=conversation.pk).order_by("created_at"))
    assert [m.parent_id for m in ordered] == [None, *(m.pk for m in ordered[:-1])]
    assert Conversation.objects.get(pk=conversation.pk).current_leaf_id == ordered[-1].pk


@pytest.mark.parametrize("problem", ["elsewhere", "younger", "not a uuid", "leaf"])
def test_an_import_with_a_broken_tree_is_refused(db, problem):
    conversation = branched(db)
    other = make_other()
    data = history.conversations_export(Conversation.objects.filter(pk=conversation.pk))
    Conversation.objects.filter(pk=conversation.pk).delete()
    messages = data["conversations"][0]["messages"]
    if problem == "elsewhere":
        messages[1]["parent_id"] = str(other.pk)
    if problem == "younger":
        messages[0]["parent_id"] = messages[-1]["id"]
    if problem == "not a uuid":
        messages[1]["parent_id"] = "x"
    if problem == "leaf":
        data["conversations"][0]["current_leaf"] = str(other.pk)
    with pytest.raises(history_import.ImportRejected):
        history_import.conversations_import(data)
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def make_other() -> Message:
    from tests.test_admin import make

    return Message.objects.filter(conversation=make("Other", "x", "y")).first()


def test_deleting_a_middle_message_in_the_admin_splices_its_children(db):
    conversation = branched(db)
    a1 = Message.objects.get(conversation=conversation, content="a1")
    u1 = Message.objects.get(conversation=conversation, content="u1")
    history.messages_delete(Message.objects.filter(pk=a1.pk))
    parents = {m.content: m.parent_id for m in Message.objects.filter(conversation=conversation)}
    assert parents == {"u1": None, "u2": u1.pk, "a2": parents["a2"], "u2'": u1.pk, "a2'": parents["a2'"]}
    # The current leaf was kept; deleting it falls back to the newest leaf above it.
    a2b = Message.objects.get(conversation=conversation, content="a2'")
    u2b = Message.objects.get(conversation=conversation, content="u2'")
    history.messages_delete(Message.objects.filter(pk__in=[a2b.pk, u2b.pk]))
    leaf = Conversation.objects.get(pk=conversation.pk).current_leaf_id
    assert leaf == Message.objects.get(conversation=conversation, content="a2").pk


def test_the_admin_transcript_shows_the_whole_tree_with_the_current_branch_marked(client, db, staff):  # noqa: F811
    conversation = branched(db)
    page = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert page.status_code == 200
    shown = [(m.content, m.depth, m.on_branch, m.version) for m in page.context["transcript"]]
    assert shown == [
        ("u1", 0, True, ""),
        ("a1", 0, True, ""),
        ("u2", 1, False, "1 of 2"),  # the other branch, under its fork point
        ("a2", 1, False, ""),
        ("u2'", 0, True, "2 of 2"),
        ("a2'", 0, True, ""),
    ]
    html = page.content.decode()
    assert html.count("current branch</span>") == 4 and html.count("other branch</span>") == 2


def test_a_send_follows_the_leaf_even_when_the_new_message_alone_fills_the_budget(tab, chat, settings):
    cid, _, second = chat
    settings.CHAT_CONTEXT_CHARS = 1
    sent = turn(tab, cid, "alone")
    assert sent["user_message"]["parent_id"] == second["assistant_message"]["id"]
    assert PROMPTS[-1].turns == (Turn("user", say("alone")),)
    stored = Message.objects.get(pk=sent["user_message"]["id"])
    assert stored.created_at > Message.objects.get(pk=second["assistant_message"]["id"]).created_at


def test_a_current_leaf_gone_from_the_database_means_the_newest_messages_branch(tab, chat):
    cid, _, second = chat
    Conversation.objects.filter(pk=cid).update(current_leaf_id=uuid.uuid4())
    assert shown(tab, cid) == [say("one"), "one", say("two"), "two"]
    sent = turn(tab, cid, "three")
    assert sent["user_message"]["parent_id"] == second["assistant_message"]["id"]
    assert [t.content for t in PROMPTS[-1].turns] == [say("one"), "one", say("two"), "two", say("three")]


def test_the_admins_delete_of_a_middle_message_splices_the_tree(client, db, staff):  # noqa: F811
    conversation = branched(db)
    u1, a1, u2 = (Message.objects.get(conversation=conversation, content=c) for c in ("u1", "a1", "u2"))
    response = client.post(reverse("admin:chat_message_delete", args=[a1.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Message.objects.filter(pk=a1.pk).exists()
    assert Message.objects.get(pk=u2.pk).parent_id == u1.pk
    assert Message.objects.get(conversation=conversation, content="u2'").parent_id == u1.pk
    page = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert [(m.content, m.depth) for m in page.context["transcript"]] == [
        ("u1", 0),
        ("u2", 1),
        ("a2", 1),
        ("u2'", 0),
        ("a2'", 0),
    ]
