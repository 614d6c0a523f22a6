"""The thread a request's sync work runs on: borrowed from a pool, given back once a stream is open.

Under ASGI, Django runs each request inside asgiref's ThreadSensitiveContext, and by default
that context makes a thread of its own (a ThreadPoolExecutor of one worker) on the request's
first sync call and shuts it down when the response ends. Two costs came of it (issue 14's
profile of 400 replies opened in a burst): making a thread per request, and, for a stream
that stays open for minutes, holding that thread and its database connection for as long
(Django ticket #33497 was closed as documentation only; #32889 and asgiref PR #227 explain
why the thread is per request).

asgiref 3.13 lets the caller give the context its executor (`ThreadSensitiveContext(
executor=...)`, public; the caller owns it). So `request_context()` gives each HTTP request a
`RequestExecutor` that borrows a worker thread from a small pool on the request's first sync
call; `release_request_thread()`, once a stream has sent its first event, has that thread
see to its database connections as a request's end would (`close_old_connections`: closed
unless CONN_MAX_AGE keeps them; SQLite's are kept, see project/settings.py) and gives the
worker back, and a sync call later in the same request (the response's close at the end)
borrows one again. A stream that goes on without Django's handler (chat/sse.py, `GO_ON`) needs
no release: the handler then finishes the request at once (the response's close, on that
thread) and the context's end gives the worker back. Each request's sync work still runs on
one thread at a time, as thread-sensitive code needs; no private asgiref state is used.
`chat.asgi.with_chat` enters the context around Django's ASGI handler; a request served
without it (Django's test client) keeps asgiref's own behaviour.
"""

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.signals import request_started
from django.db import close_old_connections, connections, reset_queries

IDLE_KEPT = 32  # idle worker threads kept for the next requests (a burst reuses them); more are shut down


class ThreadPool:
    """Single-worker executors for requests, handed out and taken back on the event loop."""

    def __init__(self, keep: int = IDLE_KEPT) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []
        self.made = 0  # worker threads made so far (tests and the benchmark's notes)
        self.lent = 0  # times a worker was taken, for a request (tests)
        self.lock = threading.Lock()  # take/give run on the loop; the lock keeps others safe

    def take(self) -> ThreadPoolExecutor:
        with self.lock:
            self.lent += 1
            if self.idle:
                return self.idle.pop()
            self.made += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-request")

    def give(self, worker: ThreadPoolExecutor) -> None:
        with self.lock:
            if len(self.idle) < self.keep:
                self.idle.append(worker)
                return
        worker.submit(connections.close_all)  # a kept connection would outlive its thread
        worker.shutdown(wait=False)


pool = ThreadPool()


class DjangoReceivers:
    """Django's own receivers of one of its signals, taken over by the chat lifespan: while it
    runs, they are disconnected from the signal and the app runs them itself, where it chooses
    (`request_started` here, `request_finished` in chat/handling.py; issue 14)."""

    def __init__(self, signal: Any, receivers: tuple[Callable[..., Any], ...]) -> None:
        self.signal = signal
        self.receivers = receivers
        self.taken = False

    def take_over(self) -> None:
        for receiver in self.receivers:
            self.signal.disconnect(receiver)
        self.taken = True

    def give_back(self) -> None:
        for receiver in self.receivers:
            self.signal.connect(receiver)
        self.taken = False

    def run(self) -> None:
        for receiver in self.receivers:
            receiver(sender=None)


# django/db/__init__.py connects these
REQUEST_STARTED = DjangoReceivers(request_started, (reset_queries, close_old_connections))


def take_over_request_started() -> None:
    """Run Django's own `request_started` receivers on each request's thread, ahead of its
    first sync call there, instead of in a hop of their own.

    Both receivers see to the connections of the thread they run on; `Signal.asend` runs
    them through `sync_to_async`, one round trip to the request's thread before the view
    starts (issue 14: one of three hops before a reply's `status`). Queued on the worker ahead
    of the request's first call, they run on the same thread, before it, with no wait of
    their own. A request that makes no sync call has no connection to see to. The chat
    app's lifespan calls this at start-up and `give_back_request_started` at shutdown.
    """
    REQUEST_STARTED.take_over()


def give_back_request_started() -> None:
    REQUEST_STARTED.give_back()


class RequestExecutor(Executor):
    """One request's thread-sensitive executor: a borrowed worker, one call at a time."""

    def __init__(self, threads: ThreadPool) -> None:
        self.threads = threads
        self.worker: ThreadPoolExecutor | None = None
        self.last: Future | None = None  # one worker runs calls in order: the last one done, all are
        self.started = not REQUEST_STARTED.taken  # Django's request_started receivers have run (or will)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self.worker is None:
            self.worker = self.threads.take()
        if not self.started:
            self.started = True
            self.worker.submit(REQUEST_STARTED.run)
        self.last = self.worker.submit(fn, *args, **kwargs)
        return self.last

    def give_back(self) -> bool:
        """The worker goes back to the pool if it has no call in flight."""
        worker = self.worker
        if worker is None or (self.last is not None and not self.last.done()):
            return False
        self.worker = self.last = None  # an open stream keeps neither (memory per idle stream)
        self.threads.give(worker)
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.give_back()


_current: contextvars.ContextVar[RequestExecutor | None] = contextvars.ContextVar(
    "chat_request_executor", default=None
)


class request_context:  # noqa: N801 - used as `async with request_context():`, like asgiref's
    """Around one HTTP request: asgiref's thread-sensitive context on a pooled worker."""

    def __init__(self, threads: ThreadPool = pool) -> None:
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


def holds_thread() -> bool:
    """Whether this request holds a worker thread now (outside `request_context`, as if it did:
    its thread is asgiref's own)."""
    executor = _current.get()
    return executor is None or executor.worker is not None


async def release_request_thread() -> None:
    """Give this request's thread back to the pool, its database connections seen to first
    (closed unless CONN_MAX_AGE keeps them, as at the end of a request).

    Runs once a stream has sent its first event; a later sync call in this request borrows a
    worker again. The close is queued on that thread, not awaited: the next request to borrow
    the worker runs after it, and the stream does not wait for a hop. Where every connection
    persists there is nothing to close, and nothing is queued. Outside
    `request_context` (Django's test client) this does nothing: asgiref's own per-request
    thread then stays until the response ends.
    """
    executor = _current.get()
    if executor is None or executor.worker is None:
        return
    if not _connections_persist():
        executor.worker.submit(close_old_connections)  # per thread: this sees to that thread's
    executor.give_back()


def _connections_persist() -> bool:
    """Every database keeps its connections (CONN_MAX_AGE None: SQLite, project/settings.py).

    Then the close above would find nothing to close, and cost the worker a wake-up of its own
    per stream (issue 14): a connection that broke is seen to by the `request_started`
    receivers the worker's next request queues ahead of its first call, or when the pool lets
    the worker go.
    """
    return all(database.get("CONN_MAX_AGE") is None for database in connections.settings.values())
