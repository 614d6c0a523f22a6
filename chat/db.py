"""The replies' database work, on a few threads of their own (`run`, `run_to_end`).

The replies outlive the requests that start them, so their writes cannot use a request's
thread (Django closes that thread's connection when the request ends). A fixed pool keeps
threads and connections bounded however many replies run; on SQLite one writer thread means
writes queue here instead of meeting in SQLite's lock, whose busy handler sleeps in steps of
up to 100 ms. The runtime (chat/runtime.py) owns the pool: it ends with the server.
"""

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, connection
from django.db.backends.signals import connection_created

from chat import conf
from chat.runtime import runtime

T = TypeVar("T")
POOL = "chat-db"
_writers = threading.local()  # `.active` on the writer threads


def _mark_writer() -> None:
    _writers.active = True


def _no_autocheckpoint_on_writers(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite: the writer threads' connections leave the write-ahead log to the checkpointer.

    With SQLite's default, the commit that takes the log past 1,000 pages copies it into the
    database file, several milliseconds at a hundred running replies, and whatever write
    came next on the writer thread waited (a reply's first `status` at p99). The checkpointer
    copies it instead, off these threads, each second (chat/replies/checkpoints.py
    `wal_checkpoint`); every other connection, the host's own, keeps SQLite's default.
    """
    if connection.vendor == "sqlite" and getattr(_writers, "active", False):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=0")


connection_created.connect(_no_autocheckpoint_on_writers, dispatch_uid="chat-writers-no-autocheckpoint")


def _threads() -> int:
    configured = conf.get("CHAT_DB_THREADS")
    if configured:
        return int(configured)
    return 1 if connection.vendor == "sqlite" else 4


def executor() -> ThreadPoolExecutor:
    """The writer threads' pool (the runtime's, made on first use)."""
    return runtime.executor(POOL, _threads, _mark_writer)


def _call(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        # A broken connection must not fail this thread's later work: the next call reconnects.
        connection.close_if_unusable_or_obsolete()
        raise


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor(), functools.partial(_call, fn, args, kwargs))


async def run_to_end(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Like run(), but a cancellation arriving meanwhile waits for the write to finish."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(executor(), functools.partial(_call, fn, args, kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
