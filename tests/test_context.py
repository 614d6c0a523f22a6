"""The conversation sent to a model fits CHAT_CONTEXT_CHARS: oldest turns dropped first."""

import itertools
import random
import re
import time
import uuid
from datetime import timedelta

import httpx
import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import services
from chat.context import FIRST_READ, fit, fit_newest, turns_newest_first
from chat.models import Conversation, Message
from chat.providers import Turn, registry
from tests.fakes import PROMPTS, script
from tests.processes import migrate, server_env
from tests.seed import seed_history
from tests.test_multiprocess import uvicorn
from tests.vendor_servers import VendorServer


def turns(*texts: str) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(texts)]


def test_everything_is_sent_when_it_fits():
    history = turns("a" * 10, "b" * 10, "c" * 10)
    assert fit("s" * 5, history, 35) == tuple(history)


def test_the_oldest_turns_go_first_and_the_kept_history_starts_with_a_user_turn():
    history = turns("q1" * 10, "a1" * 10, "q2" * 10, "a2" * 10, "q3")
    # Room for q3, a2 and q2 (42 characters with the system prompt), not for a1 as well.
    assert fit("sys", history, 50) == tuple(history[2:])
    # Room for q3 and a2 only: a history may not start with the model's turn, so only q3.
    assert fit("sys", history, 30) == tuple(history[4:])


def test_the_new_message_and_the_system_prompt_are_never_dropped():
    history = turns("old", "older reply", "x" * 100)
    assert fit("a long system prompt", history, 10) == (history[-1],)
    assert fit("", [], 10) == ()


def test_the_budget_reaches_the_model(tab, openai_vendor, settings):
    settings.CHAT_CONTEXT_CHARS = 60
    conversation = tab.conversation(system_prompt="Be brief.", model="openai:gpt-test")
    for question in ("first question " * 2, "second question", "third"):
        openai_vendor.play({"say": f"answer to {question[:6]}"})
        sent = tab.send(question, conversation["id"])
        tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    messages = openai_vendor.completions()[-1].body["messages"]
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "answer to second"},
        {"role": "user", "content": "third"},
    ]


# --- a long conversation: read newest first, only as far as the budget reaches ----------------


def test_fit_of_the_newest_first_equals_fit_of_the_whole_history():
    rnd = random.Random(3)
    for _ in range(300):
        history = [
            Turn(rnd.choice(["user", "assistant"]), "x" * rnd.choice([1, 5, 40, 300, 5000]))
            for _ in range(rnd.randrange(1, 40))
        ]
        system = "s" * rnd.choice([0, 10, 200])
        budget = rnd.choice([0, 1, 50, 400, 2000, 10**9, len(system) + sum(len(t.content) for t in history)])
        assert fit_newest(system, reversed(history), budget) == fit(system, history, budget)
    assert fit_newest("s", [], 10) == ()


def test_fit_of_the_newest_first_stops_reading_at_the_first_turn_over_the_budget():
    read: list[Turn] = []

    def newest_first():
        for i in range(10_000):
            read.append(Turn("assistant" if i % 2 else "user", "x" * 10))
            yield read[-1]

    assert len(fit_newest("", newest_first(), 95)) == 9
    assert len(read) == 10  # the ninth fits, the tenth does not: nothing older is read


def turn_rows(count: int, *, same_time: int = 1, huge_at: int | None = None) -> list[tuple]:
    """(role, content, status, time): questions and answers of random lengths, some answers
    empty (a failed reply); `same_time` messages in a row share their time, so that a read's
    LIMIT cuts a group of one time, and a group can be larger than a read."""
    rnd = random.Random(count)
    start = timezone.now() - timedelta(days=1)
    rows = []
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        empty = role == "assistant" and rnd.random() < 0.05
        content = "" if empty else f"{role} {i}: " + "x" * rnd.randrange(0, 400)
        if i == huge_at:
            content = "h" * 30_000
        rows.append(
            (role, content, "error" if empty else "complete", start + timedelta(seconds=i // same_time))
        )
    return rows


def seed_turns(conversation_id, count: int, **kw) -> None:
    """`count` turns as a chain, after the conversation's current leaf, which becomes the last."""
    parent = Conversation.objects.get(pk=conversation_id).current_leaf_id
    rows = []
    for r, c, s, at in turn_rows(count, **kw):
        rows.append(
            Message(
                conversation_id=conversation_id,
                role=r,
                content=c,
                status=s,
                created_at=at,
                updated_at=at,
                parent_id=parent,
            )
        )
        parent = rows[-1].pk
    Message.objects.bulk_create(rows)
    Conversation.objects.filter(pk=conversation_id).update(current_leaf_id=parent)


def stored_history(conversation_id) -> list[Turn]:
    """Every turn with text of the current branch, oldest first: what the prompt was built from
    before it was bounded (the branch followed by parent links from the current leaf)."""
    rows = {
        pk: (parent, role, content)
        for pk, parent, role, content in Message.objects.filter(conversation_id=conversation_id).values_list(
            "id", "parent_id", "role", "content"
        )
    }
    node, turns = Conversation.objects.get(pk=conversation_id).current_leaf_id, []
    while node is not None:
        parent, role, content = rows[node]
        if content and role in ("user", "assistant"):
            turns.append(Turn(role, content))
        node = parent
    return turns[::-1]


def edge_budgets(system: str, turns: list[Turn]) -> dict[str, int]:
    """Budgets that end exactly on a user turn, one short of it, and on a reply (so that the
    user turn before it does not fit and the reply is dropped as well)."""
    newest_first = turns[::-1]
    used = len(system) + len(newest_first[0].content)
    ends: dict[str, int] = {}
    for k, turn in enumerate(newest_first[1:], 1):
        used += len(turn.content)
        if k > 20 and turn.role == "user" and "on a question" not in ends:
            ends["on a question"] = used
            ends["one short of a question"] = used - 1
        if k > 40 and turn.role == "assistant" and newest_first[k + 1].role == "user":
            ends["between a question and its answer"] = used
            break
    return ends


@pytest.mark.parametrize("same_time", [1, 3, 100])
def test_a_long_conversation_sends_the_model_exactly_the_newest_turns_that_fit(tab, settings, same_time):
    system = "Answer in one line."
    conversation = tab.conversation(system_prompt=system, model="script:fake")
    seed_turns(conversation["id"], 400, same_time=same_time, huge_at=150)
    question = script({"say": "ok"})
    cases = [
        "only the new message",
        "everything",
        "on a question",
        "one short of a question",
        "between a question and its answer",
        "up to the huge message",
        "the huge message too",
    ]
    for case in cases:
        history = stored_history(conversation["id"])
        turns = [*history, Turn("user", question)]
        huge = next(i for i, t in enumerate(turns) if len(t.content) == 30_000)
        after_huge = sum(len(t.content) for t in turns[huge + 1 :])
        budget = {
            "only the new message": 1,
            "everything": 10**9,
            "up to the huge message": len(system) + after_huge + 29_999,
            "the huge message too": len(system) + after_huge + 30_000,
            **edge_budgets(system, turns),
        }[case]
        settings.CHAT_CONTEXT_CHARS = budget
        expected = fit(system, turns, budget)
        sent = tab.send(question, conversation["id"])
        tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
        assert PROMPTS[-1].turns == expected, case
        assert PROMPTS[-1].system == system
        assert expected[0].role == "user" and all(t.content for t in expected), case
        if case == "between a question and its answer":
            assert len(system) + sum(len(t.content) for t in expected) < budget  # the answer was dropped
        if case == "everything":
            first = 1 if turns[0].role == "assistant" else 0  # ties put a reply first, maybe
            assert expected == tuple(turns[first:]) and len(expected) > 300


def test_answering_again_and_editing_send_the_newest_turns_that_fit(tab, settings):
    conversation = tab.conversation(model="script:fake")
    seed_turns(conversation["id"], 300)
    sent = tab.send(script({"say": "ok"}), conversation["id"])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    settings.CHAT_CONTEXT_CHARS = 5_000

    history = stored_history(conversation["id"])[:-1]  # without the reply answered again
    again = tab.post(f"/api/conversations/{conversation['id']}/regenerate", json={})
    assert again.status_code == 201, again.text
    tab.wait_finished(again.json()["assistant_message"]["id"], conversation["id"])
    assert PROMPTS[-1].turns == fit("", history, 5_000)

    history = stored_history(conversation["id"])[:-2]  # without the question edited and its reply
    edited = script({"say": "edited"})
    body = {"content": edited, "edit": sent["user_message"]["id"]}
    response = tab.post(f"/api/conversations/{conversation['id']}/messages", json=body)
    assert response.status_code == 201, response.text
    tab.wait_finished(response.json()["assistant_message"]["id"], conversation["id"])
    assert PROMPTS[-1].turns == fit("", [*history, Turn("user", edited)], 5_000)


def test_the_history_is_read_in_a_few_limited_reads_whatever_its_length(db):
    [conversation] = seed_history(conversations=1, messages=3_000)
    history = stored_history(conversation.pk)
    new = Turn("user", "And now?")
    with CaptureQueriesContext(connection) as captured:
        kept = fit_newest("", itertools.chain([new], turns_newest_first(conversation.pk)), 20_000)
    assert kept == fit("", [*history, new], 20_000)
    limits = [int(re.search(r"\bLIMIT (\d+)", q["sql"]).group(1)) for q in captured]
    # Each read asks for twice the rows of the one before: at most twice the rows kept, and one.
    assert sum(limits) <= 2 * (len(kept) + 1) + FIRST_READ < len(history) / 4


def test_the_writer_thread_only_writes_a_send(db):
    conversation = Conversation.objects.create(visitor="v", model="demo")
    seed_turns(conversation.pk, 200)
    with CaptureQueriesContext(connection) as captured:
        services._store_turn(conversation=conversation, content="Hello", info=registry.resolve("demo"))
    statements = [q["sql"].split()[0] for q in captured]
    # One INSERT for the question and its reply (issue 14), the conversation's activity, no read.
    assert statements.count("INSERT") == 1 and "SELECT" not in statements, statements
    assert Message.objects.filter(conversation=conversation).count() == 200 + 2


def test_on_postgresql_the_model_gets_exactly_the_newest_turns_that_fit(postgres_database):
    database, _, _ = postgres_database
    migrate(server_env(database))
    system, budget = "Answer in one line.", 60_000
    with VendorServer("openai") as vendor:
        env = {
            "OPENAI_BASE_URL": f"{vendor.url}/v1",
            "OPENAI_API_KEY": "sk-test",
            "CHAT_MODELS": "openai:gpt-test",
        }
        server = uvicorn(database, CHAT_CONTEXT_CHARS=str(budget), **env)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                http.get("/")
                headers = {"X-CSRFToken": http.cookies["csrftoken"]}
                body = {"title": "Long", "system_prompt": system, "model": "openai:gpt-test"}
                conversation = http.post("/api/conversations", json=body, headers=headers).json()["id"]
                with psycopg.connect(database.replace("postgres://", "postgresql://", 1)) as pg:
                    ids = [uuid.uuid4() for _ in range(400)]  # a chain: each after the one before
                    pg.cursor().executemany(
                        "INSERT INTO chat_message (id, conversation_id, role, content, status, model, "
                        "created_at, updated_at, stop_requested, parent_id) "
                        "VALUES (%s, %s, %s, %s, %s, '', %s, %s, false, %s)",
                        [
                            (ids[i], conversation, r, c, s, at, at, ids[i - 1] if i else None)
                            for i, (r, c, s, at) in enumerate(turn_rows(400))
                        ],
                    )
                    pg.execute(
                        "UPDATE chat_conversation SET current_leaf_id = %s WHERE id = %s",
                        [ids[-1], conversation],
                    )
                    history = pg.execute(
                        "SELECT role, content FROM chat_message WHERE conversation_id = %s AND content <> '' "
                        "ORDER BY created_at",
                        [conversation],
                    ).fetchall()
                sent = http.post(
                    f"/api/conversations/{conversation}/messages",
                    json={"content": "And now?"},
                    headers=headers,
                )
                assert sent.status_code == 201, sent.text
                deadline = time.monotonic() + 10
                while not vendor.completions() and time.monotonic() < deadline:
                    time.sleep(0.02)
        finally:
            server.stop()
    expected = fit(system, [*(Turn(r, c) for r, c in history), Turn("user", "And now?")], budget)
    assert 100 < len(expected) < len(history)  # several reads, and a cut
    messages = vendor.completions()[0].body["messages"]
    assert messages == [{"role": "system", "content": system}] + [
        {"role": t.role, "content": t.content} for t in expected
    ]
