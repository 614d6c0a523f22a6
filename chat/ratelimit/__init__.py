"""Limits and quotas (../shared/API.md "Limits and quotas (429)"): the limiter of this event loop.

In this process's memory by default; in Redis, shared by every process, when REDIS_URL is set.
"""

import asyncio

from chat import conf
from chat.ratelimit.backends import backend_create, backend_path
from chat.ratelimit.limiter import Lease, Limiter
from chat.ratelimit.rules import Rules, rules
from chat.runtime import runtime


def _backend_config() -> tuple[str, str | None, str]:
    return backend_path(), conf.get("REDIS_URL") or None, str(conf.get("CHAT_LIMITS_PREFIX"))


async def _limiters_close(limiters: dict[tuple, Limiter]) -> None:
    """At stop: each limiter's lease refresher ends, then its storage's connections."""
    for limiter in limiters.values():
        if limiter.refresher is not None:
            limiter.refresher.cancel()
            await asyncio.wait([limiter.refresher])
        await limiter.backend.close()


# The limiters of each event loop (a storage's connections belong to one loop), by backend.
_limiters = runtime.per_loop(lambda loop: {}, close=_limiters_close)


def get_limiter() -> Limiter:
    """The limiter for the running loop and the configured backend."""
    limiters = _limiters(asyncio.get_running_loop())
    key = _backend_config()
    limiter = limiters.get(key)
    if limiter is None:
        limiter = limiters[key] = Limiter(backend_create(key[0]))
    return limiter


__all__ = ["Lease", "Limiter", "Rules", "get_limiter", "rules"]
