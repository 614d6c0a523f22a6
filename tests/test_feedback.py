"""Feedback on replies (contract v3): the API against a real server, and the admin's list and CSV."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.feedback import COMMENT_CHARS
from chat.models import Conversation, Message
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


# --- the admin -------------------------------------------------------------------------------

LIST = "/admin/chat/feedback/"


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def rated(prompt: str, reply: str, rating: int | None, *, model: str = "demo", comment: str = "", days_ago=0):
    """A conversation of one question and its reply, rated `rating` (or not)."""
    when = timezone.now() - timedelta(days=days_ago)
    conversation = Conversation.objects.create(
        title=prompt[:20], model=model, visitor="v-" + uuid.uuid4().hex
    )
    question = Message.objects.create(conversation=conversation, role="user", content=prompt, created_at=when)
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=reply,
        model=model,
        parent=question,
        created_at=when + timedelta(microseconds=1),
        feedback_rating=rating,
        feedback_comment=comment,
        feedback_at=None if rating is None else when,
    )


def listed(response) -> list[str]:
    return [m.content for m in response.context["cl"].result_list]


def test_admin_lists_rated_replies_with_their_prompt_and_filters_them(client, staff):
    rated("Capital of France?", "Lyon.", -1, model="script:fake", comment="Wrong!", days_ago=3)
    rated("2 + 2?", "4.", 1)
    rated("Unrated question", "Unrated reply", None)
    response = client.get(LIST)
    assert response.status_code == 200
    assert listed(response) == ["4.", "Lyon."]  # newest feedback first, unrated left out
    page = response.content.decode()
    assert "Capital of France?" in page and "Wrong!" in page and "Unrated" not in page
    assert listed(client.get(LIST, {"feedback_rating__exact": "-1"})) == ["Lyon."]
    assert listed(client.get(LIST, {"model": "demo"})) == ["4."]
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    assert listed(client.get(LIST, {"feedback_at__gte": str(midnight)})) == ["4."]  # "Today"


def test_admin_prompt_falls_back_to_the_user_message_before_the_reply(client, staff):
    reply = rated("The question", "The answer", 1)
    Message.objects.filter(pk=reply.pk).update(parent=None)  # a reply stored before branches
    assert "The question" in client.get(LIST).content.decode()


def test_admin_feedback_list_costs_the_same_queries_for_3_or_30_rows(
    client, staff, django_assert_max_num_queries
):
    for i in range(3):
        rated(f"q{i}", f"a{i}", 1)
    with django_assert_max_num_queries(30) as few:
        client.get(LIST)
    for i in range(27):
        rated(f"q{i}", f"a{i}", -1)
    with django_assert_max_num_queries(30) as many:
        client.get(LIST)
    assert len(many.captured_queries) == len(few.captured_queries)


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_admin_exports_what_the_filters_show_as_csv_with_formulas_defused(client, staff):
    bad = rated('=HYPERLINK("http://evil")', "+1 is the answer", -1, comment="@SUM(A1)", model="script:fake")
    rated("fine", "good", 1, comment="-great")
    rows = read_csv(client.get(LIST + "export/", {"feedback_rating__exact": "-1"}))
    assert rows[0][:6] == ["feedback_at", "rating", "comment", "model", "prompt", "reply"]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["rating"] == "-1"  # a number, left as it is
    assert row["comment"] == "'@SUM(A1)"
    assert row["prompt"] == '\'=HYPERLINK("http://evil")'
    assert row["reply"] == "'+1 is the answer"
    assert row["model"] == "script:fake"
    assert row["message_id"] == str(bad.pk) and row["conversation_id"] == str(bad.conversation_id)
    everything = read_csv(client.get(LIST + "export/"))
    assert sorted(r[2] for r in everything[1:]) == ["'-great", "'@SUM(A1)"]


def test_admin_csv_action_exports_the_selected_rows(client, staff):
    one = rated("q1", "a1", 1, comment="first")
    rated("q2", "a2", -1, comment="second")
    response = client.post(LIST, {"action": "export_csv", "_selected_action": [str(one.pk)]})
    rows = read_csv(response)
    assert [r[2] for r in rows[1:]] == ["first"]


def test_admin_feedback_export_needs_staff(client):
    response = client.get(LIST + "export/")
    assert response.status_code == 302 and "/login/" in response["Location"]
