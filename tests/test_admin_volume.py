"""The admin on 2,000 conversations of 50 messages: queries per page stay fixed; times are printed.

Run with `-s` to see the figures; `-m "not volume"` leaves this test out.
"""

import statistics
import time

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import Conversation, Message
from tests.seed import seed_history
from tests.test_admin import LIST, MESSAGES, make

CONVERSATIONS, MESSAGES_EACH = 2_000, 50


def measure(client, url: str, params: dict | None = None, runs: int = 3) -> tuple[int, float, object]:
    """(queries, median milliseconds, response) of a page, after one request to warm it up."""
    client.get(url, params)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return len(queries), statistics.median(times), response


@pytest.mark.volume
@pytest.mark.timeout(120)
def test_admin_pages_use_a_fixed_number_of_queries_on_a_large_history(client, django_user_model, monkeypatch):
    staff = django_user_model.objects.create_user("operator", is_staff=True, is_superuser=True)
    client.force_login(staff)
    users = [staff, *(django_user_model.objects.create_user(f"user{i}") for i in range(20))]
    start = time.perf_counter()
    seeded = seed_history(conversations=CONVERSATIONS, messages=MESSAGES_EACH, users=users)
    seed_seconds = time.perf_counter() - start
    assert Message.objects.count() == CONVERSATIONS * MESSAGES_EACH
    figures = [f"seeded {CONVERSATIONS:,} conversations x {MESSAGES_EACH} messages in {seed_seconds:.1f} s"]

    def per_page(model_admin, size: int) -> None:
        monkeypatch.setattr(admin.site._registry[model_admin], "list_per_page", size)

    counts = {}
    for size in (20, 100):
        per_page(Conversation, size)
        per_page(Message, size)
        queries, ms, response = measure(client, LIST)
        assert len(response.context["cl"].result_list) == size
        counts[("conversations", size)] = queries
        figures.append(f"conversation list, {size} per page: {queries} queries, {ms:.0f} ms")
        queries, ms, response = measure(client, MESSAGES)
        assert len(response.context["cl"].result_list) == size
        counts[("messages", size)] = queries
        figures.append(f"message list, {size} per page: {queries} queries, {ms:.0f} ms")
    assert counts[("conversations", 20)] == counts[("conversations", 100)]
    assert counts[("messages", 20)] == counts[("messages", 100)]

    # A change page: its transcript and inline hold every message, in the same queries.
    small = make("Small", "one", "two", "three", "four", "five")
    small_queries, small_ms, _ = measure(client, reverse("admin:chat_conversation_change", args=[small.pk]))
    large = seeded[0]
    queries, ms, response = measure(client, reverse("admin:chat_conversation_change", args=[large.pk]))
    assert len(response.context["transcript"]) == MESSAGES_EACH
    assert queries == small_queries
    figures.append(f"conversation change page, 5 messages: {small_queries} queries, {small_ms:.0f} ms")
    figures.append(f"conversation change page, {MESSAGES_EACH} messages: {queries} queries, {ms:.0f} ms")

    # Search: a word found in one message only, and two common words.
    needle = Message.objects.filter(conversation=seeded[CONVERSATIONS // 2]).order_by("created_at")[7]
    Message.objects.filter(pk=needle.pk).update(content=needle.content + " quokka")
    queries, ms, response = measure(client, LIST, {"q": "quokka"})
    assert [c.pk for c in response.context["cl"].result_list] == [seeded[CONVERSATIONS // 2].pk]
    figures.append(
        f"search, a word in 1 message of {CONVERSATIONS * MESSAGES_EACH:,}: {queries} queries, {ms:.0f} ms"
    )
    queries, ms, response = measure(client, LIST, {"q": "proxy cache"})
    matches = response.context["cl"].result_count
    figures.append(f"search, two common words ({matches:,} matches): {queries} queries, {ms:.0f} ms")
    queries, ms, _ = measure(client, LIST, {"failed": "yes"})
    figures.append(f"filter 'has failed replies': {queries} queries, {ms:.0f} ms")
    queries, ms, _ = measure(client, MESSAGES, {"status__exact": "error"})
    figures.append(f"message list, status error: {queries} queries, {ms:.0f} ms")
    print("\n" + "\n".join(figures))
