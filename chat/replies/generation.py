"""Runs replies in the background: provider -> event log -> database.

A reply is a task on the server's event loop, not part of any HTTP response: clients come
and go, the reply goes on. The database sees the insert, the checkpoints (checkpoints.py)
and the final save, once. The Engine owns the replies this process generates and the
background tasks that serve them; the runtime (chat/runtime.py) owns the engine, and starts
and stops it with the server.
"""

import asyncio
import contextvars
import copy
import logging
import time
from collections.abc import Container
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import DatabaseError, OperationalError
from django.utils import timezone

from chat import db
from chat.approvals import ApprovalDecided, ApprovalWaiting
from chat.checks import check_workers_without_redis, worker_count
from chat.eventlog import End, get_event_log
from chat.hooks import reply_failed, reply_finished, reply_started, send_in_background
from chat.models import Message
from chat.providers import Finish, Prompt, Provider, ProviderError
from chat.providers.limit import OutputLimit, max_output_tokens
from chat.replies.checkpoints import Snapshot, checkpoint_forever, update_message
from chat.replies.stale import replies_recover_stale, sweep_forever
from chat.runtime import runtime
from chat.steps import Steps, record_step
from chat.text import clean_model_text
from chat.tools.rounds import reply_items

if TYPE_CHECKING:
    from chat.admission import Admission

log = logging.getLogger("chat.generation")

STOPPED, INTERRUPTED = Message.Status.STOPPED.value, Message.Status.INTERRUPTED.value
REPLY_SIGNALS = (reply_started, reply_finished, reply_failed)


class _Text:
    """The reply's text so far: its chunks and their length, kept by the reply's task per token;
    joined only when saved."""

    __slots__ = ("chunks", "length")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.length = 0

    def append(self, delta: str) -> None:  # the reply's task does the same inline, per token
        self.chunks.append(delta)
        self.length += len(delta)

    def value(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""


@dataclass(eq=False, slots=True)  # one per reply in flight: no __dict__ (memory per idle stream)
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
    hosts: dict | None = None  # what the host's signals carry (chat/hooks.py): message, owner...


class Engine:
    """What this process runs: the replies it generates and the tasks that serve them all.

    The checkpointer, the sweeper of replies left by dead processes, and the event log's own
    tasks (Redis: its reader and its writer) run once per event loop; stop() saves the
    replies in flight as `interrupted` and ends every task it started.
    """

    def __init__(self) -> None:
        self.live: dict[str, _Live] = {}
        self.tasks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task] = {}

    def running_ids(self) -> Container[str]:
        """The ids of the replies this process is generating (a live view)."""
        return self.live.keys()

    async def start(self) -> None:
        """Server start: mark the replies a dead process left, then start the background."""
        try:
            count = await db.run(replies_recover_stale, running=self.running_ids())
            if count:
                log.warning("Marked %d reply(ies) left streaming by a stopped server as interrupted", count)
        except Exception as exc:  # an unmigrated database must not keep the server from starting
            log.warning("Could not check for interrupted replies: %s", exc)
        for warning in check_workers_without_redis() if worker_count() > 1 else []:
            log.warning("%s (%s)", warning.msg, warning.id)
        self.ensure_running()

    def ensure_running(self) -> None:
        """Start, once per event loop, the checkpointer, the sweeper and the event log's tasks."""
        loop = asyncio.get_running_loop()
        for name, run in (
            ("chat-checkpointer", lambda: checkpoint_forever(self)),
            ("chat-sweeper", lambda: sweep_forever(self.running_ids)),
        ):
            task = self.tasks.get((loop, name))
            if task is None or task.done():
                self.tasks[loop, name] = loop.create_task(run(), name=name, context=contextvars.Context())
        get_event_log().start(on_stop=self.stop_requested)

    def background(self) -> list[asyncio.Task]:
        """The background tasks running on this event loop."""
        loop = asyncio.get_running_loop()
        return [task for (owner, _), task in self.tasks.items() if owner is loop and not task.done()]

    async def stop(self) -> None:
        """Server shutdown: save the replies in flight, then end every background task."""
        await self.interrupt_all()
        loop = asyncio.get_running_loop()
        tasks = [self.tasks.pop(key) for key in [key for key in self.tasks if key[0] is loop]]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await get_event_log().close()

    def cancel(self, reply_id: str, reason: str) -> asyncio.Task | None:
        live = self.live.get(reply_id)
        if live is None or live.task is None or live.task.done():
            return None
        live.reason = live.reason or reason
        live.task.cancel()
        return live.task

    def stop_requested(self, reply_id: str) -> None:
        """A stop sent to another process (through the event log): ends the reply if it is ours."""
        self.cancel(reply_id, STOPPED)

    async def interrupt_all(self, timeout: float = 10.0) -> int:
        """Every reply in flight is saved with its text as `interrupted`."""
        tasks = [t for rid in list(self.live) if (t := self.cancel(rid, INTERRUPTED)) is not None]
        if tasks:
            log.info("Saving %d reply(ies) in flight as interrupted", len(tasks))
            await asyncio.wait(tasks, timeout=timeout)
        return len(tasks)

    # --- what the checkpointer asks (checkpoints.LiveReplies) ------------------------------

    def snapshot(self, ids: list[str], *, now: float, touch_every: float) -> list[Snapshot]:
        """Of these replies, those still live with something to save: text or steps that
        changed (with the text), or no touch for `touch_every` seconds (the text left out)."""
        taken = []
        for reply_id in ids:
            live = self.live.get(reply_id)
            if live is None:  # ended since the round began: its final save has the text
                continue
            steps = live.steps.stored() if live.steps.version != live.steps_saved else None
            if steps is not None or live.text.length != live.saved:
                taken.append(Snapshot(reply_id, live.text.value(), steps, live.steps.version))
            elif now - live.touched >= touch_every:
                taken.append(Snapshot(reply_id, None, None, live.steps.version))
        return taken

    def saving(self, snapshots: list[Snapshot], write: asyncio.Future) -> None:
        """A reply's final save waits for `write`, the checkpoint of it being written."""
        for snapshot in snapshots:
            live = self.live.get(snapshot.reply_id)
            if live is not None:
                live.inflight = write

    def mark_saved(self, snapshots: list[Snapshot], *, now: float) -> None:
        """These snapshots are in the database, as of `now` (monotonic)."""
        for snapshot in snapshots:
            live = self.live.get(snapshot.reply_id)
            if live is None:
                continue
            live.touched = now
            if snapshot.text is not None:
                live.saved = len(snapshot.text)
            if snapshot.steps is not None:
                live.steps_saved = snapshot.steps_version


engine = runtime.part("chat-engine", Engine, start=Engine.start, stop=Engine.stop)  # the runtime's


def running_ids() -> Container[str]:
    """The ids of the replies this process is generating (a live view)."""
    return engine.running_ids()


async def reply_start(
    *,
    reply_id: str,
    provider: Provider,
    prompt: Prompt,
    admission: "Admission | None" = None,
    message: Message | None = None,
    conversation: object = None,
    owner: object = None,
) -> asyncio.Task:
    """Start generating on this event loop, in a context of its own (not the request's).

    The log is opened before the task runs, so a stream asked for at once finds it live.
    `message` (the stored reply), `conversation` and `owner` go to the host's signals
    (chat/hooks.py) when a site listens, with a copy of the message: the caller's is the one
    its response describes.
    """
    engine.ensure_running()
    if admission is not None:  # a cached answer, if any, replaces the model
        provider = await admission.started(reply_id, provider, prompt)
    cached = admission is not None and admission.cached
    events = get_event_log()
    await events.open(reply_id)
    await events.set_status(reply_id, "cached" if cached else "thinking")
    live = engine.live[reply_id] = _Live(admission=admission)
    if message is not None and any(signal.has_listeners(Message) for signal in REPLY_SIGNALS):
        copied = copy.copy(message)
        live.hosts = {"message": copied, "conversation": conversation, "model": copied.model, "owner": owner}
    live.task = asyncio.get_running_loop().create_task(
        _run(reply_id, live, provider, prompt), name=f"reply-{reply_id}", context=contextvars.Context()
    )
    return live.task


async def reply_cancel(reply_id: str, reason: str = STOPPED) -> bool:
    """Cancel a reply running in this process and wait until it is saved; False if none."""
    task = engine.cancel(reply_id, reason)
    if task is None:
        return False
    await asyncio.wait([task])
    return True


async def reply_stop_elsewhere(reply_id: str) -> None:
    """Ask the process generating a reply to stop it now (Redis); the database flag, set by
    the caller, reaches it at its next checkpoint in any case."""
    await get_event_log().request_stop(reply_id)


async def interrupt_all(timeout: float = 10.0) -> int:
    """Every reply in flight in this process is saved with its text as `interrupted`."""
    return await engine.interrupt_all(timeout)


async def _run(reply_id: str, live: _Live, provider: Provider, prompt: Prompt) -> None:
    events = get_event_log()
    started = time.monotonic()
    first_token: float | None = None
    finish = Finish()
    end_status, error, code = Message.Status.COMPLETE.value, None, None
    # CHAT_MAX_OUTPUT_TOKENS, counted over the whole reply, every round (chat/providers/limit.py).
    limited = provider if isinstance(provider, OutputLimit) else None
    most = max_output_tokens()
    model = provider if limited is None else limited.inner
    append_now, text = events.append_now, live.text  # per token: no lookups, no coroutine
    announced = _announce_start(live)
    try:
        # reply_items: the provider's rounds, tool calls run between them (issue 12).
        async with aclosing(reply_items(model, prompt, reply_id=reply_id)) as stream:
            async for item in stream:
                if isinstance(item, Finish):
                    finish = item
                elif limited is not None and limited.past(item, most):
                    finish = limited.cut(most)
                    break
                elif isinstance(item, str):
                    if item := clean_model_text(item):
                        if first_token is None:
                            first_token = time.monotonic()
                        if live.steps.run_started is not None:  # per token: no call to make
                            live.steps.close_run()
                        text.chunks.append(item)  # text.append(item), inline: per token
                        text.length += len(item)
                        if append_now is not None:
                            append_now(reply_id, item)
                        else:
                            await events.append(reply_id, item)
                elif isinstance(item, ApprovalWaiting | ApprovalDecided):  # issue 31
                    live.steps.approval(item.call_id, item.state)
                    await events.set_status(reply_id, *item.status())
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
    engine.live.pop(reply_id, None)
    if live.inflight is not None and not live.inflight.done():  # after a checkpoint under way
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
        tools_called = any(step["type"] == "tool" for step in live.steps.steps)
        await live.admission.ended(end=end, text=live.text.value(), tools_called=tools_called)
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
    if live.hosts is not None:  # after the stream's end: the host's receivers never delay it
        await _announce_end(live, end, timings, announced)


def _announce_start(live: _Live) -> asyncio.Task | None:
    """`reply_started`, sent by a task of its own beside the reply: a slow receiver does not
    hold back the first token."""
    if live.hosts is None or not reply_started.has_listeners(Message):
        return None
    return asyncio.create_task(send_in_background(reply_started, **live.hosts), name="chat-reply-started")


async def _announce_end(live: _Live, end: End, timings: dict, announced: asyncio.Task | None) -> None:
    """`reply_finished` or `reply_failed`, after `reply_started` (receivers see them in order),
    with the message's final fields. A failure here is logged: the reply is over and saved."""
    try:
        if announced is not None:
            await announced
        message = live.hosts["message"]
        fields = {**_final_fields(live.text.value(), end, timings), "cached": end.cached}
        for name, value in fields.items():
            setattr(message, name, value)
        common = {**live.hosts, "usage": end.usage, "text_length": live.text.length}
        if end.status == Message.Status.ERROR:
            await send_in_background(reply_failed, **common, error=end.error, code=end.error_code)
        else:
            await send_in_background(
                reply_finished,
                **common,
                status=end.status,
                finish_reason=end.finish_reason,
                cached=end.cached,
            )
    except Exception:
        log.exception("The signals of reply %s could not be sent", live.hosts["message"].pk)


def _final_fields(content: str, end: End, timings: dict) -> dict:
    """The message's fields as the reply ends: what is saved, and what the host's receivers see."""
    usage = end.usage or {}
    return {
        "content": content,
        "status": end.status,
        "finish_reason": end.finish_reason,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "error": end.error,
        "error_code": end.error_code,
        **timings,
    }


def _save_final(reply_id: str, content: str, end: End, timings: dict) -> None:
    """The reply's one final save. A busy database is retried; a row the database refuses
    (a trigger, a constraint) still gets its end, with the text of its last checkpoint."""
    fields = _final_fields(content, end, timings)
    for attempt in range(5):
        try:
            update_message(reply_id, {**fields, "updated_at": timezone.now()})
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
