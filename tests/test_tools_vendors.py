"""Reasoning and tool calls against loopback servers speaking each vendor's wire format (issue 12).

The tools are real functions of this module, given in CHAT_TOOLS by their dotted paths.
"""

import asyncio
import json
import threading

import pytest

from chat.tools import ToolContext
from tests.steps_client import follow

RELEASE = threading.Event()  # lets `waiting_tool` return; set by the test that stops it


def fruit_price(name: str, count: int = 1) -> dict:
    """The price of some fruit at the market.

    Args:
        name: the fruit
        count: how many
    """
    return {"fruit": name, "total": {"apple": 3, "pear": 5}[name] * count}


def broken_tool(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"no luck with {reason}")


async def slow_tool() -> str:
    """Takes far too long."""
    await asyncio.sleep(30)
    return "late"


async def waiting_tool() -> str:
    """Waits until the test lets it go."""
    while not RELEASE.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test
        await asyncio.sleep(0.01)
    return "released"


def whose(context: ToolContext) -> dict:
    """Who the conversation belongs to."""
    return {"user_id": context.user_id, "visitor": context.visitor, "conversation": context.conversation_id}


VENDORS = {
    "openai": ("openai_vendor", "openai:gpt-test", "tool_calls"),
    "anthropic": ("anthropic_vendor", "anthropic:claude-test", "tool_use"),
}


@pytest.fixture(params=list(VENDORS))
def vendor(request, settings):
    fixture, model, tool_finish = VENDORS[request.param]
    server = request.getfixturevalue(fixture)
    settings.CHAT_MODEL = model
    return request.param, server, model, tool_finish


def _send(tab, model, text="hi"):
    sent = tab.send(text, model=model)
    reply = sent["assistant_message"]
    received = follow(tab.http, reply["id"])
    return received, tab.wait_finished(reply["id"], reply["conversation_id"])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_openai_compatible_reasoning_is_streamed_and_stored(tab, openai_vendor, field):
    openai_vendor.play(
        {"reason": "Two", "field": field}, {"reason": " plus two.", "field": field}, {"say": "4"}
    )
    received, message = _send(tab, "openai:gpt-test", "2+2?")
    assert "".join(e.json["text"] for e in received if e.event == "reasoning") == "Two plus two."
    states = [e.json["state"] for e in received if e.event == "status"]
    assert [state for state in states if state != "thinking"] == ["reasoning", "writing"]  # thinking: if live
    assert message["reasoning"] == "Two plus two." and message["content"] == "4"
    assert message["steps"][0]["type"] == "reasoning" and message["steps"][0]["text"] == "Two plus two."
    assert "tools" not in openai_vendor.completions()[-1].body  # no CHAT_TOOLS: nothing offered


def test_anthropic_thinking_blocks_are_streamed_and_stored(tab, anthropic_vendor, settings):
    settings.CHAT_ANTHROPIC_THINKING = 2048
    anthropic_vendor.play({"reason": "Hmm, "}, {"reason": "a greeting."}, {"say": "Hello!"})
    received, message = _send(tab, "anthropic:claude-test")
    assert [e.json["text"] for e in received if e.event == "reasoning"] in (
        ["Hmm, ", "a greeting."],
        ["Hmm, a greeting."],
    )
    assert message["reasoning"] == "Hmm, a greeting." and message["content"] == "Hello!"
    body = anthropic_vendor.completions()[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_anthropic_thinking_is_off_by_default_and_kept_under_the_limit(tab, anthropic_vendor, settings):
    _send(tab, "anthropic:claude-test")
    assert "thinking" not in anthropic_vendor.completions()[-1].body
    settings.CHAT_ANTHROPIC_THINKING = 50_000
    settings.CHAT_MAX_OUTPUT_TOKENS = 4096
    _send(tab, "anthropic:claude-test")
    assert anthropic_vendor.completions()[-1].body["thinking"]["budget_tokens"] == 4095


def test_a_two_round_tool_call_with_streamed_arguments(tab, vendor, settings):
    name, server, model, tool_finish = vendor
    settings.CHAT_TOOLS = "tests.test_tools_vendors.fruit_price, tests.test_tools_vendors.whose"
    server.play(
        {"reason": "I need the price."},
        {"say": "Let me check. "},
        {"call": "fruit_price", "id": "call_7", "args": ['{"na', 'me": "ap', 'ple", "cou', 'nt": 4}']},
        {"finish": tool_finish, "usage": [10, 6]},
    )
    server.play(
        {"say": "Four apples cost 12."},
        {"finish": "stop" if name == "openai" else "end_turn", "usage": [30, 5]},
    )
    received, message = _send(tab, model, "price of 4 apples?")
    kinds = [e.event for e in received if e.event not in ("status", "retry", "start")]
    assert kinds[0] == "reasoning" and kinds[-1] == "done"
    assert [k for k in kinds if k.startswith("tool")] == ["tool_call", "tool_result"]
    call = next(e.json for e in received if e.event == "tool_call")
    result = next(e.json for e in received if e.event == "tool_result")
    assert call == {"id": "call_7", "name": "fruit_price", "arguments": {"name": "apple", "count": 4}}
    assert result["result"] == {"fruit": "apple", "total": 12} and result["error"] is None
    assert message["content"] == "Let me check. Four apples cost 12."
    assert message["usage"] == {"input_tokens": 40, "output_tokens": 11}
    assert [s["type"] for s in message["steps"]] == ["reasoning", "tool"]
    tool_step = message["steps"][1]
    assert tool_step["offset"] == len("Let me check. ") and tool_step["arguments"] == {
        "name": "apple",
        "count": 4,
    }
    first, second = server.completions()[-2:]
    _check_tools_offered(name, first.body)
    _check_results_sent_back(name, second.body)


def _check_tools_offered(vendor: str, body: dict) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "the fruit"},
            "count": {"type": "integer", "description": "how many", "default": 1},
        },
        "required": ["name"],
    }
    tools = {(t["function"] if vendor == "openai" else t)["name"]: t for t in body["tools"]}
    assert set(tools) == {"fruit_price", "whose"}
    if vendor == "openai":
        assert tools["fruit_price"]["function"]["parameters"] == schema
        assert tools["fruit_price"]["function"]["description"] == "The price of some fruit at the market."
        assert tools["whose"]["function"]["parameters"]["properties"] == {}  # the context is not the model's
    else:
        assert tools["fruit_price"]["input_schema"] == schema
        assert body["tool_choice"] == {"type": "auto"}


def _check_results_sent_back(vendor: str, body: dict) -> None:
    if vendor == "openai":
        assistant, tool = body["messages"][-2:]
        assert assistant["role"] == "assistant" and assistant["content"] == "Let me check. "
        assert assistant["tool_calls"] == [
            {
                "id": "call_7",
                "type": "function",
                "function": {"name": "fruit_price", "arguments": '{"name": "apple", "count": 4}'},
            }
        ]
        assert tool == {
            "role": "tool",
            "tool_call_id": "call_7",
            "content": '{"fruit": "apple", "total": 12}',
        }
        assert all("reasoning" not in m and "reasoning_content" not in m for m in body["messages"])
    else:
        assistant, results = body["messages"][-2:]
        assert assistant == {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I need the price.", "signature": "sig-1"},
                {"type": "text", "text": "Let me check. "},
                {
                    "type": "tool_use",
                    "id": "call_7",
                    "name": "fruit_price",
                    "input": {"name": "apple", "count": 4},
                },
            ],
        }
        assert results == {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_7", "content": '{"fruit": "apple", "total": 12}'}
            ],
        }


def test_a_tool_that_raises_and_one_that_times_out_go_back_as_errors(tab, vendor, settings):
    name, server, model, tool_finish = vendor
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.broken_tool", "tests.test_tools_vendors.slow_tool"]
    settings.CHAT_TOOL_TIMEOUT = 0.2
    server.play(
        {"call": "broken_tool", "id": "c1", "args": ['{"reason": "rain"}']},
        {"call": "slow_tool", "id": "c2", "args": []},
        {"call": "nope", "id": "c3", "args": ["{}"]},
        {"finish": tool_finish},
    )
    server.play({"say": "Sorry, my tools failed."})
    received, message = _send(tab, model)
    assert received[-1].event == "done" and message["status"] == "complete"
    errors = [e.json["error"] for e in received if e.event == "tool_result"]
    assert errors == [
        "The tool broken_tool failed: ValueError: no luck with rain",
        "The tool slow_tool did not answer within 0.2 seconds.",
        "There is no tool named 'nope'.",
    ]
    assert [s["error"] for s in message["steps"]] == errors
    assert message["content"] == "Sorry, my tools failed."
    sent_back = server.completions()[-1].body["messages"]
    if name == "openai":
        assert [m["content"] for m in sent_back[-3:]] == errors
    else:
        blocks = sent_back[-1]["content"]
        assert [(b["content"], b.get("is_error")) for b in blocks] == [(e, True) for e in errors]


def test_a_tool_reads_only_the_current_owners_data(tab, new_tab, openai_vendor, settings):
    settings.CHAT_TOOLS = ["chat.tools.examples.search_my_conversations", "tests.test_tools_vendors.whose"]
    other = new_tab()
    other.send("my secret-apple recipe")  # the demo answers it; another visitor's conversation
    mine = tab.send("my own secret-pear notes")["assistant_message"]
    tab.wait_finished(mine["id"], mine["conversation_id"])
    for _ in range(2):
        openai_vendor.play(
            {"call": "search_my_conversations", "id": "s1", "args": ['{"query": "secret"}']},
            {"call": "whose", "id": "w1", "args": ["{}"]},
            {"finish": "tool_calls"},
        )
        openai_vendor.play({"say": "Done."})
    received, message = _send(tab, "openai:gpt-test", "find my secrets")
    found, owner = [e.json["result"] for e in received if e.event == "tool_result"]
    assert found == [{"id": mine["conversation_id"], "title": "my own secret-pear notes"}]
    assert owner["conversation"] == message["conversation_id"] and owner["user_id"] is None
    received, _ = _send(other, "openai:gpt-test", "find my secrets")
    found, other_owner = [e.json["result"] for e in received if e.event == "tool_result"]
    assert [c["title"] for c in found] == ["my secret-apple recipe"]
    assert other_owner["visitor"] != owner["visitor"]


def test_a_provider_error_in_a_tool_round_ends_the_reply_and_keeps_what_came_before(tab, vendor, settings):
    name, server, model, tool_finish = vendor
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.fruit_price"]
    server.play(
        {"reason": "Price first."},
        {"say": "One moment. "},
        {"call": "fruit_price", "id": "c1", "args": ['{"name": "pear"}']},
        {"finish": tool_finish},
    )
    server.play({"status": 429})
    received, message = _send(tab, model)
    assert received[-1].event == "error" and received[-1].json["code"] == "rate_limited"
    assert message["status"] == "error" and message["content"] == "One moment. "
    assert message["reasoning"] == "Price first."
    assert message["steps"][1]["result"] == {"fruit": "pear", "total": 5}


def test_a_stop_while_a_tool_runs_keeps_its_outcome(tab, openai_vendor, settings):
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.waiting_tool"]
    RELEASE.clear()
    openai_vendor.play({"call": "waiting_tool", "id": "w", "args": []}, {"finish": "tool_calls"})
    reply = tab.send("wait", model="openai:gpt-test")["assistant_message"]
    received = follow(tab.http, reply["id"], stop_after=1)
    assert received[-1].event == "tool_call"
    assert tab.post(f"/api/messages/{reply['id']}/stop").json()["status"] == "stopped"
    RELEASE.set()
    rest = follow(tab.http, reply["id"], received[-1].id)
    result = next(e.json for e in rest if e.event == "tool_result")
    assert result["error"] == "Stopped while this tool was running."
    assert rest[-1].event == "done" and rest[-1].json["status"] == "stopped"
    message = tab.message(reply["id"], reply["conversation_id"])
    assert message["steps"][0]["error"] == result["error"]


def test_the_last_round_asks_for_no_tools(tab, openai_vendor, settings):
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.fruit_price"]
    settings.CHAT_TOOL_ROUNDS = 2
    call = {"call": "fruit_price", "id": "c", "args": ['{"name": "apple"}']}
    openai_vendor.play(call, {"finish": "tool_calls"})
    openai_vendor.play(call, {"finish": "tool_calls"})  # a server that ignores tool_choice
    received, message = _send(tab, "openai:gpt-test")
    first, second = openai_vendor.completions()[-2:]
    assert first.body["tool_choice"] == "auto" and second.body["tool_choice"] == "none"
    assert message["finish_reason"] == "tool_calls" and len(message["steps"]) == 1
    assert json.loads(json.dumps(received[-1].json))["status"] == "complete"
