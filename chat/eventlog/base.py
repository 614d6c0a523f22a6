"""What an event log stores for a reply, and the interface every backend implements."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Text:
    offset: int  # the length of the reply's text once `text` is appended
    text: str


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # "thinking", ...


@dataclass(frozen=True, slots=True)
class End:
    status: str  # a final Message.Status
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    error: str | None = None
    error_code: str | None = None
    cached: bool = False  # told again from the answer cache (chat/answercache.py)


# --- reasoning and tool steps (issue 12) ------------------------------------------------------
# Each carries its place: `offset`, the text's length where it came, and `side`, the steps'
# length once it is appended (one per reasoning code point, one per tool call, one per result).
# Their SSE id is `<offset>.<side>` (docs/API-extensions.md, "Reasoning and tools").


@dataclass(frozen=True, slots=True)
class ReasoningText:
    offset: int
    side: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStep:
    offset: int
    side: int
    call_id: str
    name: str
    arguments: dict


@dataclass(frozen=True, slots=True)
class ToolResultStep:
    offset: int
    side: int
    call_id: str
    name: str
    result: Any
    error: str | None
    duration_ms: int


Step = ReasoningText | ToolCallStep | ToolResultStep
Event = Text | Status | End | Step


class Subscription(ABC):
    """One follower of one reply, from an offset: text (merged while it lags), status, end."""

    @abstractmethod
    async def next(self, timeout: float) -> Event | None:
        """The next event, or None when nothing happened for `timeout` seconds."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the subscription holds."""


class EventLog(ABC):
    """Written by the one task generating a reply; read by any number of subscribers."""

    @abstractmethod
    async def open(self, reply_id: str) -> None: ...

    @abstractmethod
    async def append(self, reply_id: str, text: str) -> int:
        """Append a delta; return the text's new length."""

    @abstractmethod
    async def append_step(self, reply_id: str, step: Step) -> None:
        """Append a reasoning delta or a tool step, its place already set by the generator."""

    @abstractmethod
    async def set_status(self, reply_id: str, state: str) -> None: ...

    @abstractmethod
    async def end(self, reply_id: str, end: End) -> None:
        """Record the end; the log forgets the reply some time later (then: the database)."""

    @abstractmethod
    async def subscribe(self, reply_id: str, offset: int, side: int | None = None) -> Subscription | None:
        """Follow a reply from `offset` (and `side`: after that step; None: after the text
        reached `offset`); None if this log does not hold the reply."""
