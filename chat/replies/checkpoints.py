"""The checkpointer: one per process, it saves the partial text of every live reply at once.

The database sees a bounded number of writes per reply: a checkpoint of its partial text at
most once per CHAT_CHECKPOINT_INTERVAL while it changes, and a touch now and then while it
does not (so that other processes see it is alive), all replies in one transaction.

It knows the reply engine only through `LiveReplies`, what it asks of it: a snapshot of
what changed, and what was saved.
"""

import asyncio
import logging
import time
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from chat import conf, db
from chat.eventlog import get_event_log
from chat.models import Message
from chat.runtime import runtime

log = logging.getLogger("chat.generation")

STOPPED = Message.Status.STOPPED.value
STREAMING = Message.Status.STREAMING.value
_BATCH = 500  # ids per statement: far below SQLite's limit on query parameters
CHUNK = 25  # replies per checkpoint transaction (checkpoint_once)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a checkpoint saves of one live reply: its text if it changed (else it is only
    touched), its steps' stored fields if they changed, and the versions it was taken at."""

    reply_id: str
    text: str | None
    steps: dict | None
    steps_version: int


class LiveReplies(Protocol):
    """What the checkpointer needs of the reply engine (chat/replies/generation.py Engine)."""

    def running_ids(self) -> Container[str]: ...

    def snapshot(self, ids: list[str], *, now: float, touch_every: float) -> list[Snapshot]:
        """Of these replies, those still live with something to save: a change, or no touch
        for `touch_every` seconds."""

    def saving(self, snapshots: list[Snapshot], write: asyncio.Future) -> None:
        """Their final save waits for `write` (a checkpoint must not land after it)."""

    def mark_saved(self, snapshots: list[Snapshot], *, now: float) -> None: ...

    def cancel(self, reply_id: str, reason: str) -> object: ...


async def checkpoint_once(engine: LiveReplies) -> None:
    """Save the text of every reply that changed; touch the idle ones now and then.

    In transactions of CHUNK replies, one after another: a send's write (on the same writer
    thread) waits for one of them at most, not for the whole round (with 100 replies
    running, a reply's first `status` at p99 went from 9-11.5 ms to 7.5-8.4 in runs taken in
    turns). Each chunk is taken as it goes: a reply that ended meanwhile is left to its own
    final save.
    """
    ids = list(engine.running_ids())
    for start in range(0, len(ids), CHUNK):
        if not await _checkpoint_some(engine, ids[start : start + CHUNK]):
            return


async def _checkpoint_some(engine: LiveReplies, ids: list[str]) -> bool:
    """One transaction for these replies; False when the database was too busy."""
    interval = conf.get_float("CHAT_CHECKPOINT_INTERVAL")
    now = time.monotonic()
    snapshots = engine.snapshot(ids, now=now, touch_every=min(3 * interval, conf.stale_after() / 3))
    if not snapshots:
        return True
    changed = {s.reply_id: s.text for s in snapshots if s.text is not None}
    idle = [s.reply_id for s in snapshots if s.text is None]
    steps = {s.reply_id: s.steps for s in snapshots if s.steps is not None}
    write = asyncio.ensure_future(db.run_to_end(_save_batch, changed, idle, steps))
    engine.saving(snapshots, write)
    try:
        gone, failed = await write
    except OperationalError as exc:  # a busy database: try again at the next interval
        log.warning("Checkpoint of %d reply(ies) failed: %s", len(snapshots), exc)
        return False
    saved = [s for s in snapshots if s.reply_id not in failed]  # the failed: again next interval
    engine.mark_saved(saved, now=now)
    for reply_id in gone:  # stop requested from another process, or the reply was deleted
        engine.cancel(reply_id, STOPPED)
    await get_event_log().keep([s.reply_id for s in saved])
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
    whether every reply was: only where fewer were is it asked which (asked each time, the
    question was a third of a checkpoint's CPU on SQLite)."""
    ids = [*changed, *idle]
    now = timezone.now()
    live = Message.objects.filter(stop_requested=False)
    with transaction.atomic():
        written = _update_texts(changed, now) if changed else 0
        for start in range(0, len(idle), _BATCH):
            touched = live.filter(pk__in=idle[start : start + _BATCH])
            written += touched.update(updated_at=now, status=STREAMING)
        gone: set[str] = set()
        if written != len(ids):  # some reply is gone, or asked to stop: which
            alive: set[str] = set()
            for start in range(0, len(ids), _BATCH):
                alive |= _not_stopped(ids[start : start + _BATCH])
            gone = set(ids) - alive
        for reply_id in changed:  # reasoning and tool steps, with the text
            if reply_id in steps and reply_id not in gone:
                update_message(reply_id, steps[reply_id])
    return gone


def _update_texts(texts: dict[str, str], now: datetime) -> int:
    """Every (reply, text) in one statement run many times on Django's cursor (`executemany`);
    a reply asked to stop is left as it is. The number of rows written.

    Its SQL, because a checkpoint writes every live reply each interval: with 100 replies on
    SQLite, a round cost 7.8M instructions so, 70M as one `update()` per reply, 98M as one
    `update()` of a Case/When, 287M with `bulk_update` (callgrind, 4 chunks of 25)."""
    meta, quote = Message._meta, connection.ops.quote_name
    content, updated_at, status, pk, stop = (
        meta.get_field(name) for name in ("content", "updated_at", "status", "id", "stop_requested")
    )
    sql = "UPDATE {} SET {} = %s, {} = %s, {} = %s WHERE {} = %s AND {} = %s".format(
        quote(meta.db_table), *(quote(f.column) for f in (content, updated_at, status, pk, stop))
    )

    def prepared(field: Field, value: object) -> object:  # as the ORM prepares the field's values
        return field.get_db_prep_value(value, connection)

    same = prepared(updated_at, now), prepared(status, STREAMING)
    not_stopped = prepared(stop, False)
    rows = [(prepared(content, text), *same, prepared(pk, rid), not_stopped) for rid, text in texts.items()]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def _not_stopped(ids: list[str]) -> set[str]:
    """The replies among `ids` that still exist and are not asked to stop."""
    found = Message.objects.filter(pk__in=ids, stop_requested=False).values_list("pk", flat=True)
    return {str(pk) for pk in found}


def update_message(reply_id: str, fields: dict) -> int:
    """Write these fields of one message; the number of rows changed (0: it is gone)."""
    return Message.objects.filter(pk=reply_id).update(**fields)


def wal_checkpoint() -> tuple[int, int, int]:
    """SQLite: copy the write-ahead log into the database file, as far as readers allow, without
    waiting for anyone (PASSIVE), on the calling thread's own connection; the writer threads
    leave it to this (chat/db.py). (busy, frames in the log, frames copied)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return cursor.fetchone()


async def checkpoint_forever(engine: LiveReplies) -> None:
    # SQLite's log is copied on a thread of its own, off the writer threads' queue, started
    # here with the server (not at some later request's moment); the runtime ends it.
    wal = runtime.executor("chat-wal", 1) if connection.vendor == "sqlite" else None
    if wal is not None:
        wal.submit(int)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(conf.get_float("CHAT_CHECKPOINT_INTERVAL"))
        try:
            await checkpoint_once(engine)
            if wal is not None:
                await loop.run_in_executor(wal, wal_checkpoint)
        except Exception:  # never let the checkpointer die: the next pass may succeed
            log.exception("Checkpoint failed")
