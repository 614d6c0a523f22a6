"""The admin's real views, as a logged-in staff user: list, filters, search, transcript, delete."""

import time
import uuid
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, Message
from chat.replies import generation
from tests.fakes import gate, script

LIST = "/admin/chat/conversation/"
MESSAGES = "/admin/chat/message/"


def change_url(conversation: Conversation) -> str:
    return reverse("admin:chat_conversation_change", args=[conversation.pk])


def make(title: str, *texts: str, user=None, model: str = "demo", status: str = "complete", **fields):
    """A conversation of alternating user/assistant messages, a chain; the last one gets `status`."""
    now = timezone.now()
    conversation = Conversation.objects.create(
        title=title, model=model, user=user, visitor="" if user else "v-" + title, **fields
    )
    parent = None
    for i, text in enumerate(texts):
        assistant = i % 2 == 1
        parent = Message.objects.create(
            parent=parent,
            conversation=conversation,
            role="assistant" if assistant else "user",
            content=text,
            model=model,
            status=status if i == len(texts) - 1 else "complete",
            created_at=now + timedelta(milliseconds=i),
            input_tokens=10 if assistant else None,
            output_tokens=20 if assistant else None,
        )
    if parent is not None:
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
        conversation.current_leaf = parent
    return conversation


def titles(response) -> list[str]:
    return [str(c) for c in response.context["cl"].result_list]


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def test_list_shows_owner_model_counts_and_tokens(client, staff, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    make("Signed in", "hi", "hello", "again", "sure", user=alice, model="script:fake")
    make("Anonymous", "hi", "hello")
    response = client.get(LIST)
    assert response.status_code == 200
    rows = {c.title: c for c in response.context["cl"].result_list}
    assert (rows["Signed in"].n_messages, rows["Signed in"].n_tokens) == (4, 60)
    assert (rows["Anonymous"].n_messages, rows["Anonymous"].n_tokens) == (2, 30)
    page = response.content.decode()
    assert "alice" in page and "anonymous session" in page and "script:fake" in page


def test_filters_by_model_owner_kind_failed_replies_and_date(client, staff, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    make("Mine", "q", "a", user=alice)
    make("Failed", "q", "a", status="error", model="script:fake")
    make("Cut", "q", "a", status="interrupted")
    old = make("Old", "q", "a", status="stopped")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=60))
    assert set(titles(client.get(LIST, {"model": "script:fake"}))) == {"Failed"}
    assert set(titles(client.get(LIST, {"owner": "user"}))) == {"Mine"}
    assert set(titles(client.get(LIST, {"owner": "anonymous"}))) == {"Failed", "Cut", "Old"}
    assert set(titles(client.get(LIST, {"failed": "yes"}))) == {"Failed", "Cut"}
    assert set(titles(client.get(LIST, {"failed": "no"}))) == {"Mine", "Old"}
    since = (timezone.now() - timedelta(days=7)).isoformat()
    recent = client.get(LIST, {"updated_at__gte": since})
    assert set(titles(recent)) == {"Mine", "Failed", "Cut"}


def test_date_hierarchy_lists_only_periods_that_have_conversations(client, staff):
    a, b = make("A", "q"), make("B", "q")
    Conversation.objects.filter(pk=a.pk).update(created_at=timezone.now().replace(year=2023, month=3, day=5))
    Conversation.objects.filter(pk=b.pk).update(created_at=timezone.now().replace(year=2025, month=7, day=9))
    page = client.get(LIST).content.decode()
    assert "created_at__year=2023" in page and "created_at__year=2025" in page
    assert "created_at__year=2024" not in page
    months = client.get(LIST, {"created_at__year": "2025"}).content.decode()
    assert "created_at__month=7" in months and "created_at__month=6" not in months


def test_search_finds_a_word_that_is_only_inside_a_message(client, staff):
    make("Weather", "Is it raining?", "It is: bring the umbrella xylophonic today.")
    make("Cooking", "Soup?", "Yes, soup.")
    response = client.get(LIST, {"q": "xylophonic"})
    assert titles(response) == ["Weather"]
    assert titles(client.get(LIST, {"q": "soup"})) == ["Cooking"]
    # Every word must match (in the title or any message); a conversation appears once.
    assert titles(client.get(LIST, {"q": "weather umbrella"})) == ["Weather"]
    assert titles(client.get(LIST, {"q": "raining"})) == ["Weather"]
    assert titles(client.get(LIST, {"q": "weather soup"})) == []


def test_search_by_id_finds_the_conversation_or_the_one_holding_that_message(client, staff):
    target = make("Target", "q", "a")
    make("Other", "q", "a")
    message = target.messages.last()
    assert titles(client.get(LIST, {"q": str(target.pk)})) == ["Target"]
    assert titles(client.get(LIST, {"q": str(message.pk)})) == ["Target"]


def test_transcript_shows_every_message_escaped_with_status_timings_and_usage(client, staff):
    conversation = make(
        "XSS", "<script>alert('x')</script>", "<b>bold</b> & co", system_prompt="Be <i>terse</i>."
    )
    reply = conversation.messages.last()
    Message.objects.filter(pk=reply.pk).update(
        time_to_first_token_ms=321, duration_ms=4567, finish_reason="stop", error_code=None
    )
    response = client.get(change_url(conversation))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert" not in page and "<b>bold</b>" not in page and "<i>terse" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "Be &lt;i&gt;terse&lt;/i&gt;." in page
    assert "first token 321 ms" in page and "took 4567 ms" in page and "tokens 10 in / 20 out" in page
    assert f'href="/c/{conversation.pk}/"' in page


def test_transcript_shows_errors_and_the_inline_is_read_only(client, staff):
    conversation = make("Broken", "q", "partial", status="error")
    Message.objects.filter(conversation=conversation, status="error").update(
        error="The model is <overloaded>.", error_code="unavailable"
    )
    page = client.get(change_url(conversation)).content.decode()
    assert "[unavailable] The model is &lt;overloaded&gt;." in page
    assert 'name="messages-0-content"' not in page  # no editable message field
    # Saving the conversation (its title is editable) leaves the messages as they were.
    before = list(conversation.messages.values())
    response = client.post(
        change_url(conversation),
        {
            "title": "Renamed",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
            "messages-MIN_NUM_FORMS": "0",
            "messages-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context and response.context["errors"]
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"
    assert list(conversation.messages.values()) == before


def test_message_triage_list_filters_searches_and_links(client, staff):
    conversation = make("Triage", "question", "It failed midway", status="error", model="script:fake")
    make("Fine", "q", "a")
    failed = conversation.messages.get(status="error")
    Message.objects.filter(pk=failed.pk).update(
        error="Upstream said no.", error_code="upstream_error", time_to_first_token_ms=150, duration_ms=900
    )
    response = client.get(MESSAGES, {"status__exact": "error"})
    assert [m.pk for m in response.context["cl"].result_list] == [failed.pk]
    page = response.content.decode()
    assert "[upstream_error] Upstream said no." in page and "150 ms" in page and "900 ms" in page
    assert change_url(conversation) in page and f"/c/{conversation.pk}/" in page
    assert [m.pk for m in client.get(MESSAGES, {"q": "upstream_error"}).context["cl"].result_list] == [
        failed.pk
    ]
    assert client.get(MESSAGES, {"model": "script:fake"}).context["cl"].result_count == 2
    # The change page's "Messages in triage list" link.
    listed = client.get(change_url(conversation)).context["messages_url"]
    assert {m.pk for m in client.get(listed).context["cl"].result_list} == set(
        conversation.messages.values_list("pk", flat=True)
    )
    detail = client.get(reverse("admin:chat_message_change", args=[failed.pk]))
    assert detail.status_code == 200 and "It failed midway" in detail.content.decode()
    assert 'name="content"' not in detail.content.decode()  # a record, not a form


@pytest.mark.parametrize("url", [LIST, MESSAGES, "/admin/"])
def test_non_staff_users_and_visitors_cannot_reach_the_admin(client, django_user_model, url):
    make("Secret", "q", "a")
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(django_user_model.objects.create_user("plain", password="pw"))
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_permissions_is_denied(client, django_user_model):
    conversation = make("Secret", "q", "a")
    client.force_login(django_user_model.objects.create_user("clerk", password="pw", is_staff=True))
    assert client.get(LIST).status_code == 403
    assert client.get(change_url(conversation)).status_code == 403
    assert client.get(reverse("admin:chat_conversation_export", args=[conversation.pk])).status_code == 403


def test_bulk_delete_action_flags_running_replies_then_deletes(client, staff):
    running = make("Running", "q", "partial", status="streaming")
    done = make("Done", "q", "a")
    kept = make("Kept", "q", "a")
    response = client.post(
        LIST, {"action": "delete_selected", "_selected_action": [running.pk, done.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert list(Conversation.objects.values_list("title", flat=True)) == [kept.title]
    assert not Message.objects.filter(conversation_id__in=[running.pk, done.pk]).exists()


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.timeout(30)
def test_live_reply_shows_as_streaming_with_its_latest_saved_text(server, tab, client, staff):
    sent = tab.send(script({"say": "Partial answer so far"}, {"gate": "live"}), model="script:fake")
    conversation = Conversation.objects.get(pk=sent["assistant_message"]["conversation_id"])
    reply_id = sent["assistant_message"]["id"]
    assert wait_until(lambda: Message.objects.get(pk=reply_id).content == "Partial answer so far")
    listed = client.get(LIST).content.decode()
    assert "replying" in listed
    page = client.get(change_url(conversation)).content.decode()
    assert "Partial answer so far" in page and "A reply is still being generated" in page
    assert "chat-status-streaming" in page
    gate("live").set()
    assert tab.wait_finished(reply_id, str(conversation.pk))["status"] == "complete"
    assert "A reply is still being generated" not in client.get(change_url(conversation)).content.decode()


@pytest.mark.timeout(30)
def test_deleting_a_conversation_in_the_admin_stops_its_running_reply(server, tab, client, staff):
    sent = tab.send(script({"say": "Working on it"}, {"gate": "never"}, {"say": "!"}), model="script:fake")
    reply_id = sent["assistant_message"]["id"]
    conversation = Conversation.objects.get(pk=sent["assistant_message"]["conversation_id"])
    assert wait_until(lambda: Message.objects.get(pk=reply_id).content == "Working on it")
    assert reply_id in generation.running_ids()
    delete_url = reverse("admin:chat_conversation_delete", args=[conversation.pk])
    assert client.get(delete_url).status_code == 200  # the confirmation page
    response = client.post(delete_url, {"post": "yes"}, follow=True)
    assert "Asked 1 running reply to stop." in response.content.decode()
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(pk=reply_id).exists()
    # The task generating it, on the server's loop, sees it at its next checkpoint and ends.
    assert wait_until(lambda: reply_id not in generation.running_ids())
    assert not gate("never").is_set()
    # The stream of the deleted reply ends too, rather than waiting for a gate never opened.
    assert tab.get(f"/api/messages/{reply_id}/stream").status_code == 404


def admin_login(server, user) -> httpx.Client:
    """A browser of the real server's admin, signed in as `user` (password `pw`) through its form."""
    browser = httpx.Client(base_url=server.url, timeout=10)
    browser.get("/admin/login/")
    token = browser.cookies["csrftoken"]
    form = {"username": user.get_username(), "password": "pw", "csrfmiddlewaretoken": token}
    assert browser.post("/admin/login/?next=/admin/", data=form).status_code == 302
    return browser


def test_who_is_refused_needs_the_permission_to_view_conversations(server, tab, settings, django_user_model):
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    settings.CHAT_LIMIT_MESSAGES = "1/day"
    cid = tab.conversation(model="script:fake")["id"]
    quick = script({"say": "ok"}, {"finish": "stop"})
    assert tab.post(f"/api/conversations/{cid}/messages", json={"content": quick}).status_code == 201
    assert tab.post(f"/api/conversations/{cid}/messages", json={"content": quick}).status_code == 429
    visitor = Conversation.objects.get(pk=cid).visitor[:12]
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    for user, allowed in ((clerk, False), (viewer, True)):
        browser = admin_login(server, user)
        try:
            response = browser.get("/admin/chat/conversation/limits/")
            assert response.status_code == (200 if allowed else 403), user
            assert (visitor in response.text) is allowed
            assert ("messages per person" in response.text) is allowed
        finally:
            browser.close()
