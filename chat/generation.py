"""Runs replies in the background: provider -> event log -> database.

A reply is a task on the server's event loop, not part of any HTTP response: clients come
and go, the reply goes on. The database sees a bounded number of writes per reply: the
insert, a checkpoint of the partial text at most once per CHAT_CHECKPOINT_INTERVAL while it
changes, a touch now and then while it does not (so that other processes see it is alive),
and the final save, once. One checkpointer per process writes them for every reply at once,
in one transaction.
"""

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Container
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone

from chat import conf, db
from chat.eventlog import End, get_event_log
from chat.models import Message
from chat.providers import Finish, Prompt, Provider, ProviderError
from chat.steps import Steps, record_step
from chat.text import clean_model_text
from chat.tools.rounds import reply_items

if TYPE_CHECKING:
    from chat.admission import Admission

log = logging.getLogger("chat.generation")

STOPPED, INTERRUPTED = Message.Status.STOPPED.value, Message.Status.INTERRUPTED.value
STREAMING = Message.Status.STREAMING.value
_BATCH = 500  # ids per statement: far below SQLite's limit on query parameters


class _Text:
    """The reply's text so far, joined only when saved."""

    __slots__ = ("chunks", "length")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.length = 0

    def append(self, delta: str) -> None:
        self.chunks.append(delta)
        self.length += len(delta)

    def value(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""


@dataclass(eq=False)
class _Live:
    """A reply this process is generating."""

    task: asyncio.Task | None = None
    text: _Text = field(default_factory=_Text)
    saved: int = 0  # text length in the database
    touched: float = field(default_factory=time.monotonic)
    inflight: asyncio.Future | None = None  # a checkpoint being written
    reason: str | None = None  # why it was cancelled: STOPPED or INTERRUPTED
    admission: "Admission | None" = None  # the limits it holds and the cache (chat/admission.py)
    steps: Steps = field(default_factory=Steps)  # reasoning and tool steps (issue 12)
    steps_saved: int = 0  # steps.version in the database


_live: dict[str, _Live] = {}
_background: dict[str, asyncio.Task] = {}


def running_ids() -> Container[str]:
    """The ids of the replies this process is generating (a live view)."""
    return _live.keys()


async def reply_start(
    *, reply_id: str, provider: Provider, prompt: Prompt, admission: "Admission | None" = None
) -> asyncio.Task:
    """Start generating on this event loop, in a context of its own (not the request's).

    The log is opened before the task runs, so a stream asked for at once finds it live.
    """
    if admission is not None:  # a cached answer, if any, replaces the model
        provider = await admission.started(reply_id, provider, prompt)
    cached = admission is not None and admission.cached
    events = get_event_log()
    await events.open(reply_id)
    await events.set_status(reply_id, "cached" if cached else "thinking")
    live = _live[reply_id] = _Live(admission=admission)
    live.task = asyncio.get_running_loop().create_task(
        _run(reply_id, live, provider, prompt), name=f"reply-{reply_id}", context=contextvars.Context()
    )
    ensure_background()
    return live.task


def _cancel(reply_id: str, reason: str) -> asyncio.Task | None:
    live = _live.get(reply_id)
    if live is None or live.task is None or live.task.done():
        return None
    live.reason = live.reason or reason
    live.task.cancel()
    return live.task


async def reply_cancel(reply_id: str, reason: str = STOPPED) -> bool:
    """Cancel a reply running in this process and wait until it is saved; False if none."""
    task = _cancel(reply_id, reason)
    if task is None:
        return False
    await asyncio.wait([task])
    return True


async def interrupt_all(timeout: float = 10.0) -> int:
    """Server shutdown: every reply in flight is saved with its text as `interrupted`."""
    tasks = [t for rid in list(_live) if (t := _cancel(rid, INTERRUPTED)) is not None]
    if tasks:
        log.info("Saving %d reply(ies) in flight as interrupted", len(tasks))
        await asyncio.wait(tasks, timeout=timeout)
    return len(tasks)


async def _run(reply_id: str, live: _Live, provider: Provider, prompt: Prompt) -> None:
    events = get_event_log()
    started = time.monotonic()
    first_token: float | None = None
    finish = Finish()
    end_status, error, code = Message.Status.COMPLETE.value, None, None
    try:
        # reply_items: the provider's rounds, tool calls run between them (issue 12).
        async with aclosing(reply_items(provider, prompt, reply_id=reply_id)) as stream:
            async for item in stream:
                if isinstance(item, Finish):
                    finish = item
                elif isinstance(item, str):
                    if item := clean_model_text(item):
                        if first_token is None:
                            first_token = time.monotonic()
                        live.steps.close_run()
                        live.text.append(item)
                        await events.append(reply_id, item)
                elif step := record_step(live.steps, item, live.text.length):  # issue 12
                    if first_token is None:
                        first_token = time.monotonic()
                    await events.append_step(reply_id, step)
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()  # the reply ends here, by design: it is saved below
        end_status = live.reason or INTERRUPTED
    except ProviderError as exc:
        end_status, error, code = Message.Status.ERROR.value, exc.message, exc.code
    except Exception:
        log.exception("Reply %s failed", reply_id)
        end_status, error, code = (
            Message.Status.ERROR.value,
            "The model failed unexpectedly; the server log has the details.",
            "internal_error",
        )
    # issue 12: a tool stopped while it ran gets an outcome, so that replays match the stream.
    if step := live.steps.end(end_status):
        await events.append_step(reply_id, step)
    _live.pop(reply_id, None)
    if live.inflight is not None:  # the final save must come after a checkpoint under way
        await asyncio.wait([live.inflight])
    usage = finish.usage
    end = End(
        status=end_status,
        finish_reason=finish.reason,
        usage=None
        if usage is None
        else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        error=error,
        error_code=code,
        cached=live.admission is not None and live.admission.cached,
    )
    if live.admission is not None:  # every reply ends here: its limits are given back first
        await live.admission.ended(end=end, text=live.text.value())
    timings = {
        "time_to_first_token_ms": None if first_token is None else round((first_token - started) * 1000),
        "duration_ms": round((time.monotonic() - started) * 1000),
        **live.steps.stored(),  # reasoning, reasoning_ms, steps (issue 12)
    }
    try:
        await db.run_to_end(_save_final, reply_id, live.text.value(), end, timings)
    except Exception:
        log.exception("Reply %s could not be saved; its text: %r", reply_id, live.text.value())
    await events.end(reply_id, end)


def _save_final(reply_id: str, content: str, end: End, timings: dict) -> None:
    """The reply's one final save. A busy database is retried; a row the database refuses
    (a trigger, a constraint) still gets its end, with the text of its last checkpoint."""
    usage = end.usage or {}
    fields = {
        "content": content,
        "status": end.status,
        "finish_reason": end.finish_reason,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "error": end.error,
        "error_code": end.error_code,
        **timings,
    }
    for attempt in range(5):
        try:
            Message.objects.filter(pk=reply_id).update(**fields, updated_at=timezone.now())
            return
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.1 * 2**attempt)
        except DatabaseError as exc:
            if "content" not in fields:
                raise
            log.error("Reply %s: its text could not be saved (%s); its text: %r", reply_id, exc, content)
            del fields["content"]


# --- the checkpointer and the sweeper: one of each per process ---------------------------------


async def checkpoint_once() -> None:
    """Save the text of every reply that changed; touch the idle ones now and then."""
    interval = float(conf.get("CHAT_CHECKPOINT_INTERVAL"))
    touch_every = min(3 * interval, conf.stale_after() / 3)
    now = time.monotonic()
    changed: dict[str, str] = {}
    stepped: dict[str, tuple[int, dict]] = {}  # issue 12: replies whose steps changed
    idle: list[str] = []
    batch: dict[str, _Live] = {}
    for reply_id, live in _live.items():
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
        return
    steps = {reply_id: fields for reply_id, (_, fields) in stepped.items()}
    future = asyncio.ensure_future(db.run_to_end(_save_batch, changed, idle, steps))
    for live in batch.values():
        live.inflight = future
    try:
        gone, failed = await future
    except OperationalError as exc:  # a busy database: try again at the next interval
        log.warning("Checkpoint of %d reply(ies) failed: %s", len(batch), exc)
        return
    finally:
        for live in batch.values():
            live.inflight = None
    for reply_id, live in batch.items():
        if reply_id in failed:  # tried again at the next interval
            continue
        live.touched = now
        if reply_id in changed:
            live.saved = len(changed[reply_id])
        if reply_id in stepped:
            live.steps_saved = stepped[reply_id][0]
        if reply_id in gone:  # stop requested from another process, or the reply was deleted
            _cancel(reply_id, STOPPED)


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
    a live reply for dead (its checkpoints held up behind a busy database) is corrected."""
    ids = [*changed, *idle]
    now = timezone.now()
    alive: set[str] = set()
    with transaction.atomic():
        for start in range(0, len(ids), _BATCH):
            rows = Message.objects.filter(pk__in=ids[start : start + _BATCH], stop_requested=False)
            alive.update(str(pk) for pk in rows.values_list("pk", flat=True))
        texts = [(content, reply_id) for reply_id, content in changed.items() if reply_id in alive]
        if texts:  # one statement for all: an ORM update per reply costs more than the write
            _update_texts(texts, now)
        for _, reply_id in texts:  # issue 12: reasoning and tool steps, with the text
            if reply_id in steps:
                Message.objects.filter(pk=reply_id).update(**steps[reply_id])
        touch = [reply_id for reply_id in idle if reply_id in alive]
        for start in range(0, len(touch), _BATCH):
            Message.objects.filter(pk__in=touch[start : start + _BATCH]).update(
                updated_at=now, status=STREAMING
            )
    return set(ids) - alive


def _update_texts(texts: list[tuple[str, str]], now) -> None:
    quote, meta = connection.ops.quote_name, Message._meta
    sql = "UPDATE {} SET {} = %s, {} = %s, {} = %s WHERE {} = %s".format(
        quote(meta.db_table),
        *(quote(meta.get_field(name).column) for name in ("content", "updated_at", "status", "id")),
    )
    when = connection.ops.adapt_datetimefield_value(now)
    pk = meta.pk
    params = [
        (content, when, STREAMING, pk.get_db_prep_value(uuid.UUID(reply_id), connection))
        for content, reply_id in texts
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


async def _checkpoint_forever() -> None:
    while True:
        await asyncio.sleep(float(conf.get("CHAT_CHECKPOINT_INTERVAL")))
        try:
            await checkpoint_once()
        except Exception:  # never let the checkpointer die: the next pass may succeed
            log.exception("Checkpoint failed")


async def _sweep_forever() -> None:
    from chat.services import replies_recover_stale

    while True:
        try:
            count = await db.run(replies_recover_stale, running=running_ids())
            if count:
                log.warning("Marked %d reply(ies) left streaming by a stopped process as interrupted", count)
        except Exception as exc:  # never let the sweeper die: a later pass may succeed
            log.debug("Stale reply sweep failed: %s", exc)
        await asyncio.sleep(max(conf.stale_after() / 2, 0.05))


def ensure_background() -> None:
    """Start, once per event loop, the checkpointer and the sweeper of dead replies."""
    loop = asyncio.get_running_loop()
    for name, run in (("chat-checkpointer", _checkpoint_forever), ("chat-sweeper", _sweep_forever)):
        task = _background.get(name)
        if task is None or task.done() or task.get_loop() is not loop:
            _background[name] = loop.create_task(run(), name=name, context=contextvars.Context())
