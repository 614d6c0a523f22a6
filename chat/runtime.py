"""The one owner of what runs in this process, started and stopped with the server.

What the app runs beyond a request lives here: the reply engine, the thread pools (the
replies' database writer, the tools', the write-ahead log's), the event log, the limiters,
the background tasks (model-written titles) and what is kept per event loop. The ASGI
lifespan calls `await runtime.start()` when the server starts and `await runtime.stop()` when
it stops; stop leaves no thread and no task of the app behind, and a later start works again.

This module sits below everything it owns and imports none of it: each module that defines
something that runs asks the runtime for it (`runtime.part`, `runtime.executor`,
`runtime.spawn`, `runtime.per_loop`), so the accessors the app always had (`get_event_log()`,
`get_limiter()`, `db.run`, `generation.engine`) are a line each over the runtime, and the
lower layers never import the higher ones.

A process has one runtime and one server loop. Tests run several loops in one process (the
live server's thread, `asyncio.run`): stop ends what belongs to the loop it runs on and lets go
of what belonged to closed loops; what a loop still running elsewhere holds is left to it.
"""

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections

from chat.loops import PerLoop

log = logging.getLogger("chat.runtime")

T = TypeVar("T")
Hook = Callable[[Any], Awaitable[None]]
CLOSE_TIMEOUT = 5.0  # seconds a pool's threads get to close their connections at stop


@dataclass(eq=False)
class _Part:
    value: Any
    start: Hook | None
    stop: Hook | None


@dataclass(eq=False)
class _Registry(Generic[T]):
    values: PerLoop[T]
    close: Callable[[T], Awaitable[None]] | None


class _Pool:
    """A thread pool that knows how many threads it started, so that at stop each of them
    closes its own database connections (Django's connections belong to their thread)."""

    def __init__(self, name: str, threads: int, initializer: Callable[[], None] | None) -> None:
        self.started = 0
        self._lock = threading.Lock()
        self._initializer = initializer
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=self._thread_started)

    def _thread_started(self) -> None:
        with self._lock:
            self.started += 1
        if self._initializer is not None:
            self._initializer()

    async def close(self) -> None:
        """Every thread closes its connections, then the pool ends. A thread still busy (a sync
        tool that timed out keeps its thread until it returns) is not waited for."""
        threads = self.started
        finished = True
        if threads:
            barrier = threading.Barrier(threads)  # each thread takes exactly one of these calls
            calls = [
                asyncio.wrap_future(self.executor.submit(_close_connections, barrier)) for _ in range(threads)
            ]
            _, pending = await asyncio.wait(calls, timeout=CLOSE_TIMEOUT * 2)
            finished = not pending
        if not finished:
            log.warning("A thread of %s is still busy at stop: it ends when its call returns", self.executor)
        self.executor.shutdown(wait=finished, cancel_futures=not finished)


def _close_connections(barrier: threading.Barrier) -> None:
    connections.close_all()
    with contextlib.suppress(threading.BrokenBarrierError):  # one busy elsewhere: the others closed
        barrier.wait(CLOSE_TIMEOUT)


class Runtime:
    """The engine, thread pools, event logs, limiters and background tasks of this process."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Part] = {}
        self._pools: dict[str, _Pool] = {}
        self._tasks: set[asyncio.Task] = set()
        self._registries: list[_Registry] = []
        self._making = threading.RLock()  # two loops (threads) asking at once make one part, one pool

    # --- what the app asks for -----------------------------------------------------------

    def part(
        self,
        key: Hashable,
        make: Callable[[], T],
        *,
        start: Callable[[T], Awaitable[None]] | None = None,
        stop: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """The part known as `key`, made on first use and kept for the process's life:
        `start(part)` runs at each `runtime.start()`, `stop(part)` at each `runtime.stop()`."""
        found = self._parts.get(key)
        if found is None:
            with self._making:
                found = self._parts.get(key)
                if found is None:
                    found = self._parts[key] = _Part(make(), start, stop)
        return found.value

    def executor(
        self, name: str, threads: int | Callable[[], int], initializer: Callable[[], None] | None = None
    ) -> ThreadPoolExecutor:
        """The pool of threads named `name`, made on first use (`threads` read then)."""
        pool = self._pools.get(name)
        if pool is None:
            with self._making:
                pool = self._pools.get(name)
                if pool is None:
                    count = threads() if callable(threads) else threads
                    pool = self._pools[name] = _Pool(name, count, initializer)
        return pool.executor

    def spawn(
        self, coro: Coroutine[Any, Any, T], *, name: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> "asyncio.Task[T]":
        """A background task that outlives the request that starts it (in a context of its
        own, not the request's); stop cancels it and waits for it."""
        loop = loop or asyncio.get_running_loop()
        task = loop.create_task(coro, name=name, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def tasks(self, prefix: str = "") -> list[asyncio.Task]:
        """The background tasks running, those whose name starts with `prefix`."""
        return [task for task in list(self._tasks) if task.get_name().startswith(prefix)]

    def per_loop(
        self,
        make: Callable[[asyncio.AbstractEventLoop], T],
        close: Callable[[T], Awaitable[None]] | None = None,
    ) -> PerLoop[T]:
        """A value per event loop, made on first use; at stop the stopping loop's is closed
        (`close(value)`) and let go, as are those of loops that have closed."""
        values = PerLoop(make)
        self._registries.append(_Registry(values, close))
        return values

    # --- the lifespan --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the parts that start (the reply engine: it marks the replies a dead process
        left, then starts its checkpointer and sweeper)."""
        for part in list(self._parts.values()):
            if part.start is not None:
                await part.start(part.value)

    async def stop(self) -> None:
        """End everything, in the order that lets each end cleanly: the parts that started
        (the engine saves its replies, which needs the pools, the event log and the limits),
        then the background tasks, the other parts (event logs), what is kept per loop
        (limiters), and last the thread pools."""
        parts = list(self._parts.values())
        for part in parts[::-1]:
            if part.start is not None and part.stop is not None:
                await part.stop(part.value)
        await self._cancel_tasks()
        for part in parts[::-1]:
            if part.start is None and part.stop is not None:
                await part.stop(part.value)
        await self._close_registries()
        with self._making:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()

    async def _cancel_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        mine = [task for task in list(self._tasks) if task.get_loop() is loop]
        for task in mine:
            task.cancel()
        if mine:
            _, pending = await asyncio.wait(mine, timeout=CLOSE_TIMEOUT)
            for task in pending:
                log.warning("Task %s did not end when cancelled", task.get_name())
        self._tasks.difference_update(task for task in list(self._tasks) if task.get_loop().is_closed())

    async def _close_registries(self) -> None:
        loop = asyncio.get_running_loop()
        for registry in self._registries:
            value = registry.values.of.pop(loop, None)
            if value is not None and registry.close is not None:
                await registry.close(value)
            for closed in [other for other in list(registry.values.of) if other.is_closed()]:
                del registry.values.of[closed]


runtime = Runtime()  # the process's
