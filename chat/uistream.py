"""A reply's events as the AI SDK's UI message stream (the `ai` npm package, major 7).

The protocol, as the package reads it (`uiMessageChunkSchema`, `processUIMessageStream`):
each chunk is one SSE `data:` line of JSON, the stream ends with `data: [DONE]`, and the
response says `x-vercel-ai-ui-message-stream: v1`. A part (text or reasoning) is opened,
appended to by id and closed; a tool call and its outcome are two chunks naming the call's
id; `start-step`/`finish-step` bound each model round (a new one after a tool's result, as
the package's own `streamText` does). Pure functions and one small state object: the views
feed it the events of chat.streams.reply_events (docs/API-extensions.md, "The AI SDK's
protocol").
"""

import json
from collections.abc import Iterable
from typing import Any

from django.urls import reverse

from chat.eventlog.base import APPROVAL, End, Event, ReasoningText, Status, Text, ToolCallStep, ToolResultStep
from chat.models import Message
from chat.replies.follower import end_of
from chat.sse import PING
from chat.steps import replay

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE = b"data: [DONE]\n\n"
HEARTBEAT = PING  # an SSE comment: the package's parser skips it

# Our finish reasons (the vendors' words, normalised) as the package's FinishReason.
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
}


# One encoder for every chunk: json.dumps with options builds a new one per call (a third of
# the cost of a text delta's chunk, measured).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def chunk_bytes(chunk: dict[str, Any]) -> bytes:
    """One chunk as its SSE event. JSON escapes every line break, so it is one `data:` line."""
    return b"data: %s\n\n" % _JSON.encode(chunk).encode()


def finish_reason(end: End) -> str:
    """Why the reply ended, in the package's words: a stop is `other`, since the model did not
    end it; a reply whose process died is `interrupted` (v7: "output may be incomplete")."""
    if end.status == Message.Status.ERROR:
        return "error"
    if end.status == Message.Status.INTERRUPTED:
        return "interrupted"
    if end.status == Message.Status.STOPPED:
        return "other"
    return _FINISH_REASONS.get(end.finish_reason or "", "other")


def end_metadata(end: End) -> dict[str, Any]:
    """What `finish` adds to the message's metadata: how it ended, in our own words too."""
    metadata: dict[str, Any] = {"status": end.status, "finishReason": end.finish_reason, "usage": end.usage}
    if end.cached:
        metadata["cached"] = True
    return metadata


class UIEncoder:
    """The chunks of one reply, event by event: which part is open, and whether a step is."""

    __slots__ = ("open_part", "step_open", "step_done", "parts", "decided", "paused")

    def __init__(self, decided: frozenset[str] = frozenset()) -> None:
        self.open_part: tuple[str, str] | None = None  # ("text" | "reasoning", its id)
        self.step_open = False
        self.step_done = False  # a tool's result came: what follows is the model's next round
        self.parts = 0  # part ids are `text-<n>` / `reasoning-<n>`, n counting every part opened
        self.decided = decided  # tool calls whose approval this request gave: not asked again
        self.paused = False  # an approval was asked for: this stream ends, the reply waits

    @staticmethod
    def start(message_id: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "start", "messageId": message_id, "messageMetadata": metadata}]

    def _close_part(self) -> list[dict[str, Any]]:
        if self.open_part is None:
            return []
        kind, part_id = self.open_part
        self.open_part = None
        return [{"type": f"{kind}-end", "id": part_id}]

    def _step(self) -> list[dict[str, Any]]:
        """Open a step for content, closing the round a tool's result ended."""
        if self.step_open and not self.step_done:
            return []
        chunks = self._close_part()
        if self.step_open:
            chunks.append({"type": "finish-step"})
        self.step_open, self.step_done = True, False
        return [*chunks, {"type": "start-step"}]

    def _delta(self, kind: str, text: str) -> list[dict[str, Any]]:
        chunks = self._step()
        if self.open_part is None or self.open_part[0] != kind:
            chunks += self._close_part()
            self.parts += 1
            self.open_part = (kind, f"{kind}-{self.parts}")
            chunks.append({"type": f"{kind}-start", "id": self.open_part[1]})
        return [*chunks, {"type": f"{kind}-delta", "id": self.open_part[1], "delta": text}]

    def chunks(self, item: Event) -> list[dict[str, Any]]:
        """The chunks that say `item` (none for a progress state: the parts show it)."""
        if isinstance(item, Text):
            return self._delta("text", item.text) if item.text else []
        if isinstance(item, ReasoningText):
            return self._delta("reasoning", item.text) if item.text else []
        if isinstance(item, ToolCallStep):
            call = {"toolCallId": item.call_id, "toolName": item.name, "input": item.arguments}
            # Run by the server (the package calls a client's onToolCall only for the others).
            call["providerExecuted"] = True
            return [*self._step(), *self._close_part(), {"type": "tool-input-available", **call}]
        if isinstance(item, ToolResultStep):
            self.step_done = True
            if item.error is not None:
                return [{"type": "tool-output-error", "toolCallId": item.call_id, "errorText": item.error}]
            return [{"type": "tool-output-available", "toolCallId": item.call_id, "output": item.result}]
        if isinstance(item, Status):
            return self._approval(item)
        return self.end(item)

    def _approval(self, status: Status) -> list[dict[str, Any]]:
        """A tool call waiting for the person: the package's approval request, then this
        response ends as the package's own server ends it (the model's turn is over); the
        reply waits, and the approval response (a new request) streams the rest."""
        detail = status.detail or {}
        call_id = detail.get("tool_call_id")
        if status.state != APPROVAL or not isinstance(call_id, str) or call_id in self.decided:
            return []
        self.paused = True
        chunks = [
            *self._close_part(),
            {"type": "tool-approval-request", "approvalId": call_id, "toolCallId": call_id},
        ]
        self.step_open = False
        metadata = {"status": APPROVAL}
        return [
            *chunks,
            {"type": "finish-step"},
            {"type": "finish", "finishReason": "tool-calls", "messageMetadata": metadata},
        ]

    def end(self, end: End) -> list[dict[str, Any]]:
        """Open parts and the step closed; an error chunk for a failed reply; then `finish`."""
        chunks = self._close_part()
        if self.step_open:
            chunks.append({"type": "finish-step"})
            self.step_open = False
        if end.status == Message.Status.ERROR:
            chunks.append({"type": "error", "errorText": end.error or "The model failed."})
        reason = finish_reason(end)
        return [*chunks, {"type": "finish", "finishReason": reason, "messageMetadata": end_metadata(end)}]


def encode_all(items: Iterable[Event], message_id: str, metadata: dict[str, Any]) -> bytes:
    """A whole stream's bytes (the unit tests' and a finished reply's), `[DONE]` included."""
    encoder = UIEncoder()
    chunks = encoder.start(message_id, metadata)
    for item in items:
        chunks += encoder.chunks(item)
    return b"".join(map(chunk_bytes, chunks)) + DONE


# --- a stored conversation as the package's UIMessages (GET /api/ui/chat/<id>) -------------


def _fold(parts: list[dict[str, Any]], item: Event, new_step: bool) -> bool:
    """`item` added to `parts` as the package's processor would add its chunks; whether the
    next content starts a new step."""
    if isinstance(item, ToolResultStep):
        tool = next(p for p in reversed(parts) if p.get("toolCallId") == item.call_id)
        if item.error is not None:
            tool.update(state="output-error", errorText=item.error)
        else:
            tool.update(state="output-available", output=item.result)
        return True
    if not isinstance(item, Text | ReasoningText | ToolCallStep) or (
        isinstance(item, Text | ReasoningText) and not item.text
    ):
        return new_step
    if new_step:
        parts.append({"type": "step-start"})
    if isinstance(item, ToolCallStep):
        parts.append(
            {
                "type": f"tool-{item.name}",
                "toolCallId": item.call_id,
                "state": "input-available",
                "input": item.arguments,
                "providerExecuted": True,
            }
        )
        return False
    kind = "text" if isinstance(item, Text) else "reasoning"
    if parts[-1]["type"] == kind:
        parts[-1]["text"] += item.text
    elif kind == "text":
        parts.append({"type": kind, "text": item.text, "state": "done"})
    else:  # the package keeps a reasoning part's id (the stream's: UIEncoder's numbering)
        number = 1 + sum(p["type"] in ("text", "reasoning") for p in parts)
        parts.append({"type": kind, "id": f"reasoning-{number}", "text": item.text, "state": "done"})
    return False


def reply_parts(items: Iterable[Event]) -> list[dict[str, Any]]:
    """A reply's parts from its events: the same parts its stream makes in the package."""
    parts: list[dict[str, Any]] = []
    new_step = True
    for item in items:
        new_step = _fold(parts, item, new_step)
    return parts


def _file_part(attachment: Any) -> dict[str, Any]:
    return {
        "type": "file",
        "mediaType": attachment.content_type,
        "filename": attachment.name,
        "url": reverse("chat:attachment", args=[attachment.pk]),
    }


def ui_message_json(message: Message) -> dict[str, Any]:
    """A stored message as the package's UIMessage: a user's text and files; a reply's
    reasoning, tool and text parts in their order, and its metadata as its stream's ends."""
    if message.role != Message.Role.ASSISTANT:
        parts = [{"type": "text", "text": message.content}] if message.content else []
        parts += [_file_part(a) for a in getattr(message, "attachment_list", [])]
        return {"id": str(message.pk), "role": message.role, "parts": parts}
    events = replay(message.content, message.reasoning, message.steps, 0, 0)
    metadata = {"conversationId": str(message.conversation_id), "model": message.model}
    if message.is_finished:
        metadata.update(end_metadata(end_of(message)))
    else:
        metadata["status"] = message.status
    return {"id": str(message.pk), "role": "assistant", "metadata": metadata, "parts": reply_parts(events)}
