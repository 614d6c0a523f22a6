"""Reasoning and tool steps through the real server, on the demo model (issue 12)."""

import random

import pytest

from tests.steps_client import content, follow, joined, last_id


@pytest.fixture
def steps(settings):
    settings.CHAT_DEMO_STEPS = True
    return settings


def _reply(tab, text="What day is it?"):
    sent = tab.send(text)
    reply = sent["assistant_message"]
    return reply["id"], reply["conversation_id"]


def test_demo_reasons_calls_its_tool_then_answers(tab, steps):
    steps.CHAT_DEMO_RATE = 200  # followed live, from its start
    mid, cid = _reply(tab)
    received = follow(tab.http, mid)
    kinds = [(e.event, e.json.get("state") if e.event == "status" else None) for e in received]
    statuses = [state for kind, state in kinds if kind == "status"]
    assert statuses == ["thinking", "reasoning", "tool", "thinking", "writing"]
    tool_status = next(e for e in received if e.event == "status" and e.json["state"] == "tool")
    assert tool_status.json == {"state": "tool", "name": "current_time"}
    call = next(e for e in received if e.event == "tool_call")
    result = next(e for e in received if e.event == "tool_result")
    assert call.json == {"id": "call_demo_1", "name": "current_time", "arguments": {}}
    assert result.json["error"] is None and set(result.json["result"]) == {"utc", "weekday"}
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    message = tab.wait_finished(mid, cid)
    reasoning = "".join(e.json["text"] for e in received if e.event == "reasoning")
    assert message["reasoning"] == reasoning and "current_time" in reasoning
    assert message["content"].startswith("The server's clock says it is " + result.json["result"]["weekday"])
    assert message["reasoning_ms"] is not None
    reasoning_step, tool_step = message["steps"]
    assert reasoning_step == {
        "type": "reasoning",
        "offset": 0,
        "text": reasoning,
        "duration_ms": message["reasoning_ms"],
    }
    assert tool_step["type"] == "tool" and tool_step["offset"] == 0 and tool_step["name"] == "current_time"
    assert tool_step["result"] == result.json["result"] and tool_step["error"] is None
    # Ids: steps carry `T.S`, text keeps its v1 offsets.
    ids = [e.id for e in received if e.event in ("reasoning", "tool_call", "tool_result")]
    assert ids[-1] == f"0.{len(reasoning) + 2}"
    texts = [e for e in received if e.event == "message"]
    assert texts[-1].id == str(len(message["content"]))


def _cut_and_resume(tab, mid, cuts):
    parts, last = [], None
    for stop_after in cuts:
        received = follow(tab.http, mid, last, stop_after=stop_after)
        parts.append(content(received))
        last = last_id(received) or last
        if received and received[-1].event in ("done", "error"):
            return parts, True
    received = follow(tab.http, mid, last)
    parts.append(content(received))
    return parts, received[-1].event == "done"


@pytest.mark.parametrize("seed", range(6))
def test_resume_at_random_cuts_loses_and_doubles_nothing(tab, steps, seed):
    rng = random.Random(seed)
    steps.CHAT_DEMO_RATE = 400  # live cuts: the reply is still going while the client comes back
    mid, cid = _reply(tab, f"question {seed}")
    parts, ended = _cut_and_resume(tab, mid, [rng.randint(1, 6) for _ in range(rng.randint(2, 6))])
    assert ended
    tab.wait_finished(mid, cid)
    whole = content(follow(tab.http, mid))  # after the end: from the database
    assert joined(parts) == whole
    message = tab.message(mid, cid)
    assert whole[0] == ("reasoning", message["reasoning"])
    assert whole[-1] == ("message", message["content"])
    # And after the end, every id of the whole stream resumes exactly.
    received = follow(tab.http, mid)
    ids = [e.id for e in received if e.id is not None]
    for place in rng.sample(ids, min(len(ids), 8)):
        upto = next(i for i, e in enumerate(received) if e.id == place)
        again = content(follow(tab.http, mid, place))
        assert joined([content(received[: upto + 1]), again]) == whole, place


def test_reasoning_counts_toward_the_output_limit(tab, steps):
    steps.CHAT_MAX_OUTPUT_TOKENS = 5
    mid, cid = _reply(tab)
    received = follow(tab.http, mid)
    assert received[-1].json["finish_reason"] == "length"
    message = tab.wait_finished(mid, cid)
    assert len(message["reasoning"].split()) == 5 and message["content"] == "" and message["usage"] is None


def test_the_admin_transcript_shows_the_steps_folded_and_escaped(tab, steps, client, django_user_model):
    mid, cid = _reply(tab, "<b>what time</b>")
    message = tab.wait_finished(mid, cid)
    client.force_login(
        django_user_model.objects.create_user("op", password="pw", is_staff=True, is_superuser=True)
    )
    html = client.get(f"/admin/chat/conversation/{cid}/change/").content.decode()
    assert html.count('<details class="chat-step chat-step-reasoning">') == 1
    assert html.count('<details class="chat-step chat-step-tool">') == 1
    assert "<summary>tool current_time, " in html and "result: {" in html and "&quot;weekday&quot;" in html
    assert "&lt;b&gt;what time&lt;/b&gt;" in html and "<b>what time</b>" not in html
    assert f"reasoning, {message['reasoning_ms']} ms" in html


def test_a_checkpoint_saves_the_steps_while_the_reply_goes_on(tab, steps):
    """Another process follows a reply from its checkpoints: they must carry its steps too."""
    from chat.models import Message
    from tests.test_public import wait_until

    steps.CHAT_DEMO_RATE = 20
    steps.CHAT_DEMO_TOKENS = 60  # three seconds: several checkpoints (0.2 s here) mid-text
    mid, cid = _reply(tab)
    wait_until(lambda: Message.objects.filter(pk=mid, status="streaming").exclude(content="").exists())
    during = Message.objects.get(pk=mid)
    assert during.status == "streaming"
    assert [step["type"] for step in during.steps] == ["reasoning", "tool"] and during.reasoning
    assert tab.wait_finished(mid, cid)["status"] == "complete"


def test_a_prompt_that_offers_no_tools_is_read_from_the_provider_with_no_rounds_around_it():
    """One round, the provider's own stream: no generator of the rounds to resume per token,
    or to keep while a reply waits (issue 14); the reply counts the output limit either way."""
    from chat.providers.base import Prompt, ToolSpec, Turn
    from chat.providers.demo import DEMO_TOOL, DemoProvider
    from chat.tools.rounds import reply_items

    provider = DemoProvider("demo")
    turns = (Turn("user", "Hi"),)
    offered = (ToolSpec(DEMO_TOOL, "The server's clock.", {"type": "object", "properties": {}}),)
    plain = reply_items(provider, Prompt("demo", "", turns), reply_id="r")
    with_tools = reply_items(provider, Prompt("demo", "", turns, tools=offered), reply_id="r")
    assert plain.ag_code is DemoProvider._answer.__code__
    assert with_tools.ag_code.co_name == "_rounds"
