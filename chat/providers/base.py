"""The provider interface: one async generator that yields text deltas, then a Finish."""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Prompt:
    model: str  # the provider's own model name (`gpt-4o-mini`), not the app's id
    system: str
    turns: tuple[Turn, ...]  # oldest first; the last one is the new user message


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Finish:
    reason: str | None = None
    usage: Usage | None = None


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
    def stream(self, prompt: Prompt) -> AsyncIterator["str | Finish"]:
        """Yield text deltas as they come, then at most one Finish; raise ProviderError."""
