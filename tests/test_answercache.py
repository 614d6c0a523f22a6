"""Cached answers through the real server (../shared/API.md "Cached answers")."""

import hashlib
import uuid

import pytest

from chat.models import Message
from chat.tools import ToolContext
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


# --- answers built from tools, and what a shared answer must match -------------------------

OPENAI = "openai:gpt-test"


def owner_note(context: ToolContext) -> str:
    """The asker's own private note (a host tool that reads its owner's data)."""
    owner = f"user {context.user_id}" if context.user_id is not None else f"visitor {context.visitor}"
    return "note of " + hashlib.sha256(owner.encode()).hexdigest()[:16]


@pytest.fixture
def tool_cache(settings, openai_vendor):
    """The answer cache on, a tool that reads its owner's data offered to the fake OpenAI server."""
    settings.CHAT_CACHE_TTL = 60
    settings.CHAT_CACHE_PIECE_INTERVAL = 0.001
    settings.CHAT_TOOLS = "tests.test_answercache.owner_note"
    return settings, openai_vendor


def play_tool_answer(vendor) -> None:
    """The model's next reply: it calls owner_note, then answers with what the tool read."""
    vendor.play({"call": "owner_note", "id": "call_note"}, {"finish": "tool_calls"})
    vendor.play({"echo": "tool"})


def unique_question() -> str:
    return f"What does my note say? ({uuid.uuid4().hex[:8]})"


def test_an_answer_built_from_a_tool_is_never_served_to_another_owner(tab, new_tab, tool_cache):
    settings, vendor = tool_cache
    settings.CHAT_CACHE_SCOPE = "global"
    question_text = unique_question()
    play_tool_answer(vendor)
    first = ask(tab, question_text, model=OPENAI)
    assert text_of(first).startswith("note of ") and "cached" not in first[-1].json
    other = new_tab()
    play_tool_answer(vendor)
    received = ask(other, question_text, model=OPENAI)
    assert "cached" not in received[-1].json  # the model was asked again, for this owner
    assert text_of(received).startswith("note of ") and text_of(received) != text_of(first)
    assert len(vendor.completions()) == 4


def test_another_owner_cannot_plant_the_answer_a_tool_would_have_built(tab, new_tab, tool_cache):
    settings, vendor = tool_cache
    settings.CHAT_CACHE_SCOPE = "global"
    question_text = unique_question()
    planter = new_tab()
    play_tool_answer(vendor)
    planted = text_of(ask(planter, question_text, model=OPENAI))
    play_tool_answer(vendor)
    received = ask(tab, question_text, model=OPENAI)
    assert "cached" not in received[-1].json and text_of(received) != planted


def test_an_answer_built_from_a_tool_is_kept_for_its_owner_in_owner_scope(tab, new_tab, tool_cache):
    settings, vendor = tool_cache
    question_text = unique_question()
    play_tool_answer(vendor)
    first = text_of(ask(tab, question_text, model=OPENAI))
    again = ask(tab, question_text, model=OPENAI)
    assert again[-1].json["cached"] is True and text_of(again) == first  # the same owner
    play_tool_answer(vendor)
    assert "cached" not in ask(new_tab(), question_text, model=OPENAI)[-1].json
    assert len(vendor.completions()) == 4


def test_an_answer_that_called_no_tool_is_still_shared_in_global_scope(tab, new_tab, tool_cache):
    settings, vendor = tool_cache
    settings.CHAT_CACHE_SCOPE = "global"
    question_text = f"What is the capital of France? ({uuid.uuid4().hex[:8]})"
    vendor.play({"say": "Paris."})
    ask(tab, question_text, model=OPENAI)
    received = ask(new_tab(), question_text, model=OPENAI)
    assert received[-1].json["cached"] is True and text_of(received) == "Paris."
    assert len(vendor.completions()) == 1


def test_a_shared_answer_needs_the_same_tools_offered(tab, new_tab, settings, model_calls):
    settings.CHAT_CACHE_SCOPE = "global"
    content, _ = question()
    ask(tab, content)
    settings.CHAT_TOOLS = "tests.test_answercache.owner_note"  # offered now: another prompt
    assert "cached" not in ask(new_tab(), content)[-1].json
    assert len(model_calls) == 2


def test_the_same_model_name_at_another_provider_misses(tab, settings, openai_vendor, model_calls):
    settings.CHAT_MODELS = [*settings.CHAT_MODELS, "script:gpt-test"]
    content, answer = question()
    assert text_of(ask(tab, content, model="script:gpt-test")) == answer
    openai_vendor.play({"say": "From the other server."})
    received = ask(tab, content, model=OPENAI)
    assert "cached" not in received[-1].json and text_of(received) == "From the other server."


def test_the_key_covers_everything_a_prompt_sends():
    """Two prompts that differ in anything sent to the model never share an answer."""
    from dataclasses import replace

    from chat.answercache import answer_key
    from chat.providers import Prompt, ToolCall, ToolSpec, Turn
    from chat.providers.limit import limited
    from tests.fakes import ScriptProvider

    base = Prompt(
        model="m",
        system="s",
        turns=(
            Turn("user", "q"),
            Turn("assistant", "a", tool_calls=(ToolCall("c1", "t", "{}"),)),
            Turn("tool", "r", tool_call_id="c1"),
        ),
        tools=(ToolSpec("t", "a tool", {"type": "object"}),),
    )
    variants = [
        replace(base, system="s2"),
        replace(
            base,
            turns=(
                *base.turns[:1],
                replace(base.turns[1], tool_calls=(ToolCall("c1", "t", '{"x": 1}'),)),
                base.turns[2],
            ),
        ),
        replace(base, turns=(*base.turns[:2], replace(base.turns[2], is_error=True))),
        replace(
            base,
            turns=(*base.turns[:1], replace(base.turns[1], replay=[{"type": "thinking"}]), base.turns[2]),
        ),
        replace(base, tools=(ToolSpec("t", "another description", {"type": "object"}),)),
        replace(base, tools=()),
        replace(base, tool_choice="none"),
    ]
    provider = limited(ScriptProvider("m"))
    key = answer_key(provider=provider, prompt=base, scope="global")
    assert answer_key(provider=limited(ScriptProvider("m")), prompt=base, scope="global") == key
    assert answer_key(provider=provider, prompt=base, scope="visitor:x") != key
    keys = {answer_key(provider=provider, prompt=variant, scope="global") for variant in variants}
    assert key not in keys and len(keys) == len(variants)
