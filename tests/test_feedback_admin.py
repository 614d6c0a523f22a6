"""Feedback in the admin (chat/feedback_admin.py): the list, its filters, its queries, the CSV."""

import csv
import io
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db.models import F
from django.utils import timezone

from chat.models import Conversation, Feedback, Message
from tests.seed import seed_history
from tests.test_admin_volume import measure

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
    downs = client.get(LIST, {"feedback_rating__exact": "-1"})
    assert listed(downs) == ["Lyon."]
    assert f'href="{LIST}export/?feedback_rating__exact=-1"' in downs.content.decode()  # "Export CSV"
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


def test_admin_export_with_bad_filters_answers_400(client, staff):
    assert client.get(LIST + "export/", {"feedback_at__gte": "not a date"}).status_code == 400


def test_admin_csv_action_exports_the_selected_rows(client, staff):
    one = rated("q1", "a1", 1, comment="first")
    rated("q2", "a2", -1, comment="second")
    response = client.post(LIST, {"action": "export_csv", "_selected_action": [str(one.pk)]})
    rows = read_csv(response)
    assert [r[2] for r in rows[1:]] == ["first"]


def test_admin_feedback_export_needs_staff(client):
    response = client.get(LIST + "export/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.volume
@pytest.mark.timeout(120)
def test_admin_feedback_pages_use_a_fixed_number_of_queries_on_a_large_history(client, staff, monkeypatch):
    """100,000 messages, one reply in ten rated: the list at 20 and 100 a page, its filters and
    the CSV of every rated reply. Run with `-s` for the figures."""
    seed_history(conversations=2_000, messages=50)
    replies = list(Message.objects.filter(role="assistant").values_list("pk", flat=True)[::10])
    Message.objects.filter(pk__in=replies[::2]).update(feedback_rating=1, feedback_at=F("created_at"))
    Message.objects.filter(pk__in=replies[1::2]).update(
        feedback_rating=-1, feedback_at=F("created_at"), feedback_comment="=cmd|' /C calc'!A0"
    )
    figures, counts = [f"{len(replies):,} rated replies of 100,000 messages"], {}
    for size in (20, 100):
        monkeypatch.setattr(admin.site._registry[Feedback], "list_per_page", size)
        counts[size], ms, response = measure(client, LIST)
        assert len(response.context["cl"].result_list) == size
        assert all(m.prompt for m in response.context["cl"].result_list)  # the user message before it
        figures.append(f"feedback list, {size} per page: {counts[size]} queries, {ms:.0f} ms")
    assert counts[20] == counts[100]
    queries, ms, _ = measure(client, LIST, {"feedback_rating__exact": "-1", "model": "demo"})
    figures.append(f"feedback list, thumbs down of one model: {queries} queries, {ms:.0f} ms")
    start = time.perf_counter()
    rows = read_csv(client.get(LIST + "export/"))
    figures.append(
        f"CSV of all {len(rows) - 1:,} rated replies: {(time.perf_counter() - start) * 1000:.0f} ms"
    )
    assert len(rows) - 1 == len(replies)
    assert all(not r[2].startswith("=") for r in rows[1:])
    print("\n" + "\n".join(figures))
