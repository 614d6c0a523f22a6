"""Steps without a server: tool schemas, tool loading, and one resume rule for the in-memory log
and the database replay (issue 12)."""

import asyncio
import random
from typing import Literal

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.eventlog.memory import MemoryEventLog
from chat.steps import Steps, replay
from chat.tools import ToolContext, _load, tool_from
from chat.tools.schema import type_schema


@pytest.mark.parametrize(
    ("hint", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (dict[str, int], {"type": "object"}),
        (Literal["a", "b"], {"enum": ["a", "b"]}),
        (int | None, {"type": "integer"}),
        (int | str, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
    ],
)
def test_type_hints_as_json_schema(hint, schema):
    assert type_schema(hint) == schema


def _search(query: str, tags: list[str] | None = None, *, context: ToolContext) -> list:
    """Search the notes.

    More words that the model does not need.

    Args:
        query: what to look for,
            over two lines
        tags: only these tags

    Returns:
        the notes
    """
    return []


def test_a_tool_schema_from_signature_and_docstring_leaves_the_context_out():
    tool = tool_from(_search)
    assert tool.context_parameter == "context" and not tool.is_async
    assert tool.spec.description == "Search the notes."
    assert tool.spec.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to look for, over two lines"},
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "description": "only these tags",
                "default": None,
            },
        },
        "required": ["query"],
    }


def _bad(items: set[bytes]) -> None:
    """Bytes cannot be JSON."""


def _varargs(*names: str) -> None:
    """No."""


@pytest.mark.parametrize(
    ("paths", "says"),
    [
        (("tests.test_steps._bad",), "cannot be offered to a model: parameter items"),
        (("tests.test_steps._varargs",), "*names cannot be described"),
        (("tests.nowhere.tool",), "cannot import tests.nowhere.tool"),
        (("tests.test_steps._search", "tests.test_steps._search"), "two tools are named _search"),
    ],
)
def test_tools_that_cannot_be_offered_are_refused_with_a_sentence(paths, says):
    with pytest.raises(ImproperlyConfigured, match=r".*") as raised:
        _load(paths)
    assert says in str(raised.value)


async def log_random_reply(rng: random.Random, log, reply_id: str) -> tuple[Steps, str]:
    """A reply of text, reasoning runs and tool steps in a random order, written to `log` (any
    event log backend) as the engine would write it; its steps and text."""
    steps, text = Steps(), ""
    await log.open(reply_id)
    for _ in range(rng.randint(5, 25)):
        kind = rng.choice(["text", "text", "reasoning", "reasoning", "tool"])
        if kind == "text":
            delta = rng.choice(["a", "bc", "déf", "🙂g"])
            steps.close_run()
            text += delta
            await log.append(reply_id, delta)
        elif kind == "reasoning":
            await log.append_step(reply_id, steps.add_reasoning(rng.choice(["x", "yz", "∑w"]), len(text)))
        else:
            call = f"c{len(steps.steps)}"
            await log.append_step(reply_id, steps.tool_call(call, "t", {"n": 1}, len(text)))
            await log.append_step(reply_id, steps.tool_result(call, {"ok": True}, None, 3))
    return steps, text


def _random_reply(rng: random.Random) -> tuple[MemoryEventLog, Steps, str]:
    """A random reply (log_random_reply) in an in-process log, as reply "r"."""
    log = MemoryEventLog()
    steps, text = asyncio.run(log_random_reply(rng, log, "r"))
    return log, steps, text


def _drain(log: MemoryEventLog, offset: int, side: int | None) -> list:
    async def go():
        subscription = await log.subscribe("r", offset, side)
        events = []
        while (event := await subscription.next(0)) is not None:
            events.append(event)
        return events

    return asyncio.run(go())


def _flat(events: list) -> list:
    """Events as units (one per code point of text or reasoning), so merges compare equal."""
    out = []
    for event in events:
        kind = type(event).__name__
        if kind in ("Text", "ReasoningText"):
            out += [(kind, ch) for ch in event.text]
        elif kind != "Status":
            out.append((kind, event.call_id))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_the_memory_log_and_the_database_replay_resume_alike_from_every_id(seed):
    rng = random.Random(seed)
    log, steps, text = _random_reply(rng)
    stored = steps.stored()
    whole = replay(text, stored["reasoning"], stored["steps"], 0, None)
    assert _flat(_drain(log, 0, None)) == _flat(whole)
    for i, event in enumerate(whole):
        side = None if type(event).__name__ == "Text" else event.side
        expected = _flat(whole[i + 1 :])
        assert _flat(replay(text, stored["reasoning"], stored["steps"], event.offset, side)) == expected
        assert _flat(_drain(log, event.offset, side)) == expected


def test_manage_check_names_a_tool_that_cannot_be_offered(settings):
    from chat.tools.checks import check_tools

    settings.CHAT_TOOLS = "chat.tools.examples.current_time, tests.test_steps._varargs"
    [error] = check_tools()
    assert error.id == "chat.E012" and "tests.test_steps._varargs" in error.msg
    settings.CHAT_TOOLS = "chat.tools.examples.current_time,chat.tools.examples.search_my_conversations"
    assert check_tools() == []
