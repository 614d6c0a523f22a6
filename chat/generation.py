"""Runs replies in the background: provider -> event log -> database.

A reply is a task on the server's event loop, not part of any HTTP response: clients come
and go, the reply goes on. It writes the database a bounded number of times: a checkpoint
of the partial text every CHAT_CHECKPOINT_INTERVAL (which also tells other processes it is
alive) and the final message once.
"""

import asyncio
import contextvars
import logging
import time
from collections.abc import Container
from contextlib import aclosing

from django.db import OperationalError
from django.utils import timezone

from chat import conf, db
from chat.eventlog import End, get_event_log
from chat.models import Message
from chat.providers import Finish, Prompt, Provider, ProviderError

log = logging.getLogger("chat.generation")

STOPPED, INTERRUPTED = Message.Status.STOPPED.value, Message.Status.INTERRUPTED.value

_tasks: dict[str, asyncio.Task] = {}
_reasons: dict[str, str] = {}  # why a reply's task was cancelled: STOPPED or INTERRUPTED
_sweeper: asyncio.Task | None = None


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


def running_ids() -> Container[str]:
    """The ids of the replies this process is generating (a live view)."""
    return _tasks.keys()


async def reply_start(*, reply_id: str, provider: Provider, prompt: Prompt) -> asyncio.Task:
    """Start generating on this event loop, in a context of its own (not the request's).

    The log is opened before the task runs, so a stream asked for at once finds it live.
    """
    events = get_event_log()
    await events.open(reply_id)
    await events.set_status(reply_id, "thinking")
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        _run(reply_id, provider, prompt), name=f"reply-{reply_id}", context=contextvars.Context()
    )
    _tasks[reply_id] = task

    def forget(_: asyncio.Task) -> None:
        _tasks.pop(reply_id, None)
        _reasons.pop(reply_id, None)

    task.add_done_callback(forget)
    ensure_sweeper()
    return task


def _cancel(reply_id: str, reason: str) -> asyncio.Task | None:
    task = _tasks.get(reply_id)
    if task is None or task.done():
        return None
    _reasons.setdefault(reply_id, reason)
    task.cancel()
    return task


async def reply_cancel(reply_id: str, reason: str = STOPPED) -> bool:
    """Cancel a reply running in this process and wait until it is saved; False if none."""
    task = _cancel(reply_id, reason)
    if task is None:
        return False
    await asyncio.wait([task])
    return True


async def interrupt_all(timeout: float = 10.0) -> int:
    """Server shutdown: every reply in flight is saved with its text as `interrupted`."""
    tasks = [t for rid in list(_tasks) if (t := _cancel(rid, INTERRUPTED)) is not None]
    if tasks:
        log.info("Saving %d reply(ies) in flight as interrupted", len(tasks))
        await asyncio.wait(tasks, timeout=timeout)
    return len(tasks)


async def _run(reply_id: str, provider: Provider, prompt: Prompt) -> None:
    events = get_event_log()
    text = _Text()
    started = time.monotonic()
    first_token: float | None = None
    finish = Finish()
    end_status, error, code = Message.Status.COMPLETE.value, None, None
    keeper = asyncio.create_task(_checkpoints(reply_id, text))
    try:
        async with aclosing(provider.stream(prompt)) as stream:
            async for item in stream:
                if isinstance(item, Finish):
                    finish = item
                elif item:
                    if first_token is None:
                        first_token = time.monotonic()
                    text.append(item)
                    await events.append(reply_id, item)
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()  # the reply ends here, by design: it is saved below
        end_status = _reasons.get(reply_id, INTERRUPTED)
    except ProviderError as exc:
        end_status, error, code = Message.Status.ERROR.value, exc.message, exc.code
    except Exception:
        log.exception("Reply %s failed", reply_id)
        end_status, error, code = (
            Message.Status.ERROR.value,
            "The model failed unexpectedly; the server log has the details.",
            "internal_error",
        )
    keeper.cancel()
    await asyncio.wait([keeper])
    usage = finish.usage
    end = End(
        status=end_status,
        finish_reason=finish.reason,
        usage=None
        if usage is None
        else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        error=error,
        error_code=code,
    )
    timings = {
        "time_to_first_token_ms": None if first_token is None else round((first_token - started) * 1000),
        "duration_ms": round((time.monotonic() - started) * 1000),
    }
    try:
        await db.run_to_end(_save_final, reply_id, text.value(), end, timings)
    except Exception:
        log.exception("Reply %s could not be saved; its text: %r", reply_id, text.value())
    await events.end(reply_id, end)


async def _checkpoints(reply_id: str, text: _Text) -> None:
    interval = float(conf.get("CHAT_CHECKPOINT_INTERVAL"))
    saved = -1
    while True:
        await asyncio.sleep(interval)
        content = text.value() if text.length != saved else None
        try:
            # Seen through even when cancelled: the final save must come after it.
            kept = await db.run_to_end(_save_checkpoint, reply_id, content)
        except OperationalError as exc:  # a busy database: try again next interval
            log.warning("Checkpoint of reply %s failed: %s", reply_id, exc)
            continue
        if not kept:  # stop requested from another process, or the reply was deleted
            _cancel(reply_id, STOPPED)
            return
        saved = text.length


def _save_checkpoint(reply_id: str, content: str | None) -> bool:
    fields = {"updated_at": timezone.now()}
    if content is not None:
        fields["content"] = content
    rows = Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING, stop_requested=False).update(
        **fields
    )
    return rows == 1


def _save_final(reply_id: str, content: str, end: End, timings: dict) -> None:
    usage = end.usage or {}
    for attempt in range(5):
        try:
            Message.objects.filter(pk=reply_id).update(
                content=content,
                status=end.status,
                finish_reason=end.finish_reason,
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
                error=end.error,
                error_code=end.error_code,
                updated_at=timezone.now(),
                **timings,
            )
            return
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.1 * 2**attempt)


def ensure_sweeper() -> None:
    """Start, once per event loop, the task that marks replies of dead processes interrupted."""
    global _sweeper
    loop = asyncio.get_running_loop()
    if _sweeper is None or _sweeper.done() or _sweeper.get_loop() is not loop:
        _sweeper = loop.create_task(_sweep_forever(), name="chat-sweeper", context=contextvars.Context())


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
