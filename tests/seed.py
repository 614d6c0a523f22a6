"""Conversation history in bulk, for the admin's volume test (and to try the admin by hand)."""

import random
import uuid
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Conversation, Message

MODELS = ["demo", "openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"]
WORDS = [
    "stream",
    "reply",
    "token",
    "model",
    "server",
    "event",
    "django",
    "admin",
    "history",
    "search",
    "index",
    "query",
    "page",
    "tab",
    "python",
    "queue",
    "cache",
    "latency",
    "retry",
    "proxy",
    "browser",
    "session",
    "export",
    "import",
    "prune",
    "audit",
]
COLUMNS = [
    "id",
    "conversation_id",
    "role",
    "content",
    "status",
    "model",
    "created_at",
    "updated_at",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "error",
    "error_code",
    "time_to_first_token_ms",
    "duration_ms",
    "stop_requested",
    "parent_id",
]


def seed_history(
    *,
    conversations: int,
    messages: int,
    users: list[AbstractBaseUser] = (),
    seed: int = 1,
    words: tuple[int, int] = (10, 40),
) -> list[Conversation]:
    """`conversations` conversations of `messages` messages each, spread over about a year.

    One reply in a thousand failed. Texts are `words` (a range) of a small vocabulary, so a search
    for a word outside it (a test's needle) matches only where a test put it. Conversations go
    in with bulk_create; messages with one executemany, as bulk_create would spend some 8 s of
    Python preparing 100,000 rows' values field by field, and the database itself needs 1.
    """
    rnd = random.Random(seed)
    now = timezone.now()
    db_uuid = (lambda u: u) if connection.features.has_native_uuid_field else (lambda u: u.hex)
    db_time = connection.ops.adapt_datetimefield_value
    made: list[Conversation] = []
    rows: list[tuple] = []
    for i in range(conversations):
        started = now - timedelta(days=rnd.randrange(365), seconds=rnd.randrange(86_400))
        owner = {"user": users[i % len(users)]} if users and i % 3 == 0 else {"visitor": uuid.uuid4().hex}
        conversation = Conversation(
            title=f"Conversation {i}: " + " ".join(rnd.sample(WORDS, 3)),
            model=MODELS[i % len(MODELS)],
            created_at=started,
            updated_at=started + timedelta(seconds=30 * messages),
            **owner,
        )
        made.append(conversation)
        parent = None  # a chain (contract v3, "Branches"): each message follows the one before
        for j in range(messages):
            at = db_time(started + timedelta(seconds=30 * j))
            assistant = j % 2 == 1
            failed = assistant and rnd.random() < 0.001
            reply = (
                ("assistant", "error", None, 12, 0, "The model is overloaded.", "unavailable", None, 300)
                if failed
                else ("assistant", "complete", "stop", rnd.randrange(10, 500), rnd.randrange(10, 500))
                + (None, None, rnd.randrange(100, 900), rnd.randrange(1000, 9000))
            )
            role, status, finish, tokens_in, tokens_out, error, code, ttft, duration = (
                reply if assistant else ("user", "complete", None, None, None, None, None, None, None)
            )
            content = " ".join(rnd.choices(WORDS, k=rnd.randrange(*words)))
            pk = uuid.uuid4()
            rows.append(
                (db_uuid(pk), db_uuid(conversation.id), role, content, status, conversation.model)
                + (at, at, finish, tokens_in, tokens_out, error, code, ttft, duration, False, parent)
            )
            parent = db_uuid(pk)
        conversation.current_leaf_id = pk if messages else None
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    with transaction.atomic():
        Conversation.objects.bulk_create(made, batch_size=1000)
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    return made
