"""What an event log stores for a reply, and the interface every backend implements."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Text:
    offset: int  # the length of the reply's text once `text` is appended
    text: str


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # "thinking", ...
    # Fields sent beside `state`: a waiting tool call's (issue 31, chat/approvals.py), or a
    # running tool's name. A status with `state` "approval" goes to every subscriber that
    # joins while it holds, whatever its place, and so does the status that ends it.
    detail: dict | None = None


APPROVAL = "approval"


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


class LogUnavailable(Exception):
    """The log can no longer serve this subscription (Redis went away): follow the reply from
    the database from `offset`, the length of the text already delivered."""

    def __init__(self, offset: int, writer_gone: bool = False, side: int | None = None) -> None:
        super().__init__(f"the event log is unavailable after offset {offset}")
        self.offset = offset
        self.writer_gone = writer_gone  # the generating process died (not Redis)
        self.side = side  # the steps delivered (None: those before the text reached `offset`)


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

    # A log whose `append` never waits offers it as a plain method too, `append_now(reply_id,
    # text) -> int`, which the reply's task calls per delta instead: no coroutine made and run
    # per token, which a burst of replies pays on every token. None: only `append`.
    append_now: Callable[[str, str], int] | None = None

    @abstractmethod
    async def append_step(self, reply_id: str, step: Step) -> None:
        """Append a reasoning delta or a tool step, its place already set by the generator."""

    @abstractmethod
    async def set_status(self, reply_id: str, state: str, detail: dict | None = None) -> None: ...

    @abstractmethod
    async def end(self, reply_id: str, end: End) -> None:
        """Record the end; the log forgets the reply some time later (then: the database)."""

    @abstractmethod
    async def subscribe(self, reply_id: str, offset: int, side: int | None = None) -> Subscription | None:
        """Follow a reply from `offset` (and `side`: after that step; None: after the text
        reached `offset`); None if this log does not hold the reply."""

    # Optional hooks, for logs shared by several processes (Redis); no-ops in one process.

    def start(self, on_stop: Callable[[str], None]) -> None:  # noqa: B027 - optional hook
        """Start the log's tasks on the running loop (once per loop); `on_stop(reply_id)` is
        called when another process asks for a stop."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """End the log's tasks and connections (server shutdown)."""

    async def keep(self, reply_ids: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """The replies were checkpointed: their logs stay at least until the next checkpoint."""

    async def request_stop(self, reply_id: str) -> None:  # noqa: B027 - optional hook
        """Tell the process generating the reply, wherever it is, to stop it now."""

    async def text_of(self, reply_id: str) -> str | None:
        """The reply's whole text as this log holds it, if it does (a dead writer's rescue)."""
        return None
