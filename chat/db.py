"""Database work of background replies, on a few threads of their own.

The replies outlive the requests that start them, so their writes cannot use a request's
thread (Django closes that thread's connection when the request ends). A fixed pool keeps
threads and connections bounded however many replies run.
"""

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, connection, connections, models, router
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save, pre_save

from chat import conf

T = TypeVar("T")
_executor: ThreadPoolExecutor | None = None
_writers = threading.local()  # `.active` on the writer threads


def _mark_writer() -> None:
    _writers.active = True


def _no_autocheckpoint_on_writers(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite: the writer threads' connections leave the WAL to the checkpointer.

    With SQLite's default, the commit that takes the write-ahead log past 1,000 pages copies
    it into the database file, several milliseconds at a hundred running replies, and
    whatever write of the writer thread came next waited (issue 14: a reply's first `status`
    at p99). The checkpointer copies it instead, off these threads, each second
    (chat/replies/checkpoints.py `wal_checkpoint`); other connections keep SQLite's default.
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
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=_threads(), thread_name_prefix="chat-db", initializer=_mark_writer
        )
    return _executor


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


def insert(objs: list[models.Model]) -> None:
    """Insert new rows of one model in one statement, each value prepared by its field as the
    ORM's insert does (`pre_save`, then `get_db_prep_save`), on this thread's connection.

    Issue 14: storing a turn (a conversation and its first two messages) through `save()` and
    `bulk_create()` was about 350 µs of CPU on SQLite, most of it the ORM building and
    compiling the statements; 230 so. The rows' primary keys come from their
    defaults (UUIDs here), not from the database. A model with `pre_save` or `post_save`
    receivers (a host project's) goes through `save()`, so they run as they always did, and so
    does a value that is an expression (a database default, an F()).
    """
    model = type(objs[0])
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        for obj in objs:
            obj.save(force_insert=True)
        return
    fields = model._meta.local_concrete_fields
    values = [[field.pre_save(obj, True) for field in fields] for obj in objs]
    if any(hasattr(value, "resolve_expression") for row in values for value in row):
        model.objects.bulk_create(objs)
        return
    conn = connections[router.db_for_write(model)]  # the connection itself, not the thread's proxy
    quote = conn.ops.quote_name
    placeholders = "({})".format(", ".join(["%s"] * len(fields)))
    sql = "INSERT INTO {} ({}) VALUES {}".format(
        quote(model._meta.db_table),
        ", ".join(quote(f.column) for f in fields),
        ", ".join([placeholders] * len(objs)),
    )
    params = [f.get_db_prep_save(v, conn) for row in values for f, v in zip(fields, row, strict=True)]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
    for obj in objs:
        obj._state.adding, obj._state.db = False, conn.alias
