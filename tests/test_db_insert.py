"""chat.db.insert: a turn's rows in one statement, stored as the ORM's save() stores them."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import db
from chat.models import Conversation, Message


def stored(model, pk) -> dict:
    """The row as the database has it, column by column."""
    return model.objects.filter(pk=pk).values().get()


def turn(conversation: Conversation, now=None) -> list[Message]:
    now = now or timezone.now()
    return [
        Message(
            conversation=conversation,
            role="user",
            content="Hi — ünïcode ✓",
            model="demo",
            created_at=now,
            updated_at=now,
        ),
        Message(
            conversation=conversation,
            role="assistant",
            status=Message.Status.STREAMING,
            model="demo",
            created_at=now + timedelta(microseconds=1),
            updated_at=now,
            steps=[{"kind": "tool", "name": "current_time"}],
            input_tokens=12,
            error=None,
            stop_requested=True,
        ),
    ]


def test_rows_inserted_read_back_as_the_orms_own(transactional_db):
    user = get_user_model().objects.create_user("ada")
    for owner in ({"user": user}, {"visitor": "v" * 32}):
        by_orm, by_insert = (
            Conversation(title="t", model="demo", **owner),
            Conversation(model="demo", **owner),
        )
        by_insert.title = "t"
        by_orm.save(force_insert=True)
        db.insert([by_insert])
        assert not by_insert._state.adding and by_insert._state.db == "default"
        a, b = stored(Conversation, by_orm.pk), stored(Conversation, by_insert.pk)
        for row in (a, b):
            row.pop("id"), row.pop("created_at"), row.pop("updated_at")  # each its own now
        assert a == b
        now = timezone.now()
        orm_messages, inserted = turn(by_orm, now), turn(by_insert, now)
        Message.objects.bulk_create(orm_messages)
        with CaptureQueriesContext(connection) as queries:
            db.insert(inserted)
        assert len(queries) == 1  # both rows in one INSERT
        for mine, theirs in zip(inserted, orm_messages, strict=True):
            a, b = stored(Message, mine.pk), stored(Message, theirs.pk)
            assert a.pop("conversation_id") == by_insert.pk and b.pop("conversation_id") == by_orm.pk
            a.pop("id"), b.pop("id")
            assert a == b
            assert Message.objects.get(pk=mine.pk).created_at == mine.created_at  # to the microsecond


def test_a_models_save_receivers_still_run(transactional_db):
    """A host project listening to the chat's models keeps hearing each save."""
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    post_save.connect(receiver, sender=Message)
    try:
        conversation = Conversation(model="demo", visitor="v")
        db.insert([conversation])
        messages = turn(conversation)
        db.insert(messages)
    finally:
        post_save.disconnect(receiver, sender=Message)
    assert heard == [(m.pk, True) for m in messages]
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_a_value_that_is_an_expression_goes_through_the_orm(transactional_db):
    conversation = Conversation(model="demo", visitor="v")
    db.insert([conversation])
    message = Message(conversation=conversation, role="user", content="x", model="demo")
    message.reasoning = models.Value("from an expression")
    db.insert([message])
    assert stored(Message, message.pk)["reasoning"] == "from an expression"


def test_a_row_that_exists_is_refused_and_changes_nothing(transactional_db):
    conversation = Conversation(model="demo", visitor="v", title="first")
    db.insert([conversation])
    again = Conversation(pk=conversation.pk, model="demo", visitor="v", title="second")
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        db.insert([again])
    assert stored(Conversation, conversation.pk)["title"] == "first"
