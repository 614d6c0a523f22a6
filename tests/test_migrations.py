"""Migrations that change data: what a site already holds comes through whole."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE_BRANCHES = [("chat", "0005_fewer_index_writes")]
BRANCHES = [("chat", "0006_branches_feedback_sharing")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def latest_schema_after():
    """The test database back at the newest migrations, whatever a test migrated it to."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_existing_conversations_become_chains_without_losing_a_row():
    apps = migrate(BEFORE_BRANCHES)
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    now = timezone.now()
    chats = [Conversation.objects.create(model="demo", visitor=f"v{n}") for n in range(3)]
    empty = Conversation.objects.create(model="demo", visitor="empty")
    expected = {}
    for n, chat in enumerate(chats):
        ids = []
        for i in range(5 + n):
            # Two messages of the third conversation share a time: the id decides between them.
            at = now + timedelta(seconds=i if (n, i) != (2, 3) else 2)
            role = "user" if i % 2 == 0 else "assistant"
            ids.append(
                Message.objects.create(conversation=chat, role=role, content=f"{n}.{i}", created_at=at).pk
            )
        if n == 2:  # the two of one time, in the order the migration must pick: by id
            ids[2:4] = sorted(ids[2:4])
        expected[chat.pk] = ids
    total = Message.objects.count()

    apps = migrate(BRANCHES)
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    assert Message.objects.count() == total
    for chat_id, ids in expected.items():
        parents = dict(Message.objects.filter(conversation_id=chat_id).values_list("id", "parent_id"))
        assert parents == {pk: (ids[i - 1] if i else None) for i, pk in enumerate(ids)}
        assert Conversation.objects.get(pk=chat_id).current_leaf_id == ids[-1]
    assert Conversation.objects.get(pk=empty.pk).current_leaf_id is None
