"""The checkpointer: one per process, it saves the partial text of every live reply at once.

The database sees a bounded number of writes per reply: a checkpoint of its partial text at
most once per CHAT_CHECKPOINT_INTERVAL while it changes, and a touch now and then while it
does not (so that other processes see it is alive), all replies in one transaction.
"""

import asyncio
import functools
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS, DatabaseError, OperationalError, connection, connections, transaction
from django.utils import timezone

from chat import conf, db
from chat.eventlog import get_event_log
from chat.models import Message

if TYPE_CHECKING:
    from chat.replies.generation import Engine, _Live

log = logging.getLogger("chat.generation")

STOPPED = Message.Status.STOPPED.value
STREAMING = Message.Status.STREAMING.value
_BATCH = 500  # ids per statement: far below SQLite's limit on query parameters
CHUNK = 25  # replies per checkpoint transaction (checkpoint_once)


async def checkpoint_once(engine: "Engine") -> None:
    """Save the text of every reply that changed; touch the idle ones now and then.

    In transactions of CHUNK replies, one after another: a send's write (on the same writer
    thread) waits for one of them at most, not for the whole round (issue 14: with 100
    replies running, a reply's first `status` at p99 went from 9-11.5 ms to 7.5-8.4 in runs
    taken in turns). Each chunk's texts are taken as it goes: a reply that ended meanwhile is
    left to its own final save.
    """
    ids = list(engine.live)
    for start in range(0, len(ids), CHUNK):
        if not await _checkpoint_some(engine, ids[start : start + CHUNK]):
            return


async def _checkpoint_some(engine: "Engine", ids: list[str]) -> bool:
    """One transaction for these replies; False when the database was too busy."""
    interval = conf.get_float("CHAT_CHECKPOINT_INTERVAL")
    touch_every = min(3 * interval, conf.stale_after() / 3)
    now = time.monotonic()
    changed: dict[str, str] = {}
    stepped: dict[str, tuple[int, dict]] = {}  # issue 12: replies whose steps changed
    idle: list[str] = []
    batch: dict[str, _Live] = {}
    for reply_id in ids:
        live = engine.live.get(reply_id)
        if live is None:  # ended since the round began: its final save has the text
            continue
        if live.steps.version != live.steps_saved:
            stepped[reply_id] = (live.steps.version, live.steps.stored())
        if live.text.length != live.saved or reply_id in stepped:
            changed[reply_id] = live.text.value()
        elif now - live.touched >= touch_every:
            idle.append(reply_id)
        else:
            continue
        batch[reply_id] = live
    if not batch:
        return True
    steps = {reply_id: fields for reply_id, (_, fields) in stepped.items()}
    future = asyncio.ensure_future(db.run_to_end(_save_batch, changed, idle, steps))
    for live in batch.values():
        live.inflight = future
    try:
        gone, failed = await future
    except OperationalError as exc:  # a busy database: try again at the next interval
        log.warning("Checkpoint of %d reply(ies) failed: %s", len(batch), exc)
        return False
    finally:
        for live in batch.values():
            live.inflight = None
    saved = []
    for reply_id, live in batch.items():
        if reply_id in failed:  # tried again at the next interval
            continue
        live.touched = now
        saved.append(reply_id)
        if reply_id in changed:
            live.saved = len(changed[reply_id])
        if reply_id in stepped:
            live.steps_saved = stepped[reply_id][0]
        if reply_id in gone:  # stop requested from another process, or the reply was deleted
            engine.cancel(reply_id, STOPPED)
    await get_event_log().keep(saved)
    return True


def _save_batch(
    changed: dict[str, str], idle: list[str], steps: dict[str, dict]
) -> tuple[set[str], set[str]]:
    """All replies in one transaction; if the database refuses one of them, one by one, so
    that one reply that cannot be saved never holds up the others. Returns the replies to
    stop and the replies that failed."""
    try:
        return _save_checkpoints(changed, idle, steps), set()
    except OperationalError:
        raise
    except DatabaseError as exc:
        log.warning(
            "Checkpoint of %d reply(ies) refused (%s): saving them one by one", len(changed) + len(idle), exc
        )
    gone: set[str] = set()
    failed: set[str] = set()
    for reply_id in [*changed, *idle]:
        one = {reply_id: changed[reply_id]} if reply_id in changed else {}
        try:
            gone |= _save_checkpoints(one, [] if one else [reply_id], steps)
        except OperationalError:
            raise
        except DatabaseError as exc:
            log.error("Checkpoint of reply %s failed: %s", reply_id, exc)
            failed.add(reply_id)
    return gone, failed


def _save_checkpoints(changed: dict[str, str], idle: list[str], steps: dict[str, dict]) -> set[str]:
    """One transaction; returns the replies to stop. `status` is set too: a sweeper that took
    a live reply for dead (its checkpoints held up behind a busy database) is corrected.

    Only a reply that still exists and is not asked to stop is written. The rows written say
    whether every reply was: only where fewer were is it asked which (issue 14: the question,
    asked each time, was a third of a checkpoint's CPU on SQLite, 5.5 of 16 µs a reply)."""
    ids = [*changed, *idle]
    now = timezone.now()
    with transaction.atomic():
        written = _update_texts(list(changed.items()), now) if changed else 0
        for start in range(0, len(idle), _BATCH):
            written += Message.objects.filter(
                pk__in=idle[start : start + _BATCH], stop_requested=False
            ).update(updated_at=now, status=STREAMING)
        gone: set[str] = set()
        if written != len(ids):  # some reply is gone, or asked to stop: which
            alive: set[str] = set()
            for start in range(0, len(ids), _BATCH):
                alive |= _not_stopped(ids[start : start + _BATCH])
            gone = set(ids) - alive
        for reply_id in changed:  # issue 12: reasoning and tool steps, with the text
            if reply_id in steps and reply_id not in gone:
                update_message(reply_id, steps[reply_id])
    return gone


def _db_id(reply_id: str, conn) -> object:
    return Message._meta.pk.get_db_prep_value(uuid.UUID(reply_id), conn)


def _connection():
    """This thread's default connection itself: each use of Django's `connection` proxy is a
    lookup in a context-local (asgiref's Local), some 20 of them per statement written here."""
    return connections[DEFAULT_DB_ALIAS]


def _not_stopped(ids: list[str]) -> set[str]:
    """The replies among `ids` that still exist and are not asked to stop. In SQL: the ORM's
    `pk__in` of every live reply, each second, was a few percent of the server's CPU at 400
    streams (issue 14's profile: UUIDField.get_prep_value and building the lookup)."""
    conn = _connection()
    quote, meta = conn.ops.quote_name, Message._meta
    sql = "SELECT {} FROM {} WHERE {} IN ({}) AND {} = %s".format(
        quote(meta.pk.column),
        quote(meta.db_table),
        quote(meta.pk.column),
        ", ".join(["%s"] * len(ids)),
        quote(meta.get_field("stop_requested").column),
    )
    rows = db.execute(conn, sql, [*(_db_id(reply_id, conn) for reply_id in ids), False], fetch=True)
    # A UUID, or its 32 hex digits (SQLite): the canonical text either way, as `ids` are.
    return {str(uuid.UUID(str(row[0]))) for row in rows}


def update_message(reply_id: str, fields: dict) -> int:
    """`Message.objects.filter(pk=reply_id).update(**fields)` in one statement of SQL, each
    value prepared by its field as the ORM would (issue 14: a reply's final save, 146 µs of CPU
    through the ORM, 90 so, on SQLite; its statement and preparers are made once per set of
    fields, `_update_statement`). The number of rows changed."""
    conn = _connection()
    sql, prepare = _update_statement(tuple(fields), conn.alias, conn.vendor)
    params = [p(value, conn) for p, value in zip(prepare, fields.values(), strict=True)]
    return db.execute(conn, sql, [*params, _db_id(reply_id, conn)])


@functools.cache
def _update_statement(names: tuple[str, ...], alias: str, vendor: str) -> tuple[str, tuple]:
    quote, meta = connections[alias].ops.quote_name, Message._meta
    columns = [meta.get_field(name) for name in names]
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in columns),
        quote(meta.pk.column),
    )
    return sql, db.preparers(columns, vendor)


def _update_texts(texts: list[tuple[str, str]], now) -> int:
    """One statement for all (reply id, text), an ORM update per reply costing more than the
    write; a reply asked to stop is left as it is. The number of rows written."""
    conn = _connection()
    quote, meta = conn.ops.quote_name, Message._meta
    sql = "UPDATE {} SET {} = %s, {} = %s, {} = %s WHERE {} = %s AND {} = %s".format(
        quote(meta.db_table),
        *(
            quote(meta.get_field(name).column)
            for name in ("content", "updated_at", "status", "id", "stop_requested")
        ),
    )
    when = conn.ops.adapt_datetimefield_value(now)
    params = [(content, when, STREAMING, _db_id(reply_id, conn), False) for reply_id, content in texts]
    return db.execute(conn, sql, params, many=True)


def wal_checkpoint() -> tuple[int, int, int]:
    """SQLite: copy the write-ahead log into the database file, as far as readers allow, without
    waiting for anyone (PASSIVE), on the calling thread's own connection; the writer threads
    leave it to this (chat/db.py). (busy, frames in the log, frames copied)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return cursor.fetchone()


async def checkpoint_forever(engine: "Engine") -> None:
    # SQLite's log is copied on a thread of its own, off the writer threads' queue, started
    # here with the server (not at some later request's moment) and ended with it.
    wal = ThreadPoolExecutor(1, thread_name_prefix="chat-wal") if connection.vendor == "sqlite" else None
    if wal is not None:
        wal.submit(int)
    loop = asyncio.get_running_loop()
    try:
        while True:
            await asyncio.sleep(conf.get_float("CHAT_CHECKPOINT_INTERVAL"))
            try:
                await checkpoint_once(engine)
                if wal is not None:
                    await loop.run_in_executor(wal, wal_checkpoint)
            except Exception:  # never let the checkpointer die: the next pass may succeed
                log.exception("Checkpoint failed")
    finally:
        if wal is not None:
            wal.submit(connections.close_all)  # that thread's own connection
            wal.shutdown(wait=False)
