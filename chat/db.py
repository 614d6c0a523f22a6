"""Database work of background replies, on a few threads of their own.

The replies outlive the requests that start them, so their writes cannot use a request's
thread (Django closes that thread's connection when the request ends). A fixed pool keeps
threads and connections bounded however many replies run.
"""

import asyncio
import datetime
import functools
import operator
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, connection, connections, models, router
from django.db.backends.signals import connection_created
from django.db.models import fields as django_fields
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
    conn = connections[router.db_for_write(model)]  # the connection itself, not the thread's proxy
    sql, read, prepare = _insert_statement(model, conn.alias, conn.vendor, len(objs))
    values = [[get(obj) for get in read] for obj in objs]
    if any(hasattr(value, "resolve_expression") for row in values for value in row):
        model.objects.bulk_create(objs)
        return
    params = [p(v, conn) for row in values for p, v in zip(prepare, row, strict=True)]
    execute(conn, sql, params)
    for obj in objs:
        obj._state.adding, obj._state.db = False, conn.alias


@functools.cache
def _insert_statement(
    model: type[models.Model], alias: str, vendor: str, rows: int
) -> tuple[str, tuple, tuple]:
    """The INSERT of `rows` rows of `model` on that connection, how each column's value is read
    from an object (`pre_save`) and how it is prepared (`_preparer`): the same for every turn,
    so made once (issue 14)."""
    conn = connections[alias]
    fields = model._meta.local_concrete_fields
    read = tuple(_reader(field) for field in fields)
    quote = conn.ops.quote_name
    placeholders = "({})".format(", ".join(["%s"] * len(fields)))
    sql = "INSERT INTO {} ({}) VALUES {}".format(
        quote(model._meta.db_table),
        ", ".join(quote(f.column) for f in fields),
        ", ".join([placeholders] * rows),
    )
    return sql, read, preparers(fields, vendor)


def preparers(fields: list[models.Field], vendor: str) -> tuple[Callable[[Any, Any], Any], ...]:
    """How to prepare each field's value on a connection of `vendor`, as `get_db_prep_save`."""
    if vendor not in ("sqlite", "postgresql"):  # the backends whose adapt_* methods `_preparer` knows
        return tuple(field.get_db_prep_save for field in fields)
    return tuple(_preparer(field) for field in fields)


def _reader(field: models.Field) -> Callable[[models.Model], Any]:
    """`field.pre_save(obj, add=True)`: the attribute itself where that is all it does (Django's
    own `pre_save`, or a date field's without auto_now or auto_now_add)."""
    pre_save = type(field).pre_save
    plain = pre_save is models.Field.pre_save or (
        pre_save in (models.DateField.pre_save, models.DateTimeField.pre_save)
        and not (field.auto_now or field.auto_now_add)
    )
    if plain:
        return operator.attrgetter(field.attname)
    return functools.partial(field.pre_save, add=True)


# Django's own field classes (exactly these, not subclasses, which may prepare values their own
# way) whose `get_db_prep_save` gives back a value of these types unchanged.
_AS_IS: dict[type, tuple[type, ...]] = {
    django_fields.CharField: (str, type(None)),
    django_fields.TextField: (str, type(None)),
    django_fields.BooleanField: (bool, type(None)),
    django_fields.IntegerField: (type(None),),
    django_fields.PositiveIntegerField: (type(None),),
    django_fields.BigIntegerField: (type(None),),
}


def _preparer(field: models.Field) -> Callable[[Any, Any], Any]:
    """`field.get_db_prep_save(value, conn)`, with the layers it goes through skipped for the
    usual values of Django's own fields: storing a turn prepared some 50 values through
    three or four calls each, about half of `insert`'s CPU (issue 14: the writer thread's
    share of opening a reply). Any other value or field goes through Django's method."""
    general = field.get_db_prep_save
    kind = type(field)
    if kind is models.ForeignKey:  # a key is prepared by the field it points to, unless None or ""
        target = _preparer(field.target_field)

        def prepare_key(value: Any, conn: Any) -> Any:
            return general(value, conn) if value is None or value == "" else target(value, conn)

        return prepare_key
    if kind in _AS_IS:
        as_is = _AS_IS[kind]

        def prepare(value: Any, conn: Any) -> Any:
            return value if type(value) in as_is else general(value, conn)

        return prepare
    if kind is django_fields.UUIDField:

        def prepare_uuid(value: Any, conn: Any) -> Any:
            if type(value) is not uuid.UUID:
                return general(value, conn)
            return value if conn.features.has_native_uuid_field else value.hex

        return prepare_uuid
    if kind is django_fields.DateTimeField:

        def prepare_datetime(value: Any, conn: Any) -> Any:
            if type(value) is not datetime.datetime or value.tzinfo is None:  # naive: Django warns
                return general(value, conn)
            return conn.ops.adapt_datetimefield_value(value)

        return prepare_datetime
    return general


def execute(conn: Any, sql: str, params: Sequence, *, many: bool = False, fetch: bool = False) -> Any:
    """One of the app's own statements (`%s` placeholders) on `conn`, as `conn.cursor()` runs
    it: the rows if `fetch`, else the row count; `many`: `executemany` over `params`.

    On SQLite, Django's cursor turns each `%s` into `?` with a regular expression at every
    execution, scanning the whole statement: three times per reply opened, about 230K of its
    6.7M instructions (issue 14, counted with callgrind; a turn's INSERT is a long statement);
    going round Django's SQLite cursor class took 350K off (6,671K to 6,321K).
    Where nothing watches the connection's queries (no debug log, no execute wrapper), the
    statement goes to the driver's own cursor, converted once by Django's own method, inside
    Django's cursor wrapper, which still checks the thread and the transaction and translates
    errors as it does for any query. Where something watches, the statement goes through
    Django's SQLite cursor unchanged, so the log and the wrappers see what they always saw.
    """
    if conn.vendor == "sqlite" and not conn.queries_logged and not conn.execute_wrappers:
        cursor, sql = _driver_cursor(conn), _qmark(sql)
    else:
        cursor = conn.cursor()
    with cursor:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.fetchall() if fetch else cursor.rowcount


def _driver_cursor(conn: Any) -> Any:
    """`conn.cursor()` (Django's `_cursor`) around the driver's own cursor, not Django's SQLite one."""
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        conn.validate_thread_sharing()
        return conn.make_cursor(conn.connection.cursor())


@functools.lru_cache(maxsize=128)
def _qmark(sql: str) -> str:
    # Imported here: a project on PostgreSQL never loads the SQLite backend for this.
    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    return SQLiteCursorWrapper.convert_query(None, sql)  # Django's conversion; it reads nothing of the cursor
