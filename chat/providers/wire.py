"""Turns and tools in each vendor's wire format, and tool calls assembled from stream deltas.

Both vendors stream a tool call's arguments as JSON fragments (OpenAI `tool_calls` deltas by
index, Anthropic `input_json_delta` by content block); the call exists once the round ends.
"""

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

from chat import conf
from chat.providers.base import Attachment, Prompt, ToolCall, Turn
from chat.providers.images import image_fit


class CallFragments:
    """Tool calls being streamed, keyed by the vendor's index, in order."""

    def __init__(self) -> None:
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def start(self, index: int, call_id: str | None, name: str | None) -> None:
        call = self.calls.setdefault(index, ["", "", ""])
        call[0] = call_id or call[0]
        call[1] = name or call[1]

    def add(self, index: int, arguments: str | None) -> None:
        self.calls.setdefault(index, ["", "", ""])[2] += arguments or ""

    def done(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=call_id or f"call_{index}", name=name, arguments=arguments)
            for index, (call_id, name, arguments) in sorted(self.calls.items())
        )


def _arguments_object(arguments: str) -> dict:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- Files and images (issue 30) ----------------------------------------------------------------

PDF = "application/pdf"
_BACKTICKS = re.compile(r"`+")


def _base64(attachment: Attachment) -> str:
    return base64.b64encode(attachment.data).decode("ascii")


def _data_url(attachment: Attachment) -> str:
    return f"data:{attachment.content_type};base64,{_base64(attachment)}"


def text_file(attachment: Attachment) -> str:
    """A text file as a model reads it: its name and type, then its text in a fenced block
    longer than any run of backticks inside, so the file cannot close it early."""
    text = attachment.text
    if text is None:
        text = attachment.data.decode("utf-8", errors="replace")
    fence = "`" * max(3, max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    name = " ".join(attachment.name.split())
    return f"{name} ({attachment.content_type}):\n{fence}\n{text}\n{fence}"


def _images_in(prompt: Prompt) -> int:
    return sum(a.is_image for turn in prompt.turns for a in turn.attachments)


async def messages_built(
    build: Callable[[Prompt], list[dict[str, Any]]], prompt: Prompt
) -> list[dict[str, Any]]:
    """The prompt's messages; with files, built on a thread: base64 of a 10 MB file, or an image
    scaled down, takes the event loop that streams every other reply from milliseconds to a second."""
    if not any(turn.attachments for turn in prompt.turns):
        return build(prompt)
    return await asyncio.to_thread(build, prompt)


# --- OpenAI Chat Completions -------------------------------------------------------------------


def _openai_user(turn: Turn) -> str | list[dict[str, Any]]:
    """A user turn: its text alone as ever, or content parts with its files after the text
    (OpenAI's examples): images as data URLs, PDFs as `file` parts (or as their text, with
    CHAT_OPENAI_PDF "text"), text files as text."""
    if not turn.attachments:
        return turn.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.content}] if turn.content else []
    as_file = conf.get("CHAT_OPENAI_PDF") != "text"
    for attachment in turn.attachments:
        if attachment.is_image:
            image = image_fit(attachment, vendor="openai")
            parts.append({"type": "image_url", "image_url": {"url": _data_url(image)}})
        elif attachment.content_type == PDF and (as_file or attachment.text is None):
            file = {"filename": attachment.name, "file_data": _data_url(attachment)}
            parts.append({"type": "file", "file": file})
        else:  # a text file, or a PDF's text for a server that reads no PDFs
            parts.append({"type": "text", "text": text_file(attachment)})
    return parts


def openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": prompt.system}] if prompt.system else []
    for turn in prompt.turns:
        if turn.role == "tool":
            messages.append({"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content})
        elif turn.tool_calls:
            calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
                for c in turn.tool_calls
            ]
            messages.append({"role": "assistant", "content": turn.content or None, "tool_calls": calls})
        elif turn.role == "user":
            messages.append({"role": "user", "content": _openai_user(turn)})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def openai_tools(prompt: Prompt) -> dict[str, Any]:
    if not prompt.tools:
        return {}
    tools = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in prompt.tools
    ]
    return {"tools": tools, "tool_choice": prompt.tool_choice}


def openai_reasoning(delta: Any) -> str | None:
    """A delta's reasoning: DeepSeek, vLLM and llama.cpp say `reasoning_content`; Ollama,
    OpenRouter and newer vLLM say `reasoning`. The SDK keeps both as extra fields."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(delta, name, None)
        if isinstance(value, str) and value:
            return value
    return None


# --- Anthropic Messages ------------------------------------------------------------------------


def _anthropic_assistant(turn: Turn) -> list[dict] | str:
    if turn.replay is not None:  # the round's blocks as streamed: thinking signatures included
        return turn.replay
    if not turn.tool_calls:
        return turn.content
    blocks: list[dict] = [{"type": "text", "text": turn.content}] if turn.content else []
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments_object(c.arguments)}
        for c in turn.tool_calls
    ]
    return blocks


def _anthropic_user(turn: Turn, images: int) -> str | list[dict[str, Any]]:
    """A user turn: its text alone as ever, or blocks with its files before the text, as
    Anthropic's guide advises: images and PDFs (`document`, titled with the file's name) as
    base64, text files as text. `images`: how many the request carries (a limit depends on it)."""
    if not turn.attachments:
        return turn.content
    blocks: list[dict[str, Any]] = []
    for attachment in turn.attachments:
        if attachment.is_image:
            image = image_fit(attachment, vendor="anthropic", images_in_request=images)
            source = {"type": "base64", "media_type": image.content_type, "data": _base64(image)}
            blocks.append({"type": "image", "source": source})
        elif attachment.content_type == PDF:
            source = {"type": "base64", "media_type": PDF, "data": _base64(attachment)}
            blocks.append({"type": "document", "source": source, "title": attachment.name})
        else:
            blocks.append({"type": "text", "text": text_file(attachment)})
    if turn.content:  # the API refuses an empty text block
        blocks.append({"type": "text", "text": turn.content})
    return blocks


def anthropic_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """Tool results go back as one user message of `tool_result` blocks, as the API wants."""
    messages: list[dict[str, Any]] = []
    images = _images_in(prompt)
    results: dict[str, Any] | None = None  # the message of tool results being gathered
    for turn in prompt.turns:
        if turn.role == "tool":
            block = {"type": "tool_result", "tool_use_id": turn.tool_call_id, "content": turn.content}
            if turn.is_error:
                block["is_error"] = True
            if results is not None and messages and messages[-1] is results:
                results["content"].append(block)
            else:
                results = {"role": "user", "content": [block]}
                messages.append(results)
        elif turn.role == "assistant":
            messages.append({"role": "assistant", "content": _anthropic_assistant(turn)})
        elif turn.role == "user":
            messages.append({"role": "user", "content": _anthropic_user(turn, images)})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def anthropic_tools(prompt: Prompt) -> dict[str, Any]:
    if not prompt.tools:
        return {}
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in prompt.tools
    ]
    return {"tools": tools, "tool_choice": {"type": prompt.tool_choice}}


class AnthropicBlocks:
    """The round's content blocks as they stream, to send back in the next round: thinking
    blocks must go back unmodified (with their signature), before the tool_use blocks."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict] = {}
        self.calls = CallFragments()

    def start(self, index: int, block: Any) -> None:
        kind = block.type
        if kind == "thinking":
            self.blocks[index] = {"type": "thinking", "thinking": "", "signature": ""}
        elif kind == "redacted_thinking":
            self.blocks[index] = {"type": "redacted_thinking", "data": block.data}
        elif kind == "text":
            self.blocks[index] = {"type": "text", "text": ""}
        elif kind == "tool_use":
            self.blocks[index] = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            self.calls.start(index, block.id, block.name)

    def delta(self, index: int, delta: Any) -> None:
        block = self.blocks.get(index)
        kind = delta.type
        if block is None:
            return
        if kind == "thinking_delta":
            block["thinking"] += delta.thinking
        elif kind == "signature_delta":
            block["signature"] += delta.signature
        elif kind == "text_delta":
            block["text"] += delta.text
        elif kind == "input_json_delta":
            self.calls.add(index, delta.partial_json)

    def replay(self) -> list[dict]:
        calls = {c.id: c for c in self.calls.done()}
        out = []
        for _, block in sorted(self.blocks.items()):
            if block["type"] == "tool_use" and block["id"] in calls:
                block = {**block, "input": _arguments_object(calls[block["id"]].arguments)}
            if block["type"] == "text" and not block["text"]:
                continue  # the API refuses empty text blocks
            out.append(block)
        return out
