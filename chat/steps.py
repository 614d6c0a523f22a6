"""A reply's reasoning and tool steps: recorded as they stream, stored, replayed (issue 12).

Stored on the message as three fields: `reasoning` (all its reasoning text), `reasoning_ms`
and `steps`, the reasoning runs and tool calls in order, each with `offset`, the text's
length where it came. A reasoning run is stored as a slice (`start`, `end`) of `reasoning`;
a tool step holds its call and outcome. From these the events of the reply, and so any
resumed stream, are rebuilt exactly (docs/API-extensions.md, "Reasoning and tools").
"""

import time
from typing import Any

from chat.eventlog.base import ReasoningText, Step, Text, ToolCallStep, ToolResultStep


class Steps:
    """The steps of one reply being generated, with the place of each (text offset, side)."""

    __slots__ = ("reasoning", "reasoning_length", "steps", "side", "version", "run_started", "_since")

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.reasoning_length = 0
        self.steps: list[dict] = []
        self.side = 0
        self.version = 0  # grows with every change: the checkpointer saves what changed
        self.run_started: float | None = None  # the open reasoning run's start (None: no run open)
        self._since = time.monotonic()  # the last event that was not reasoning

    def __bool__(self) -> bool:
        return bool(self.steps)

    def add_reasoning(self, text: str, offset: int) -> ReasoningText:
        last = self.steps[-1] if self.steps else None
        if (
            self.run_started is None
            or last is None
            or last["type"] != "reasoning"
            or last["offset"] != offset
        ):
            self.close_run()
            last = {
                "type": "reasoning",
                "offset": offset,
                "start": self.reasoning_length,
                "end": 0,
                "duration_ms": 0,
            }
            self.steps.append(last)
            self.run_started = self._since
        self.reasoning.append(text)
        self.reasoning_length += len(text)
        last["end"] = self.reasoning_length
        self.side += len(text)
        self.version += 1
        return ReasoningText(offset, self.side, text)

    def close_run(self) -> None:
        """The reasoning run in progress (if any) ends: its duration is set."""
        if self.run_started is None:
            return
        now = time.monotonic()
        self.steps[-1]["duration_ms"] = round((now - self.run_started) * 1000)
        self.run_started = None
        self._since = now
        self.version += 1

    def tool_call(self, call_id: str, name: str, arguments: dict, offset: int) -> ToolCallStep:
        self.close_run()
        self.steps.append(
            {
                "type": "tool",
                "offset": offset,
                "id": call_id,
                "name": name,
                "arguments": arguments,
                "result": None,
                "error": None,
                "duration_ms": None,
            }
        )
        self.side += 1
        self.version += 1
        return ToolCallStep(offset, self.side, call_id, name, arguments)

    def tool_result(self, call_id: str, result: Any, error: str | None, duration_ms: int) -> ToolResultStep:
        step = next(s for s in reversed(self.steps) if s["type"] == "tool" and s["id"] == call_id)
        step.update(result=result, error=error, duration_ms=duration_ms)
        self.side += 1
        self.version += 1
        self._since = time.monotonic()
        return ToolResultStep(step["offset"], self.side, call_id, step["name"], result, error, duration_ms)

    def approval(self, call_id: str, state: str) -> None:
        """A tool step's approval (issue 31): `waiting`, then `approved`, `denied` or `expired`."""
        step = next((s for s in reversed(self.steps) if s["type"] == "tool" and s["id"] == call_id), None)
        if step is not None:
            step["approval"] = state
            self.version += 1

    def running_tool(self) -> dict | None:
        """The tool step whose call has no outcome yet (a reply stopped while it ran)."""
        last = self.steps[-1] if self.steps else None
        return last if last is not None and last["type"] == "tool" and last["duration_ms"] is None else None

    def end(self, status: str) -> ToolResultStep | None:
        """The reply ends: an open reasoning run closes; a tool still running gets an outcome."""
        self.close_run()
        step = self.running_tool()
        if step is None:
            return None
        if step.get("approval") == "waiting":  # chat/approvals.py marked its row expired too
            step["approval"] = "expired"
        error = (
            "The reply ended while this tool was running."
            if status != "stopped"
            else "Stopped while this tool was running."
        )
        return self.tool_result(step["id"], None, error, 0)

    def stored(self) -> dict[str, Any]:
        """The message's fields, as saved."""
        if len(self.reasoning) > 1:
            self.reasoning[:] = ["".join(self.reasoning)]
        runs = [s["duration_ms"] for s in self.steps if s["type"] == "reasoning"]
        return {
            "reasoning": self.reasoning[0] if self.reasoning else "",
            "reasoning_ms": sum(runs) if runs else None,
            "steps": [dict(s) for s in self.steps],
        }


def steps_json(reasoning: str, steps: list[dict]) -> list[dict]:
    """The message object's `steps`: reasoning runs with their text instead of a slice."""
    out = []
    for step in steps or []:
        if step.get("type") == "reasoning":
            text = reasoning[step["start"] : step["end"]]
            out.append(
                {
                    "type": "reasoning",
                    "offset": step["offset"],
                    "text": text,
                    "duration_ms": step["duration_ms"],
                }
            )
        else:
            out.append(dict(step))
    return out


def _step_events(step: dict, reasoning: str, offset: int, side: int) -> list[tuple[int, Step]]:
    """A stored step as events, each with the side it starts at."""
    if step["type"] == "reasoning":
        text = reasoning[step["start"] : step["end"]]
        return [(side, ReasoningText(offset, side + len(text), text))] if text else []
    call = ToolCallStep(offset, side + 1, step["id"], step["name"], step["arguments"])
    if step.get("duration_ms") is None:
        return [(side, call)]
    result = ToolResultStep(
        offset, side + 2, step["id"], step["name"], step.get("result"), step.get("error"), step["duration_ms"]
    )
    return [(side, call), (side + 1, result)]


def side_before(steps: list[dict], offset: int) -> int:
    """The steps' length once the text reached `offset` (the meaning of a plain id)."""
    side = 0
    for step in steps or []:
        if step["offset"] >= offset:
            break
        side += (
            step["end"] - step["start"]
            if step["type"] == "reasoning"
            else (1 if step.get("duration_ms") is None else 2)
        )
    return side


def replay(content: str, reasoning: str, steps: list[dict], offset: int, side: int | None) -> list:
    """The events of a stored reply after the place (`offset`, `side`), in order.

    Text is cut at each step's offset; a reasoning run is one event; a tool step is its call,
    then its result if it has one. An event partly before the place is sent from the place on.
    """
    if side is None:
        side = side_before(steps, offset)
    events: list = []
    t = s = 0

    def text_to(stop: int) -> None:
        nonlocal t
        if stop > t:
            if s >= side and stop > offset:
                events.append(Text(stop, content[max(t, offset) : stop]))
            t = stop

    for step in steps or []:
        text_to(min(step["offset"], len(content)))
        for start, event in _step_events(step, reasoning, t, s):
            if event.side > side and t >= offset:
                if isinstance(event, ReasoningText) and start < side:
                    event = ReasoningText(event.offset, event.side, event.text[side - start :])
                events.append(event)
            s = event.side
    text_to(len(content))
    return events


def record_step(steps: Steps, item: Any, offset: int) -> Step | None:
    """An engine item (chat/tools/rounds.py) recorded; the event to log, or None (nothing left)."""
    from chat.providers.base import Reasoning
    from chat.text import clean_model_text
    from chat.tools.rounds import ToolEnded, ToolStarted

    if isinstance(item, Reasoning):
        text = clean_model_text(item.text)
        return steps.add_reasoning(text, offset) if text else None
    if isinstance(item, ToolStarted):
        return steps.tool_call(
            clean_model_text(item.call_id), clean_model_text(item.name), item.arguments, offset
        )
    if isinstance(item, ToolEnded):
        return steps.tool_result(clean_model_text(item.call_id), item.result, item.error, item.duration_ms)
    return None
