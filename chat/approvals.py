"""Tool calls that wait for the person's yes or no (CHAT_TOOLS_APPROVAL, issue 31).

A call of a tool named in CHAT_TOOLS_APPROVAL does not run at once: a ToolApproval row is
written, the reply's stream says `status` `{"state": "approval", ...}` and the reply waits until
the person decides (`POST /api/messages/<id>/approve`) or CHAT_TOOLS_APPROVAL_TIMEOUT passes.
The row, not this process's memory, is the truth: the decision may land on another worker or
machine than the one generating, and the waiting process reads the row every POLL seconds. A
decision made on the generating process's own loop wakes the waiter at once (a future per
waiting call, kept per event loop by the runtime). Every change of state is one conditional
UPDATE from `waiting`, so a decision and the timeout (or a stop) never both win.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from chat import conf, db
from chat.errors import Conflict, Invalid, NotFound
from chat.eventlog.base import APPROVAL, Status  # APPROVAL: the status's state while a reply waits
from chat.models import Message, ToolApproval
from chat.runtime import runtime

if TYPE_CHECKING:
    from chat.services import Owner

WAITING, APPROVED, DENIED, EXPIRED = (s.value for s in ToolApproval.State)
log = logging.getLogger("chat.tools")
POLL = 0.5  # seconds between two reads of the row by the waiting reply (another process's decision)
CALL_ID_CHARS = 255  # ToolApproval.call_id's length

# The waiting calls of each event loop: approval pk -> the future its reply awaits.
_waiting = runtime.per_loop(lambda loop: {})


def _names() -> set[str]:
    value = conf.get("CHAT_TOOLS_APPROVAL")
    items = value.split(",") if isinstance(value, str) else value or ()
    return {str(item).strip() for item in items if str(item).strip()}


def approval_needed(name: str) -> bool:
    """Does a call of this tool (host or MCP, by the name the model calls it) wait for the person?"""
    names = _names()
    return "*" in names or name in names


@dataclass(frozen=True)
class ApprovalWaiting:
    """A reply item (chat/tools/rounds.py): this call waits; its row is written."""

    call_id: str
    name: str
    arguments: dict
    state = WAITING  # the tool step's `approval` (chat/steps.py)

    def status(self) -> tuple[str, dict | None]:
        """The event log's status while it waits (docs/API-extensions.md, "Tool approval")."""
        return APPROVAL, {"tool_call_id": self.call_id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ApprovalDecided:
    """A reply item: the wait is over (`state`: approved, denied or expired)."""

    call_id: str
    name: str
    state: str

    def status(self) -> tuple[str, dict | None]:
        """The plain status that replaces the approval one: the tool runs, or the model goes on."""
        return ("tool", {"name": self.name}) if self.state == APPROVED else ("thinking", None)


def approval_refusal(state: str) -> str | None:
    """What the model is told instead of the tool's result (None: approved, the tool runs).

    In English whatever the page's language: it is part of the model's conversation, not a
    sentence of the page (the page shows it as the tool step's error, as any tool error)."""
    if state == APPROVED:
        return None
    if state == DENIED:
        return "The person refused to run this tool."
    seconds = conf.get_float("CHAT_TOOLS_APPROVAL_TIMEOUT")
    return f"No one approved this call within {seconds:g} seconds; it was not run."


def _open(reply_id: str, call_id: str, name: str, arguments: dict) -> ToolApproval | None:
    now = timezone.now()
    expires_at = now + timedelta(seconds=conf.get_float("CHAT_TOOLS_APPROVAL_TIMEOUT"))
    fields = {"name": name, "arguments": arguments, "state": WAITING, "created_at": now}
    try:
        # A model that reuses a call id in a later round makes a new call: the row starts again.
        approval, _ = ToolApproval.objects.update_or_create(
            message_id=reply_id,
            call_id=call_id,
            defaults={**fields, "expires_at": expires_at, "decided_at": None},
        )
    except IntegrityError:  # the reply was deleted meanwhile: nothing to wait for
        return None
    return approval


async def approval_open(*, reply_id: str, call_id: str, name: str, arguments: dict) -> ToolApproval | None:
    """Write the waiting row, before the reply says it waits (a client that answers at once
    finds it); None if the reply is gone."""
    return await db.run(_open, reply_id, call_id[:CALL_ID_CHARS], name[:255], arguments)


def _expire(pk: int) -> str:
    """The wait ends as refused, unless a decision came first: the state that won."""
    if ToolApproval.objects.filter(pk=pk, state=WAITING).update(state=EXPIRED, decided_at=timezone.now()):
        return EXPIRED
    return _state_of(pk)


def _state_of(pk: int) -> str:
    state = ToolApproval.objects.filter(pk=pk).values_list("state", flat=True).first()
    return EXPIRED if state is None else state  # deleted with its reply: it never ran


async def _read(fn: Callable[[int], str], pk: int) -> str | None:
    """The row's state, or None when the database failed: the wait goes on (the call runs only
    on a decision read from the row), and the next poll tries again."""
    try:
        return await db.run(fn, pk)
    except DatabaseError as exc:
        log.warning("Could not read the approval %s (%s): trying again", pk, exc)
        return None


async def approval_wait(approval: ToolApproval | None) -> str:
    """Wait for the person's decision: `approved`, `denied` or `expired` (the timeout passed,
    or the reply is gone). A stop (cancellation) marks the row expired and propagates."""
    if approval is None:
        return EXPIRED
    loop = asyncio.get_running_loop()
    waiting = _waiting(loop)
    future = waiting[approval.pk] = loop.create_future()
    try:
        while True:
            left = (approval.expires_at - timezone.now()).total_seconds()
            if left <= 0:
                state = await _read(_expire, approval.pk)
                if state is not None:
                    return state
                left = POLL  # the database failed: again after a pause
            done, _ = await asyncio.wait([future], timeout=min(POLL, left))
            state = future.result() if done else await _read(_state_of, approval.pk)
            if state not in (None, WAITING):
                return state
    except asyncio.CancelledError:
        try:
            await db.run_to_end(_expire, approval.pk)  # a decision arriving now finds it closed
        except DatabaseError as exc:  # the stop goes on: the reply ends, the row's timeout holds
            log.warning("Could not close the approval %s at a stop (%s)", approval.pk, exc)
        raise
    finally:
        waiting.pop(approval.pk, None)


def _decide(
    owner: "Owner", reply_id: uuid.UUID, call_id: str, approved: bool
) -> tuple[bool, bool, ToolApproval | None]:
    """One conditional UPDATE: (whether the reply is the owner's, whether it was this decision
    that ended the wait, the row). Sentences are made by the caller, in the request's language."""
    reply = Message.objects.filter(
        pk=reply_id, role=Message.Role.ASSISTANT, conversation__in=owner.conversations()
    )
    if not reply.exists():
        return False, False, None
    now = timezone.now()
    rows = ToolApproval.objects.filter(
        message_id=reply_id,
        call_id=call_id,
        state=WAITING,
        expires_at__gt=now,
        message__status=Message.Status.STREAMING,
    ).update(state=APPROVED if approved else DENIED, decided_at=now)
    return True, bool(rows), ToolApproval.objects.filter(message_id=reply_id, call_id=call_id).first()


def _call_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > CALL_ID_CHARS:
        raise Invalid("'tool_call_id' must be the id of the tool call, a string of 1 to 255 characters.")
    return value


def _not_waiting(call_id: str, approval: ToolApproval | None) -> Conflict:
    """Why the reply does not wait for this call, as the 409's sentence."""
    if approval is None:
        return Conflict(f"This reply has no tool call {call_id} to approve.")
    if approval.state == APPROVED:
        return Conflict("This tool call was already approved.")
    if approval.state == DENIED:
        return Conflict("This tool call was already refused.")
    return Conflict("This tool call no longer waits: its time ran out or the reply ended.")


async def approval_decide(
    *, owner: "Owner", message_id: str, tool_call_id: Any, approved: Any
) -> ToolApproval:
    """The person approves or refuses a waiting call of one of their replies.

    400 `invalid` for a bad body, 404 for a reply that is not theirs, 409 `conflict` when the
    reply does not wait for that call (decided already, timed out, stopped, or no such call);
    a refusal changes nothing. The reply's process goes on at once if it is this one, else at
    its next read of the row (POLL).
    """
    call_id = _call_id(tool_call_id)
    if type(approved) is not bool:  # JSON true/false only: 1, "yes" or null are not a decision
        raise Invalid("'approved' must be true or false.")
    not_found = NotFound(f"No reply with id {message_id}.")
    try:
        reply_id = uuid.UUID(str(message_id))
    except ValueError:
        raise not_found from None
    found, won, approval = await db.run(_decide, owner, reply_id, call_id, approved)
    if not found:
        raise not_found
    if not won or approval is None:
        raise _not_waiting(call_id, approval)
    future = _waiting(asyncio.get_running_loop()).get(approval.pk)
    if future is not None and not future.done():
        future.set_result(approval.state)
    return approval


def approval_asked(event: object) -> dict | None:
    """The waiting call's fields if this event log event asks for an approval, else None."""
    if isinstance(event, Status) and event.state == APPROVAL:
        return event.detail or {}
    return None


def approval_json(approval: ToolApproval) -> dict:
    """The approve endpoint's answer."""
    return {
        "message_id": str(approval.message_id),
        "tool_call_id": approval.call_id,
        "name": approval.name,
        "arguments": approval.arguments,
        "state": approval.state,
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
    }


def approval_waiting_for(reply_id: str) -> ToolApproval | None:
    """The call a reply waits on now, if any (a follower from the database shows it again)."""
    return ToolApproval.objects.filter(message_id=reply_id, state=WAITING).order_by("-created_at").first()
