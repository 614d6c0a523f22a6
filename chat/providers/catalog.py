"""The models offered when CHAT_MODELS is not set: `demo`, plus what keys and base URLs enable.

An OpenAI-compatible server at OPENAI_BASE_URL (Ollama, vLLM, llama.cpp, LM Studio) lists its
own models at `/models`: those are offered. The list is asked for once, with a short timeout
(CHAT_DISCOVERY_TIMEOUT), and kept; later it is refreshed in the background, so a request
never waits for it again. A server that does not answer costs only its models until it does.
"""

import logging
import threading
import time

from chat import conf
from chat.runtime import runtime

log = logging.getLogger("chat.providers")

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1", "gpt-4o")
ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
KEEP_FOR, RETRY_AFTER = 300.0, 30.0  # seconds a list (or a failure to get one) is kept

_lists: dict[tuple[str, str | None], tuple[float, list[str]]] = {}  # -> (expires, names)
_refreshing: set[tuple[str, str | None]] = set()
_lock = threading.Lock()


def model_ids() -> list[str]:
    ids = []
    base_url, key = conf.get("OPENAI_BASE_URL"), conf.get("OPENAI_API_KEY")
    if base_url:
        ids += [f"openai:{name}" for name in served_models(base_url, key)]
    elif key:
        ids += [f"openai:{name}" for name in OPENAI_MODELS]
    if conf.get("ANTHROPIC_API_KEY") or conf.get("ANTHROPIC_BASE_URL"):
        ids += [f"anthropic:{name}" for name in ANTHROPIC_MODELS]
    return [*ids, "demo"]


def served_models(base_url: str, api_key: str | None) -> list[str]:
    """The chat models the server at `base_url` lists; the first call waits for it, no other."""
    key = (base_url, api_key)
    entry = _lists.get(key)
    if entry is None:
        return _fetch(key)
    expires, names = entry
    if time.monotonic() >= expires:
        with _lock:
            stale = key not in _refreshing
            _refreshing.add(key)
        if stale:
            runtime.executor("chat-model-list", 1).submit(_fetch, key)  # ends with the runtime
    return names


def forget() -> None:
    """Ask again on next use (tests, and a server whose models changed)."""
    _lists.clear()


def _fetch(key: tuple[str, str | None]) -> list[str]:
    import openai  # imported when needed: the SDK takes a second to import

    from chat.providers import upstream
    from chat.providers.openai import NO_KEY

    base_url, api_key = key
    try:
        with openai.OpenAI(
            api_key=api_key or NO_KEY,
            base_url=base_url,
            timeout=conf.get_float("CHAT_DISCOVERY_TIMEOUT"),
            max_retries=0,
        ) as client:
            names = sorted(m.id for m in client.models.list() if "embed" not in m.id)
        expires = time.monotonic() + KEEP_FOR
    except Exception as exc:  # anything: the app goes on without these models, and asks again later
        detail = f"HTTP {exc.status_code}" if isinstance(exc, openai.APIStatusError) else type(exc).__name__
        log.warning("Could not list the models at %s (%s)", upstream.host_of(base_url), detail)
        names, expires = _lists.get(key, (0.0, []))[1], time.monotonic() + RETRY_AFTER
    _lists[key] = (expires, names)
    with _lock:
        _refreshing.discard(key)
    return names
