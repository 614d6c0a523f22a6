"""Running one tool call: arguments checked, a timeout, and every failure as a sentence.

A tool is the host project's code: it may raise, hang or return something JSON cannot say.
None of that may end the reply; the model gets an error result it can read and goes on.
Sync tools run in a thread pool of their own (not asgiref's one thread, which a slow tool
would hold for every request); a timed-out sync tool keeps its thread until it returns,
which Python cannot prevent, so the pool is bounded.
"""

import asyncio
import inspect
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from chat import conf
from chat.runtime import runtime
from chat.text import clean_model_text
from chat.tools import Tool, ToolContext
from chat.tools.errors import ToolError

log = logging.getLogger("chat.tools")

RESULT_CHARS = 20_000  # the most of a result a model is sent (and stored)
_THREADS = 8


@dataclass(frozen=True)
class Outcome:
    result: Any  # a JSON value, or None on error
    error: str | None
    duration_ms: int

    def for_model(self) -> str:
        """The text the model is sent back."""
        if self.error is not None:
            return self.error
        return self.result if isinstance(self.result, str) else json.dumps(self.result, ensure_ascii=False)


def clean_json(value: Any) -> Any:
    """A JSON value as stored: every string cleaned as model text is (U+0000, lone surrogates)."""
    if isinstance(value, str):
        return clean_model_text(value)
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean_model_text(str(k)): clean_json(v) for k, v in value.items()}
    return value


def parse_arguments(raw: str) -> tuple[dict, str | None]:
    """The model's arguments as a dict, or {} and why they cannot be used."""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError:
        return {}, f"The arguments were not valid JSON: {clean_model_text(raw[:200])!r}."
    if not isinstance(value, dict):
        return {}, "The arguments must be a JSON object."
    return clean_json(value), None


def _as_json(value: Any) -> Any:
    """The tool's return value as JSON (dates, decimals and UUIDs as strings), bounded."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
        if len(text) <= RESULT_CHARS:
            return clean_json(json.loads(text))
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + f"… [cut: the result was {len(text):,} characters]"
    return clean_model_text(text)


def _call_sync(func: Any, kwargs: dict) -> Any:
    close_old_connections()  # a thread of this pool keeps its connection as a request would
    try:
        return func(**kwargs)
    finally:
        close_old_connections()


async def _invoke(tool: Tool, kwargs: dict) -> Any:
    if tool.is_async:
        return await tool.func(**kwargs)
    pool = runtime.executor("chat-tool", _THREADS)
    return await asyncio.get_running_loop().run_in_executor(pool, _call_sync, tool.func, kwargs)


async def tool_run(
    tool: Tool | None, name: str, arguments: dict, problem: str | None, context: ToolContext
) -> Outcome:
    """Run one call; never raises but CancelledError (a stop)."""
    started = time.monotonic()

    def done(result: Any = None, error: str | None = None) -> Outcome:
        return Outcome(result, error, round((time.monotonic() - started) * 1000))

    if tool is None:
        return done(error=f"There is no tool named {clean_model_text(name)[:100]!r}.")
    if problem is not None:
        return done(error=problem)
    kwargs = dict(arguments)
    if tool.context_parameter:
        kwargs[tool.context_parameter] = context
    try:
        inspect.signature(tool.func).bind(**kwargs)
    except TypeError as exc:
        return done(error=f"The arguments do not fit the tool {tool.name}: {exc}.")
    seconds = float(conf.get("CHAT_TOOL_TIMEOUT"))
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            value = await _invoke(tool, kwargs)
    except TimeoutError if limit.expired() else ():  # noqa: B030 - only our own deadline
        log.warning("Tool %s timed out after %g s (reply %s)", tool.name, seconds, context.reply_id)
        return done(error=f"The tool {tool.name} did not answer within {seconds:g} seconds.")
    except ToolError as exc:  # the tool's own sentence, as it is
        log.info("Tool %s reported an error (reply %s): %s", tool.name, context.reply_id, exc)
        return done(error=clean_model_text(str(exc))[:1000])
    except Exception as exc:  # noqa: BLE001 - the host's code: any failure goes back to the model
        log.warning("Tool %s failed (reply %s)", tool.name, context.reply_id, exc_info=True)
        detail = clean_model_text(str(exc))[:500]
        return done(
            error=f"The tool {tool.name} failed: {type(exc).__name__}" + (f": {detail}" if detail else ".")
        )
    return done(result=_as_json(value))
