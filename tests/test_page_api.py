"""The API extensions the page uses (docs/API-extensions.md): rename, answer again, edit the
last message, and titles written by the model. Against the real server."""

import time

import pytest

from chat import titles as chat_titles
from chat.models import Conversation, Message
from chat.providers import Turn
from chat.titles import TITLE_INSTRUCTIONS, title_clean, title_from
from tests.fakes import CLOSED, PROMPTS, gate, script
from tests.sse_client import events, text_of


def title_prompts(since: int) -> list:
    return [p for p in PROMPTS[since:] if p.system == TITLE_INSTRUCTIONS]


def wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def finished(tab, sent: dict) -> dict:
    reply = sent["assistant_message"]
    return tab.wait_finished(reply["id"], reply["conversation_id"])


# --- rename ------------------------------------------------------------------------------------


def test_rename_sets_the_title_and_keeps_the_conversations_place(tab):
    older = tab.conversation(title="Older")
    newer = tab.conversation(title="Newer")
    response = tab.http.patch(
        f"/api/conversations/{older['id']}", json={"title": "  Trip   to Lisbon "}, headers=tab.csrf
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Trip to Lisbon"
    assert set(response.json()) == {"id", "title", "model", "system_prompt", "created_at", "updated_at"}
    assert Conversation.objects.get(pk=older["id"]).title == "Trip to Lisbon"
    listed = tab.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [newer["id"], older["id"]]


@pytest.mark.parametrize(("body", "status"), [({}, 400), ({"title": "   "}, 400), ({"title": 3}, 400)])
def test_rename_refuses_a_missing_or_empty_title(tab, body, status):
    conversation = tab.conversation(title="Kept")
    response = tab.http.patch(f"/api/conversations/{conversation['id']}", json=body, headers=tab.csrf)
    assert response.status_code == status and response.json()["code"] == "invalid"
    assert Conversation.objects.get(pk=conversation["id"]).title == "Kept"


def test_rename_needs_csrf_and_ownership(tab, new_tab):
    conversation = tab.conversation(title="Mine")
    no_token = tab.http.patch(f"/api/conversations/{conversation['id']}", json={"title": "x"})
    assert no_token.status_code == 403 and no_token.json()["code"] == "csrf"
    other = new_tab()
    theirs = other.http.patch(
        f"/api/conversations/{conversation['id']}", json={"title": "x"}, headers=other.csrf
    )
    assert theirs.status_code == 404
    assert Conversation.objects.get(pk=conversation["id"]).title == "Mine"


# --- answer again ------------------------------------------------------------------------------


def test_regenerate_replaces_the_last_reply_with_a_new_one(tab):
    conversation = tab.conversation(model="script:fake")
    sent = tab.send(script({"say": "first answer"}), conversation["id"])
    finished(tab, sent)
    again = tab.post(f"/api/conversations/{conversation['id']}/regenerate")
    assert again.status_code == 201, again.text
    body = again.json()
    assert body["user_message"]["id"] == sent["user_message"]["id"]
    assert body["assistant_message"]["id"] != sent["assistant_message"]["id"]
    assert body["assistant_message"]["status"] == "streaming"
    assert body["stream_url"] == f"/api/messages/{body['assistant_message']['id']}/stream"
    done = finished(tab, body)
    assert (done["status"], done["content"]) == ("complete", "first answer")
    messages = tab.get(f"/api/conversations/{conversation['id']}").json()["messages"]
    assert [(m["role"], m["id"]) for m in messages] == [
        ("user", sent["user_message"]["id"]),
        ("assistant", body["assistant_message"]["id"]),
    ]
    assert [t.role for t in PROMPTS[-1].turns] == ["user"]  # the old reply is not in the prompt


def test_regenerate_beside_a_reply_still_running_lets_it_go_on_and_can_stream(tab):
    """Contract v3: regenerate adds a sibling; a reply still being generated goes on."""
    conversation = tab.conversation(model="script:fake")
    steps = script({"say": "partial"}, {"gate": "regenerate-beside"}, {"say": " end"})
    sent = tab.send(steps, conversation["id"])
    assert text_of(tab.stream(sent["assistant_message"]["id"], limit=1)) == "partial"
    with tab.http.stream(
        "POST",
        f"/api/conversations/{conversation['id']}/regenerate",
        json={},
        headers={**tab.csrf, "Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        received = []
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event == "message":
                break
    assert text_of(received) == "partial"
    assert steps not in CLOSED  # the first run goes on
    gate("regenerate-beside").set()
    assert finished(tab, sent)["content"] == "partial end"
    assert Message.objects.filter(conversation_id=conversation["id"], role="assistant").count() == 2


def test_regenerate_without_a_message_answers_400(tab, new_tab):
    conversation = tab.conversation()
    response = tab.post(f"/api/conversations/{conversation['id']}/regenerate")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert new_tab().post(f"/api/conversations/{conversation['id']}/regenerate").status_code == 404


# --- edit and resend -----------------------------------------------------------------------------


def test_edit_of_the_last_message_shows_its_new_version_and_reply(tab):
    conversation = tab.conversation(model="script:fake")
    first = tab.send(script({"say": "one"}), conversation["id"])
    finished(tab, first)
    second = tab.send(script({"say": "two"}), conversation["id"])
    finished(tab, second)
    edited = tab.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": script({"say": "three"}), "edit": second["user_message"]["id"]},
    )
    assert edited.status_code == 201, edited.text
    finished(tab, edited.json())
    messages = tab.get(f"/api/conversations/{conversation['id']}").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", script({"say": "one"})),
        ("assistant", "one"),
        ("user", script({"say": "three"})),
        ("assistant", "three"),
    ]
    assert [t.content for t in PROMPTS[-1].turns] == [script({"say": "one"}), "one", script({"say": "three"})]


@pytest.mark.parametrize("which", ["unknown", "empty", "a reply", "not a uuid"])
def test_edit_of_anything_but_a_user_message_of_the_conversation_changes_nothing(tab, which):
    conversation = tab.conversation(model="script:fake")
    first = tab.send(script({"say": "one"}), conversation["id"])
    finished(tab, first)
    finished(tab, tab.send(script({"say": "two"}), conversation["id"]))
    body = {"content": "new", "edit": first["user_message"]["id"]}
    if which == "unknown":
        body["edit"] = "00000000-0000-0000-0000-000000000000"
    if which == "empty":
        body["content"] = "  "
    if which == "a reply":
        body["edit"] = first["assistant_message"]["id"]
    if which == "not a uuid":
        body["edit"] = "not-a-uuid"
    response = tab.post(f"/api/conversations/{conversation['id']}/messages", json=body)
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert Message.objects.filter(conversation_id=conversation["id"]).count() == 4


# --- titles --------------------------------------------------------------------------------------


@pytest.fixture
def titles(settings):
    settings.CHAT_TITLE_BY_MODEL = True


def test_a_real_model_improves_the_title_in_the_background(tab, titles):
    since = len(PROMPTS)
    steps = script({"gate": "title"}, {"say": "Lisbon trip ideas"})
    conversation = tab.conversation(model="script:fake")
    sent = tab.send(steps, conversation["id"])  # answered while the model has said nothing yet
    assert title_prompts(since) == []  # asked only once the reply is complete
    assert sent["assistant_message"]["status"] == "streaming"
    assert tab.get(f"/api/conversations/{conversation['id']}").json()["title"] == title_from(steps)
    gate("title").set()
    wait_until(lambda: Conversation.objects.get(pk=conversation["id"]).title == "Lisbon trip ideas")
    assert [p.turns for p in title_prompts(since)] == [(Turn(role="user", content=steps),)]
    assert finished(tab, sent)["content"] == "Lisbon trip ideas"


def test_a_rename_before_the_model_answers_wins(tab, titles):
    since = len(PROMPTS)
    conversation = tab.conversation(model="script:fake")
    sent = tab.send(script({"gate": "late"}, {"say": "Model title"}), conversation["id"])
    renamed = tab.http.patch(
        f"/api/conversations/{conversation['id']}", json={"title": "Mine"}, headers=tab.csrf
    )
    assert renamed.status_code == 200
    gate("late").set()
    finished(tab, sent)
    wait_until(lambda: title_prompts(since) and not chat_titles.title_tasks())  # asked, and done
    assert Conversation.objects.get(pk=conversation["id"]).title == "Mine"


def test_the_demo_model_keeps_the_first_messages_title(tab, titles):
    question = "  How do   I stream replies from Django to a browser page without websockets?  "
    sent = tab.send(question)
    finished(tab, sent)
    title = tab.get(f"/api/conversations/{sent['assistant_message']['conversation_id']}").json()["title"]
    assert title == title_from(question)


def test_no_title_is_asked_of_a_model_whose_reply_failed(tab, titles):
    since = len(PROMPTS)
    steps = script({"fail": "No."})
    sent = tab.send(steps, model="script:fake")
    finished(tab, sent)
    wait_until(lambda: not chat_titles.title_tasks())
    assert title_prompts(since) == []
    assert Conversation.objects.get(pk=sent["assistant_message"]["conversation_id"]).title == title_from(
        steps
    )


def test_a_failing_title_request_keeps_the_first_messages_title(tab, titles):
    since = len(PROMPTS)
    steps = script({"say": "answered"}, {"fail": "No.", "if_system": True})  # the title request fails
    sent = tab.send(steps, model="script:fake")
    wait_until(lambda: title_prompts(since) and not chat_titles.title_tasks())
    assert finished(tab, sent)["status"] == "complete"
    assert Conversation.objects.get(pk=sent["assistant_message"]["conversation_id"]).title == title_from(
        steps
    )


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Lisbon trip ideas", "Lisbon trip ideas"),
        ('"Lisbon Trip Ideas."\n', "Lisbon Trip Ideas"),
        ("Title: **Planning Lisbon**", "Planning Lisbon"),
        ("\n\n# Streaming in Django\nMore text", "Streaming in Django"),
        ("“Quoted”", "Quoted"),
        ("", ""),
    ],
)
def test_title_clean(answer, title):
    assert title_clean(answer) == title
