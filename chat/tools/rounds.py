"""One reply as several model requests: the model asks for tool calls, they run, it goes on.

`reply_items` wraps a provider's stream. Text and reasoning pass through as they come; a round
that ends with tool calls has them run here, each announced (`ToolStarted`) and its outcome
reported (`ToolEnded`), and the next request carries the round's assistant turn and the
results. The last round a reply may take (CHAT_TOOL_ROUNDS) asks for no tools. A provider
error in any round propagates: the reply ends with it, keeping what came before. A call of a
tool in CHAT_TOOLS_APPROVAL first waits for the person (chat/approvals.py); refused, it does
not run, and the model reads the refusal as the tool's result.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from chat import conf, db
from chat.approvals import (
    ApprovalDecided,
    ApprovalWaiting,
    approval_needed,
    approval_open,
    approval_refusal,
    approval_wait,
)
from chat.providers.base import Finish, Prompt, Provider, Reasoning, Turn, Usage
from chat.text import clean_model_text
from chat.tools import Tool, ToolContext, tools_for
from chat.tools.runner import Outcome, parse_arguments, tool_run

log = logging.getLogger("chat.tools")


@dataclass(frozen=True)
class ToolStarted:
    call_id: str
    name: str
    arguments: dict


@dataclass(frozen=True)
class ToolEnded:
    call_id: str
    name: str
    result: Any
    error: str | None
    duration_ms: int


def _sum(total: Usage | None, more: Usage | None) -> Usage | None:
    if more is None:
        return total
    if total is None:
        return more
    return Usage(total.input_tokens + more.input_tokens, total.output_tokens + more.output_tokens)


def _context(reply_id: str) -> ToolContext:
    from chat.models import Message

    message = (
        Message.objects.select_related("conversation")
        .only("id", "conversation__id", "conversation__user_id", "conversation__visitor")
        .get(pk=reply_id)
    )
    conversation = message.conversation
    return ToolContext(
        user_id=conversation.user_id,
        visitor="" if conversation.user_id is not None else conversation.visitor,
        conversation_id=str(conversation.pk),
        reply_id=reply_id,
    )


Item = str | Reasoning | ToolStarted | ApprovalWaiting | ApprovalDecided | ToolEnded | Finish


def reply_items(provider: Provider, prompt: Prompt, *, reply_id: str) -> AsyncIterator[Item]:
    """Text and reasoning deltas, tool steps, then one Finish whose usage sums the rounds.

    `provider` is the model's own, not its `OutputLimit`: the output limit is counted by the
    reader of these items (chat/replies/generation.py). A prompt that offers no tools is one
    round, the provider's own stream, read with no generator of this module around it (one
    less to resume per token, and to keep while a reply waits: issue 14).
    """
    if not prompt.tools:
        return provider.stream(prompt)
    return _rounds(provider, prompt, reply_id=reply_id)


async def _rounds(provider: Provider, prompt: Prompt, *, reply_id: str) -> AsyncIterator[Item]:
    tools: dict[str, Tool] = tools_for(provider.name)
    rounds = max(int(conf.get("CHAT_TOOL_ROUNDS")), 1)
    usage: Usage | None = None
    context: ToolContext | None = None
    for number in range(1, rounds + 1):
        if number == rounds:
            prompt = replace(prompt, tool_choice="none")
        finish, text = Finish(), []
        async with aclosing(provider.stream(prompt)) as stream:
            async for item in stream:
                if isinstance(item, Finish):
                    finish = item
                    continue
                if isinstance(item, str):
                    text.append(item)
                yield item
        usage = _sum(usage, finish.usage)
        if not finish.tool_calls or number == rounds:
            if finish.tool_calls:
                log.warning("Reply %s: the model still asked for tools after %d rounds", reply_id, rounds)
            yield replace(finish, usage=usage, tool_calls=(), replay=None)
            return
        if context is None:
            context = await db.run(_context, reply_id)
        turns = [Turn("assistant", "".join(text), tool_calls=finish.tool_calls, replay=finish.replay)]
        for call in finish.tool_calls:
            arguments, problem = parse_arguments(call.arguments)
            yield ToolStarted(call.id, call.name, arguments)
            refusal = None
            if problem is None and call.name in tools and approval_needed(call.name):  # issue 31
                call_id = clean_model_text(call.id)  # as its tool step has it
                approval = await approval_open(
                    reply_id=reply_id, call_id=call_id, name=call.name, arguments=arguments
                )
                yield ApprovalWaiting(call_id, call.name, arguments)
                state = await approval_wait(approval)
                yield ApprovalDecided(call_id, call.name, state)
                refusal = approval_refusal(state)
            if refusal is not None:  # the model reads the refusal as the tool's (failed) result
                outcome = Outcome(None, refusal, 0)
            else:
                outcome = await tool_run(tools.get(call.name), call.name, arguments, problem, context)
            yield ToolEnded(call.id, call.name, outcome.result, outcome.error, outcome.duration_ms)
            turns.append(
                Turn("tool", outcome.for_model(), tool_call_id=call.id, is_error=outcome.error is not None)
            )
        prompt = replace(prompt, turns=(*prompt.turns, *turns))
