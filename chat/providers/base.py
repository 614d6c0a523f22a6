"""The provider interface: one async generator that yields text deltas, then a Finish.

Reasoning models yield `Reasoning` deltas too; a model given tools (`Prompt.tools`) ends a
round with `Finish(reason="tool_calls", tool_calls=...)`, and the engine sends the results
back in the next prompt as turns (chat/tools/rounds.py).
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for; `arguments` is the JSON text it wrote (fragments joined)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Attachment:
    """A file the user sent with a turn, as a provider gets it (contract v3, "Files and images").

    `content_type` was judged from the bytes, never from the name: an image (`image/png`,
    `image/jpeg`, `image/gif`, `image/webp`, with its `width` and `height`), a PDF
    (`application/pdf`, with its extracted `text` for a model that cannot read PDFs), or text
    (`text/plain`, `text/markdown`, `text/csv`..., `text` holding it decoded). Each provider puts
    it on the wire its vendor's way.
    """

    name: str
    content_type: str
    data: bytes = field(repr=False)
    width: int | None = None
    height: int | None = None
    text: str | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant" | "tool" (a tool's result)
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that asked for calls
    tool_call_id: str | None = None  # a tool turn: the call it answers
    is_error: bool = False  # a tool turn: the call failed
    replay: Any = None  # an assistant turn: what its provider needs sent back (Anthropic's blocks)
    attachments: tuple[Attachment, ...] = ()  # a user turn: the files sent with it


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model sees it: its name, what it does, its parameters' JSON schema."""

    name: str
    description: str
    parameters: dict


@dataclass(frozen=True)
class Prompt:
    model: str  # the provider's own model name (`gpt-4o-mini`), not the app's id
    system: str
    turns: tuple[Turn, ...]  # oldest first; the last one is the new user message (or a tool result)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # "none" in the last round a reply may take


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Reasoning:
    """A delta of the model's reasoning (OpenAI-compatible `reasoning_content`, Anthropic thinking)."""

    text: str


@dataclass(frozen=True)
class Finish:
    reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # with reason "tool_calls"
    replay: Any = None  # the round's assistant content as the provider must get it back


class ProviderError(Exception):
    """A failure a person can act on; `message` is shown as is."""

    def __init__(self, message: str, *, code: str = "upstream_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Provider(ABC):
    """Streams one reply. Cancellation (a stop) must close the upstream at once."""

    name: str = ""

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    def stream(self, prompt: Prompt) -> AsyncIterator["str | Reasoning | Finish"]:
        """Yield text (and reasoning) deltas as they come, then at most one Finish; raise ProviderError."""
