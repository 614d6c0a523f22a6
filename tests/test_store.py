"""What the app stores, a host project hears: its receivers of the chat's models' saves run."""

import pytest
from django.db.models.signals import post_save, pre_save

from chat.models import Conversation, Message


@pytest.fixture
def heard():
    """(signal, model, created) for each save a host project's receivers hear."""
    heard: list[tuple[str, str, bool | None]] = []

    def before(sender, instance, **kwargs):
        heard.append(("pre_save", sender.__name__, None))

    def after(sender, instance, created, **kwargs):
        heard.append(("post_save", sender.__name__, created))

    receivers = [(pre_save, before, Message), (post_save, after, Message), (post_save, after, Conversation)]
    for signal, receiver, model in receivers:
        signal.connect(receiver, sender=model)
    yield heard
    for signal, receiver, model in receivers:
        signal.disconnect(receiver, sender=model)


def test_a_host_projects_save_receivers_hear_a_turn_stored(tab, heard):
    created = tab.post("/api/conversations", json={"content": "hello"})
    assert created.status_code == 201, created.text
    turn = [e for e in heard if e[1] == "Message" or e[2]]
    assert turn[:5] == [
        ("post_save", "Conversation", True),
        ("pre_save", "Message", None),
        ("post_save", "Message", True),
        ("pre_save", "Message", None),
        ("post_save", "Message", True),
    ]
    assert Message.objects.filter(conversation_id=created.json()["id"]).count() == 2


def test_without_receivers_a_turn_is_stored_as_the_orm_stores_it(tab):
    body = tab.post("/api/conversations", json={"content": "hello"}).json()
    message = tab.wait_finished(body["assistant_message"]["id"], body["id"])
    stored = Message.objects.get(pk=body["assistant_message"]["id"])
    assert (stored.status, stored.content) == ("complete", message["content"])
    question = Message.objects.get(pk=body["user_message"]["id"])
    assert (question.role, question.content) == ("user", "hello")
    assert question.created_at < stored.created_at
