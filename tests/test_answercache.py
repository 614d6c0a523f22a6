"""Cached answers through the real server (../shared/API.md "Cached answers")."""

import uuid

import pytest

from chat.models import Message
from tests.fakes import ModelCalls, script
from tests.sse_client import events, last_id, text_of

FAKE = "script:fake"


@pytest.fixture
def model_calls(settings) -> ModelCalls:
    """The fake model's calls in this test, with the answer cache on."""
    settings.FAKE_MODEL_CALLS = calls = ModelCalls()
    settings.CHAT_CACHE_TTL = 60
    settings.CHAT_CACHE_PIECE_INTERVAL = 0.001
    return calls


def question(words: int = 6) -> tuple[str, str]:
    """A script whose answer is unique to this test (the cache outlives tests), and that answer."""
    answer = " ".join(f"word{i}-{uuid.uuid4().hex[:6]}" for i in range(words)) + "."
    return script({"say": answer}, {"finish": "stop", "usage": [5, words]}), answer


def ask(tab, content: str, **conversation) -> list:
    """A new conversation, and the reply to `content` followed to its end (POST that streams)."""
    cid = tab.conversation(**{"model": FAKE, **conversation})["id"]
    return post_stream(tab, cid, content)


def post_stream(tab, cid: str, content: str) -> list:
    received = []
    headers = {**tab.csrf, "Accept": "text/event-stream"}
    with tab.http.stream(
        "POST", f"/api/conversations/{cid}/messages", json={"content": content}, headers=headers
    ) as response:
        assert response.status_code == 200, response.read()
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event in ("done", "error"):
                break
    return received


def states(received: list) -> list[str]:
    return [e.json["state"] for e in received if e.event == "status"]


def test_a_repeated_question_is_streamed_from_the_cache(tab, model_calls):
    content, answer = question(words=20)
    first = ask(tab, content)
    assert text_of(first) == answer and "cached" not in first[-1].json
    assert len(model_calls) == 1

    again = ask(tab, content)
    assert len(model_calls) == 1  # the model was not asked
    assert states(again) == ["cached", "writing"]  # `writing` before the text (issue 12)
    assert len([e for e in again if e.event == "message"]) > 1  # in pieces, not one blob
    assert text_of(again) == answer
    done = again[-1]
    assert done.event == "done" and done.json["cached"] is True and done.json["status"] == "complete"
    assert done.json["finish_reason"] == "stop"
    assert done.json["usage"] == {"input_tokens": 0, "output_tokens": 0}  # it cost nothing
    stored = Message.objects.get(pk=done.json["message_id"])
    assert stored.cached and stored.content == answer and stored.status == "complete"
    cid = str(stored.conversation_id)
    assert tab.message(str(stored.pk), cid)["cached"] is True
    # Replayed later from the database: still marked.
    replay = tab.stream(str(stored.pk))
    assert states(replay) == ["cached", "writing"] and replay[-1].json["cached"] is True


def test_a_cached_answer_is_resumable_midway(tab, settings, model_calls):
    content, answer = question(words=40)
    ask(tab, content)
    settings.CHAT_CACHE_PIECE_INTERVAL = 0.02  # about a second for the whole answer
    cid = tab.conversation(model=FAKE)["id"]
    sent = tab.send(content, cid)
    assert sent["assistant_message"]["cached"] is True
    reply_id = sent["assistant_message"]["id"]
    first = tab.stream(reply_id, limit=2)  # hang up mid-way
    assert states(first) == ["cached", "writing"] and len(text_of(first)) < len(answer)
    rest = tab.stream(reply_id, last_event_id=last_id(first))
    assert text_of(first) + text_of(rest) == answer
    assert rest[-1].json["cached"] is True
    assert len(model_calls) == 1


def test_a_different_system_prompt_model_or_history_misses(tab, settings, model_calls):
    settings.CHAT_MODELS = [*settings.CHAT_MODELS, "script:other"]
    content, answer = question()
    ask(tab, content)
    assert len(model_calls) == 1
    misses = [
        ask(tab, content, system_prompt="Answer in French."),
        ask(tab, content, model="script:other"),
    ]
    cid = tab.conversation(model=FAKE)["id"]
    post_stream(tab, cid, script({"say": "an earlier turn"}, {"finish": "stop"}))
    misses.append(post_stream(tab, cid, content))
    assert len(model_calls) == 5
    for received in misses:
        assert states(received) == ["thinking", "writing"] and "cached" not in received[-1].json
        assert text_of(received) == answer


def test_regenerate_never_uses_the_cache(tab, model_calls):
    content, _ = question()
    ask(tab, content)
    cid = tab.conversation(model=FAKE)["id"]
    assert post_stream(tab, cid, content)[-1].json["cached"] is True
    response = tab.post(f"/api/conversations/{cid}/regenerate", json={})
    assert response.status_code == 201 and response.json()["assistant_message"]["cached"] is False
    received = tab.stream(response.json()["assistant_message"]["id"])
    assert "cached" not in received[-1].json
    assert len(model_calls) == 2


def test_only_complete_answers_are_kept_and_other_visitors_miss_unless_global(
    tab, new_tab, settings, model_calls
):
    cut = script({"say": "cut short"}, {"finish": "length"})
    ask(tab, cut)
    assert "cached" not in ask(tab, cut)[-1].json  # finish_reason `length`: not kept
    content, _ = question()
    ask(tab, content)
    other = new_tab()
    assert "cached" not in ask(other, content)[-1].json  # scope `owner`: only yours
    settings.CHAT_CACHE_SCOPE = "global"
    ask(tab, content)  # kept for everyone now
    assert ask(other, content)[-1].json["cached"] is True
    assert len(model_calls) == 5


def test_a_cached_answer_costs_no_tokens_but_counts_as_a_message(tab, settings, model_calls):
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    content, _ = question()
    ask(tab, content)
    settings.CHAT_QUOTA_TOKENS = "1/day"  # the first answer was before: nothing charged yet
    settings.CHAT_LIMIT_MESSAGES = "1/day"
    assert ask(tab, content)[-1].json["cached"] is True
    cid = tab.conversation(model=FAKE)["id"]
    response = tab.post(f"/api/conversations/{cid}/messages", json={"content": content})
    assert response.status_code == 429 and response.json()["limit"] == "messages"
    settings.CHAT_LIMIT_MESSAGES = "0"
    assert tab.post(f"/api/conversations/{cid}/messages", json={"content": content}).status_code == 201
