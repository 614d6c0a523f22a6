"""Cached answers (../shared/API.md "Cached answers"), through Django's cache framework.

The key is a hash of everything that shapes an answer: the provider (its registered name and
class) and model, the system prompt, every turn sent with all it carries (tool calls and
results included, each attached file by the hash of its bytes), the tools offered and the tool
choice, the generation settings, and whose answers may be reused (the owner, or everyone with
CHAT_CACHE_SCOPE=global). So an answer is only ever told again for a prompt identical to the
one that made it. Only replies that ended
`complete` with finish_reason `stop` are kept, for CHAT_CACHE_TTL seconds; a reply that called
a tool is kept for its owner only, never in the global scope, since a tool reads its owner's
data (docs/API-extensions.md, "Cached answers and tools").
"""

import hashlib
import json
import logging
from dataclasses import dataclass

from django.core.cache import caches

from chat import conf
from chat.providers import Prompt, Provider, Turn
from chat.providers.limit import OutputLimit

log = logging.getLogger("chat.answercache")

VERSION = 2  # bump when the key's recipe changes, so old entries are never read
# Settings that change what a model answers, for the same conversation.
GENERATION_SETTINGS = ("CHAT_MAX_OUTPUT_TOKENS", "CHAT_DEMO_TOKENS")
# Settings that change what a model gets of a file (keyed with turns that carry files only, so
# the keys of every other prompt stay as they were).
FILE_SETTINGS = ("CHAT_IMAGE_MAX_BYTES", "CHAT_OPENAI_PDF")


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None


def ttl() -> int:
    return int(conf.get("CHAT_CACHE_TTL") or 0)


def scope_of(owner: str) -> str:
    return "global" if conf.get("CHAT_CACHE_SCOPE") == "global" else owner


def is_shared(scope: str) -> bool:
    """Whether answers kept in this scope are told to other owners."""
    return scope == "global"


def _turn(turn: Turn) -> list:
    if not (
        turn.tool_calls or turn.tool_call_id or turn.is_error or turn.replay is not None or turn.attachments
    ):
        return [turn.role, turn.content]  # most turns: their text is all they send
    calls = [[call.id, call.name, call.arguments] for call in turn.tool_calls]
    # `replay` is what a vendor gets back of an assistant turn (Anthropic's blocks): sent, so keyed.
    keyed = [turn.role, turn.content, calls, turn.tool_call_id, turn.is_error, turn.replay]
    if turn.attachments:  # issue 30: each file by its bytes' hash, its type and the name a model sees
        keyed.append([[hashlib.sha256(a.data).hexdigest(), a.content_type, a.name] for a in turn.attachments])
        keyed.append({name: conf.get(name) for name in FILE_SETTINGS})
    return keyed


def answer_key(*, provider: Provider, prompt: Prompt, scope: str) -> str:
    """The key of the answer to exactly this prompt, from this provider, for this scope."""
    inner = provider.inner if isinstance(provider, OutputLimit) else provider
    recipe = {
        "v": VERSION,
        "provider": [provider.name, f"{type(inner).__module__}.{type(inner).__qualname__}"],
        "model": prompt.model,
        "system": prompt.system,
        "turns": [_turn(turn) for turn in prompt.turns],
        "tools": [[tool.name, tool.description, tool.parameters] for tool in prompt.tools],
        "tool_choice": prompt.tool_choice,
        "settings": {name: conf.get(name) for name in GENERATION_SETTINGS},
        "scope": scope,
    }
    text = json.dumps(recipe, ensure_ascii=False, sort_keys=True, default=repr)
    return f"chat:answer:{hashlib.sha256(text.encode()).hexdigest()}"


def _cache():
    return caches[conf.get("CHAT_CACHE_ALIAS")]


async def answer_get(key: str) -> Answer | None:
    try:
        value = await _cache().aget(key)
    except Exception as exc:  # noqa: BLE001 - a cache that fails is a cache that misses
        log.warning("Answer cache not read: %s", exc)
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return Answer(text=value["text"], finish_reason=value.get("finish_reason"))


async def answer_set(key: str, answer: Answer) -> None:
    seconds = ttl()
    if seconds <= 0:
        return
    try:
        await _cache().aset(key, {"text": answer.text, "finish_reason": answer.finish_reason}, seconds)
    except Exception as exc:  # noqa: BLE001 - the answer is stored in the database all the same
        log.warning("Answer cache not written: %s", exc)
