"""Give back, during a long response, the thread and connection Django holds for the request.

The one place that touches asgiref's private state. asgiref runs each ASGI request's sync work
(its ThreadSensitiveContext) on a thread of its own, kept with its database connection until
the response ends; a stream stays open for minutes, so a thousand streams would hold a
thousand threads and connections (PostgreSQL's default limit is 100). The thread per request
is by design (Django ticket #32889, asgiref PR #227, which added the two attributes used
here); Django ticket #33497, about connections held under ASGI, was closed as documentation
only, and asgiref offers no public way to let the thread go early. So this reaches
`SyncToAsync.thread_sensitive_context` and `SyncToAsync.context_to_thread_executor`:
relied on for asgiref >=3.8.1 (Django 5.2's minimum) to 3.13 (checked with 3.13.0; pinned
below 4 in pyproject.toml). If a version renames them, this does nothing (the stream still
works, holding its thread) and logs it once; tests/test_request_thread.py fails to say so.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync, sync_to_async
from django.db import connections

log = logging.getLogger("chat.streams")
_warned = False


def _request_executor() -> tuple[object, ThreadPoolExecutor] | tuple[None, None]:
    """The current request's context and its thread executor, if asgiref still keeps them so."""
    global _warned
    contexts = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if contexts is None or executors is None:
        if not _warned:
            _warned = True
            log.warning("asgiref changed: open streams keep their request's thread (chat/request_thread.py)")
        return None, None
    context = contexts.get(None)
    executor = executors.get(context) if context is not None else None
    return (context, executor) if executor is not None else (None, None)


async def release_request_thread() -> None:
    """Close this request's database connections and let its thread go.

    Runs when a stream's body starts, after the middleware; a later sync call in this request
    simply gets a new thread.
    """
    context, executor = _request_executor()
    if executor is None:
        return
    await sync_to_async(connections.close_all)()
    SyncToAsync.context_to_thread_executor.pop(context, None)
    executor.shutdown(wait=False)
