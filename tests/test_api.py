"""The JSON API of ../shared/API.md against a real server: shapes, ownership and every bad input."""

import uuid

import httpx
import pytest

from chat.models import Conversation, Message
from tests.fakes import script


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and len(body["error"]) > 10
    return body


def test_models_lists_the_offered_models_and_the_default(tab):
    body = tab.get("/api/models").json()
    assert body["default"] == "demo"
    assert {"id": "demo", "label": "Demo (offline)", "provider": "demo", "vision": True} in body["models"]
    assert [m["id"] for m in body["models"]] == ["demo", "script:fake"]


def test_models_say_which_take_images(settings, tab):
    """`vision` (an extension, issue 30's leftover): a client knows before sending an image."""
    settings.CHAT_NO_VISION_MODELS = "script:*"
    body = tab.get("/api/models").json()
    assert {m["id"]: m["vision"] for m in body["models"]} == {"demo": True, "script:fake": False}


def test_conversation_create_list_get_delete(tab):
    created = tab.conversation(title="  Trip  ", system_prompt="Be brief.")
    assert created["title"] == "Trip"
    assert created["model"] == "demo"
    assert created["system_prompt"] == "Be brief."
    assert set(created) == {"id", "title", "model", "system_prompt", "created_at", "updated_at"}
    uuid.UUID(created["id"])
    older = tab.conversation()
    tab.send("hello", conversation_id=created["id"])  # newest activity first
    listed = tab.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [created["id"], older["id"]]
    assert "messages" not in listed[0]
    got = tab.get(f"/api/conversations/{created['id']}").json()
    assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
    assert tab.delete(f"/api/conversations/{created['id']}").status_code == 204
    assert tab.get(f"/api/conversations/{created['id']}").status_code == 404
    assert not Message.objects.filter(conversation_id=created["id"]).exists()


def test_send_answers_201_with_both_messages_and_the_stream_url(tab):
    sent = tab.send("What is SSE?")
    user, reply = sent["user_message"], sent["assistant_message"]
    assert user["role"] == "user" and user["content"] == "What is SSE?" and user["status"] == "complete"
    assert reply["role"] == "assistant" and reply["status"] == "streaming" and reply["content"] == ""
    assert sent["stream_url"] == f"/api/messages/{reply['id']}/stream"
    keys = {"id", "conversation_id", "role", "content", "status", "model", "created_at"}
    issue_12 = {"reasoning", "reasoning_ms", "steps"}
    v3 = {"feedback", "parent_id", "sibling_ids", "attachments"}
    assert keys | {"finish_reason", "usage", "error", "cached"} | issue_12 | v3 == set(reply)
    assert reply["parent_id"] == user["id"] and reply["sibling_ids"] == [reply["id"]]
    assert user["parent_id"] is None and user["sibling_ids"] == [user["id"]]
    done = tab.wait_finished(reply["id"], reply["conversation_id"])
    assert done["status"] == "complete"
    assert done["finish_reason"] == "stop"
    assert done["usage"]["output_tokens"] > 10
    assert "What is SSE?" in done["content"]


def test_first_message_sets_the_title(tab):
    conversation = tab.conversation()
    tab.send(
        "  Plan   a trip to Lisbon in May with two children and a small budget please  ", conversation["id"]
    )
    title = tab.get(f"/api/conversations/{conversation['id']}").json()["title"]
    assert title.startswith("Plan a trip to Lisbon") and len(title) <= 60


def test_a_message_may_pick_a_model(tab):
    sent = tab.send(script({"say": "hi"}), model="script:fake")
    assert sent["assistant_message"]["model"] == "script:fake"
    done = tab.wait_finished(sent["assistant_message"]["id"], sent["assistant_message"]["conversation_id"])
    assert done["content"] == "hi"


def test_others_conversations_and_replies_answer_404(tab, new_tab):
    sent = tab.send("mine")
    cid, mid = sent["assistant_message"]["conversation_id"], sent["assistant_message"]["id"]
    other = new_tab()
    assert other.get("/api/conversations").json() == {"conversations": []}
    assert_error(other.get(f"/api/conversations/{cid}"), 404, "not_found")
    assert_error(other.delete(f"/api/conversations/{cid}"), 404, "not_found")
    assert_error(other.post(f"/api/conversations/{cid}/messages", json={"content": "x"}), 404, "not_found")
    assert_error(other.get(f"/api/messages/{mid}/stream"), 404, "not_found")
    assert_error(other.post(f"/api/messages/{mid}/stop"), 404, "not_found")
    assert_error(other.get(f"/api/messages/{mid}"), 404, "not_found")
    assert_error(other.get(f"/api/messages/{sent['user_message']['id']}"), 404, "not_found")
    assert Message.objects.filter(conversation_id=cid).count() == 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid"),
        (b"[1, 2]", 400, "invalid"),
        (b"", 400, "invalid"),
        (b"{}", 400, "invalid"),
        (b'{"content": ""}', 400, "invalid"),
        (b'{"content": "   \\n "}', 400, "invalid"),
        (b'{"content": 5}', 400, "invalid"),
        (b'{"content": "hi", "model": "nope:nothing"}', 400, "invalid"),
        (b'{"content": "hi", "model": 3}', 400, "invalid"),
        (('{"content": "' + "x" * 40_000 + '"}').encode(), 413, "too_large"),
        (('{"content": "hi", "pad": "' + "x" * 300_000 + '"}').encode(), 413, "too_large"),
    ],
)
def test_bad_message_bodies_get_a_json_error_and_change_nothing(tab, body, status, code):
    conversation = tab.conversation()
    response = tab.post(
        f"/api/conversations/{conversation['id']}/messages",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, status, code)
    assert not Message.objects.filter(conversation_id=conversation["id"]).exists()


def test_unknown_model_error_names_the_offered_models(tab):
    body = assert_error(tab.post("/api/conversations", json={"model": "openai:gpt-9"}), 400, "invalid")
    assert "demo" in body["error"]
    assert Conversation.objects.count() == 0


@pytest.mark.parametrize("bad_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_unknown_ids_answer_404(tab, bad_id):
    assert_error(tab.get(f"/api/conversations/{bad_id}"), 404, "not_found")
    assert_error(tab.post(f"/api/conversations/{bad_id}/messages", json={"content": "x"}), 404, "not_found")
    assert_error(tab.get(f"/api/messages/{bad_id}/stream"), 404, "not_found")
    assert_error(tab.post(f"/api/messages/{bad_id}/stop"), 404, "not_found")
    assert_error(tab.get(f"/api/messages/{bad_id}"), 404, "not_found")


def test_one_message_by_its_id_as_in_its_conversation(tab):
    """GET /api/messages/<id> (docs/API-extensions.md, "One message"): the question or the
    reply, in the shape GET /api/conversations/<id> gives it; only GET."""
    sent = tab.send(script({"say": "hello"}), model="script:fake")
    cid = sent["assistant_message"]["conversation_id"]
    tab.wait_finished(sent["assistant_message"]["id"], cid)
    listed = {m["id"]: m for m in tab.get(f"/api/conversations/{cid}").json()["messages"]}
    for key in ("user_message", "assistant_message"):
        mid = sent[key]["id"]
        response = tab.get(f"/api/messages/{mid}")
        assert response.status_code == 200
        assert response.json() == listed[mid]
    assert listed[sent["assistant_message"]["id"]]["content"] == "hello"
    refused = tab.post(f"/api/messages/{sent['user_message']['id']}", json={})
    assert_error(refused, 405, "method_not_allowed")
    assert refused.headers["Allow"] == "GET"
    tab.delete(f"/api/conversations/{cid}")
    assert_error(tab.get(f"/api/messages/{sent['assistant_message']['id']}"), 404, "not_found")


def test_a_user_message_is_not_a_stream(tab):
    sent = tab.send("hi")
    assert_error(tab.get(f"/api/messages/{sent['user_message']['id']}/stream"), 404, "not_found")


def test_unknown_api_path_answers_json_404(tab):
    assert_error(tab.get("/api/nothing-here"), 404, "not_found")


def test_wrong_method_answers_405_with_allow(tab):
    response = tab.post("/api/models", json={})
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


def test_unsafe_request_with_a_session_but_no_csrf_token_answers_403(tab):
    tab.conversation()  # the tab now has a session
    response = tab.http.post("/api/conversations", json={})
    assert_error(response, 403, "csrf")
    assert Conversation.objects.count() == 1


@pytest.mark.parametrize("failure_view", ["chat.views.csrf_failure", "django.views.csrf.csrf_failure"])
def test_the_api_answers_its_json_csrf_error_whatever_the_projects_failure_view(tab, settings, failure_view):
    """A host project keeps Django's CSRF_FAILURE_VIEW (an HTML page): the API still answers
    the contract's JSON."""
    settings.CSRF_FAILURE_VIEW = failure_view
    tab.conversation()
    assert_error(tab.http.post("/api/conversations", json={}), 403, "csrf")


def test_a_form_outside_the_api_gets_djangos_csrf_page_not_json(server):
    """The admin's login form without its token: Django's 403 page, as any Django site gives."""
    with httpx.Client(base_url=server.url) as client:
        client.get("/admin/login/")  # the csrftoken cookie
        response = client.post("/admin/login/", data={"username": "a", "password": "b"})
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "CSRF verification failed" in response.text


def test_a_client_that_loaded_the_page_needs_the_csrf_token_before_it_has_a_session(server):
    with httpx.Client(base_url=server.url) as client:
        client.get("/")  # the csrftoken cookie, no session yet
        assert_error(client.post("/api/conversations", json={}), 403, "csrf")
        assert Conversation.objects.count() == 0
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        assert client.post("/api/conversations", json={}, headers=headers).status_code == 201


def test_a_client_without_cookies_can_start_a_conversation_without_csrf(server):
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/conversations", json={})
        assert response.status_code == 201
        assert "sessionid" in response.cookies
        # The session it got owns the conversation; the token is needed from now on.
        assert client.get(f"/api/conversations/{response.json()['id']}").status_code == 200
        assert_error(client.post("/api/conversations", json={}), 403, "csrf")


def test_create_with_content_sends_the_first_message(tab):
    response = tab.post("/api/conversations", json={"content": "hello there"})
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "hello there"
    assert body["assistant_message"]["status"] == "streaming"


def test_create_with_bad_content_creates_nothing(tab):
    assert_error(tab.post("/api/conversations", json={"content": ""}), 400, "invalid")
    assert Conversation.objects.count() == 0


def test_page_sets_the_csrf_cookie_and_renders(server):
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert '<script type="module"' in response.text
