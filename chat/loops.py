"""Things kept one per event loop (a server has one; tests start and close many)."""

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """`per_loop(loop)`: this loop's T, made on first use; those of closed loops are let go."""

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self.make = make
        self.of: dict[asyncio.AbstractEventLoop, T] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop) -> T:
        value = self.of.get(loop)
        if value is None:
            for closed in [other for other in list(self.of) if other.is_closed()]:  # list(): atomic
                del self.of[closed]
            value = self.of[loop] = self.make(loop)
        return value
