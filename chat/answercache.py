"""Cached answers (../shared/API.md "Cached answers"), through Django's cache framework.

The key is a hash of everything that shapes an answer: the provider and model, the system
prompt, every turn sent, the generation settings, and whose answers may be reused (the owner,
or everyone with CHAT_CACHE_SCOPE=global). Only replies that ended `complete` with
finish_reason `stop` are kept, for CHAT_CACHE_TTL seconds.
"""

import hashlib
import json
import logging
from dataclasses import dataclass

from django.core.cache import caches

from chat import conf
from chat.providers import Prompt, Provider

log = logging.getLogger("chat.answercache")

VERSION = 1  # bump when the key's recipe changes, so old entries are never read
# Settings that change what a model answers, for the same conversation.
GENERATION_SETTINGS = ("CHAT_MAX_OUTPUT_TOKENS", "CHAT_DEMO_TOKENS")


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None


def ttl() -> int:
    return int(conf.get("CHAT_CACHE_TTL") or 0)


def scope_of(owner: str) -> str:
    return "global" if conf.get("CHAT_CACHE_SCOPE") == "global" else owner


def answer_key(*, provider: Provider, prompt: Prompt, owner: str) -> str:
    recipe = {
        "v": VERSION,
        "provider": f"{type(provider).__module__}.{type(provider).__qualname__}",
        "model": prompt.model,
        "system": prompt.system,
        "turns": [[turn.role, turn.content] for turn in prompt.turns],
        "settings": {name: conf.get(name) for name in GENERATION_SETTINGS},
        "scope": scope_of(owner),
    }
    digest = hashlib.sha256(json.dumps(recipe, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    return f"chat:answer:{digest}"


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
