"""Limits and quotas (../shared/API.md "Limits and quotas (429)"): the limiter of this event loop.

In this process's memory by default; in Redis, shared by every process, when REDIS_URL is set.
"""

import asyncio

from chat import conf
from chat.ratelimit.backends import backend_create, backend_path
from chat.ratelimit.limiter import Lease, Limiter
from chat.ratelimit.rules import Rules, rules

_limiters: dict[tuple, Limiter] = {}


def _backend_config() -> tuple[str, str | None, str]:
    return backend_path(), conf.get("REDIS_URL") or None, str(conf.get("CHAT_LIMITS_PREFIX"))


def get_limiter() -> Limiter:
    """The limiter for the running loop (its storage's connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    key = (loop, *_backend_config())
    limiter = _limiters.get(key)
    if limiter is None:
        for closed in [k for k in _limiters if k[0].is_closed()]:
            del _limiters[closed]
        limiter = _limiters[key] = Limiter(backend_create(key[1]))
    return limiter


__all__ = ["Lease", "Limiter", "Rules", "get_limiter", "rules"]
