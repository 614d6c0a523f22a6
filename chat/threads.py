"""The threads that run requests' sync work under `with_chat`: borrowed from a pool, and given
back by a stream once it is open.

Under ASGI, Django runs each request's sync work (its middleware hooks, the session, the ORM)
through asgiref's thread-sensitive mode, and by default that makes one new thread per request,
kept until the response ends. A reply's stream is a response that lasts minutes: each open
stream held a thread (about 30 KB of memory) and each request paid for starting and joining
one (a third of the event loop's time opening replies in a burst, by cProfile).

asgiref lets the caller of `ThreadSensitiveContext` give it the executor it uses (`executor=`,
asgiref 3.13, documented in its docstring: the caller owns the executor, which must run one
call at a time on one thread). `with_chat` enters such a context around Django's handler with
a `RequestExecutor` per request, which borrows a worker thread from `RequestThreads` at the
request's first sync call. A stream, once its first event is out, calls
`release_request_thread()`: the worker sees to the request's database connections as a
request's end would (Django's `close_old_connections`) and goes back to the pool; a sync call
later in that request (the response's close at the end, which sends `request_finished`)
borrows a worker again. Each request's sync work still runs on one thread at a time, in order,
as thread-sensitive code needs. Threads are reused across requests, as a WSGI server's are.
Django's own signals and receivers are untouched.
"""

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections, connections

from chat.runtime import runtime

IDLE_KEPT = 32  # idle worker threads kept for the next requests (a burst reuses them)


class RequestThreads:
    """Single-worker executors for requests, lent and taken back (on the event loop, mostly)."""

    def __init__(self, keep: int = IDLE_KEPT) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []
        self.made = 0  # workers made so far
        self.lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.idle:
                return self.idle.pop()
            self.made += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-request")

    def give(self, worker: ThreadPoolExecutor) -> None:
        with self.lock:
            if len(self.idle) < self.keep:
                self.idle.append(worker)
                return
        _let_go(worker)

    async def close(self) -> None:
        """Let every idle worker go (the server stops); a worker lent out goes when given back."""
        with self.lock:
            idle, self.idle = self.idle, []
            self.keep = 0
        for worker in idle:
            _let_go(worker)

    async def reopen(self, keep: int = IDLE_KEPT) -> None:
        with self.lock:
            self.keep = keep


def request_threads() -> RequestThreads:
    """The process's pool, owned by the runtime: its idle threads end when the runtime stops."""
    return runtime.part(
        "chat-request-threads", RequestThreads, start=RequestThreads.reopen, stop=RequestThreads.close
    )


def _let_go(worker: ThreadPoolExecutor) -> None:
    worker.submit(connections.close_all)  # its thread's connections end with it
    worker.shutdown(wait=False)


class RequestExecutor(Executor):
    """One request's thread-sensitive executor: a borrowed worker, one call at a time."""

    def __init__(self, threads: RequestThreads) -> None:
        self.threads = threads
        self.worker: ThreadPoolExecutor | None = None
        self.last: Future | None = None  # one worker runs calls in order: the last done, all are

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self.worker is None:
            self.worker = self.threads.take()
        self.last = self.worker.submit(fn, *args, **kwargs)
        return self.last

    def give_back(self) -> bool:
        """The worker goes back to the pool, unless a call is still running on it."""
        worker = self.worker
        if worker is None or (self.last is not None and not self.last.done()):
            return False
        self.worker = self.last = None
        self.threads.give(worker)
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.give_back()


_current: contextvars.ContextVar[RequestExecutor | None] = contextvars.ContextVar(
    "chat_request_executor", default=None
)


class request_context:  # noqa: N801 - used as `async with request_context(threads):`, like asgiref's
    """Around one HTTP request: asgiref's thread-sensitive context on a worker from `threads`."""

    def __init__(self, threads: RequestThreads) -> None:
        self.executor = RequestExecutor(threads)
        self.context = ThreadSensitiveContext(executor=self.executor)

    async def __aenter__(self) -> "request_context":
        self.token = _current.set(self.executor)
        await self.context.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.context.__aexit__(*exc)
        finally:
            _current.reset(self.token)
            self.executor.give_back()


async def release_request_thread() -> None:
    """Once a stream is open: its request's database connections seen to as at a request's end
    (closed unless CONN_MAX_AGE keeps them; a pooled PostgreSQL connection goes back to the
    pool), and its thread given back. An open stream may last minutes: holding a connection
    that long would let a pool of ten be emptied by ten idle streams, and holding a thread
    costs memory per stream.

    Under `with_chat` the close is queued on the request's worker, which then goes back to the
    pool (the stream waits for neither); elsewhere (no `with_chat`, Django's test client) the
    close runs on the request's own thread and the thread stays until the response ends.
    """
    executor = _current.get()
    if executor is None:
        await sync_to_async(close_old_connections)()
        return
    if executor.worker is None:
        return
    # Queued on the worker itself: whoever borrows it next runs after the close.
    executor.worker.submit(close_old_connections)
    executor.give_back()
