"""Feedback on replies (contract v3, chat/feedback.py): the API against a real server."""

import uuid

import pytest

from chat.feedback import COMMENT_CHARS
from chat.models import Message
from tests.fakes import script
from tests.test_api import assert_error


def finished_reply(tab, text: str = "an answer") -> dict:
    sent = tab.send(script({"say": text}), model="script:fake")
    reply = sent["assistant_message"]
    return tab.wait_finished(reply["id"], reply["conversation_id"]) | {"user_id": sent["user_message"]["id"]}


def rate(tab, message_id: str, body) -> object:
    return tab.post(f"/api/messages/{message_id}/feedback", json=body)


def stored(message_id: str) -> tuple:
    m = Message.objects.get(pk=message_id)
    return m.feedback_rating, m.feedback_comment, m.feedback_at


def test_a_reply_is_rated_changed_and_cleared_and_the_comment_is_kept(tab):
    reply = finished_reply(tab)
    assert reply["feedback"] is None
    body = rate(tab, reply["id"], {"rating": -1, "comment": "  Wrong year.  "}).json()
    assert body["id"] == reply["id"] and body["role"] == "assistant"
    assert body["feedback"] == {"rating": -1, "comment": "Wrong year."}
    # A thumb changed without a comment keeps the comment written before.
    assert rate(tab, reply["id"], {"rating": 1}).json()["feedback"] == {"rating": 1, "comment": "Wrong year."}
    assert tab.message(reply["id"], reply["conversation_id"])["feedback"] == {
        "rating": 1,
        "comment": "Wrong year.",
    }
    assert tab.get(f"/api/messages/{reply['id']}").json()["feedback"]["rating"] == 1
    assert rate(tab, reply["id"], {"rating": 1, "comment": None}).json()["feedback"]["comment"] == ""
    cleared = rate(tab, reply["id"], {"rating": 0})
    assert cleared.status_code == 200 and cleared.json()["feedback"] is None
    assert stored(reply["id"]) == (None, "", None)


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 2},
        {"rating": "1"},
        {"rating": True},
        {"rating": False},
        {"rating": None},
        {"rating": 1.0},
        {"rating": -2},
        {},
        {"rating": 1, "comment": 5},
        {"rating": 1, "comment": ["x"]},
        {"rating": -1, "comment": "x" * (COMMENT_CHARS + 1)},
        {"rating": -1, "comment": "a\x00b"},
        [1],
    ],
)
def test_bad_feedback_answers_400_and_changes_nothing(tab, body):
    reply = finished_reply(tab)
    rate(tab, reply["id"], {"rating": 1, "comment": "fine"})
    before = stored(reply["id"])
    assert_error(rate(tab, reply["id"], body), 400, "invalid")
    assert stored(reply["id"]) == before


def test_bad_json_and_an_empty_body_answer_400(tab):
    reply = finished_reply(tab)
    path = f"/api/messages/{reply['id']}/feedback"
    headers = {"Content-Type": "application/json"}
    assert_error(tab.post(path, content=b"{nope", headers=headers), 400, "invalid")
    assert_error(tab.post(path, content=b"", headers=headers), 400, "invalid")
    assert stored(reply["id"])[0] is None


def test_a_user_message_cannot_be_rated(tab):
    reply = finished_reply(tab)
    assert_error(rate(tab, reply["user_id"], {"rating": 1}), 400, "invalid")
    assert stored(reply["user_id"])[0] is None


def test_another_owners_reply_answers_404_and_unknown_ids_too(tab, new_tab):
    reply = finished_reply(tab)
    other = new_tab()
    assert_error(rate(other, reply["id"], {"rating": -1}), 404, "not_found")
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        assert_error(rate(tab, bad, {"rating": 1}), 404, "not_found")
    assert stored(reply["id"])[0] is None


def test_feedback_needs_the_csrf_token_and_only_post(tab):
    reply = finished_reply(tab)
    path = f"/api/messages/{reply['id']}/feedback"
    assert_error(tab.http.post(path, json={"rating": 1}), 403, "csrf")
    assert_error(tab.get(path), 405, "method_not_allowed")
    assert_error(tab.post(path, json={"rating": 1}, headers={"Origin": "https://evil.example"}), 403, "csrf")
    assert stored(reply["id"])[0] is None
