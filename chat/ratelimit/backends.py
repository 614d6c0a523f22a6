"""Where the counts live: this process's memory, or Redis (chat/ratelimit/redis.py).

Windows (messages, tokens) are counted by the `limits` library's storages. Things held at
once (replies generating, streams open) are leases under a key, each lapsing unless its holder
refreshes it: a process that dies stops refreshing, so what it held is free again within the
stale-reply window, with no one to clean up after it.
"""

import json
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

REFUSALS_KEPT = 200


@dataclass(frozen=True)
class Checks:
    """Everything one request asks for at once: a quota to test, leases to take, windows to hit."""

    quota: tuple[RateLimitItem, tuple[str, ...]] | None  # (item, identifiers)
    leases: tuple[tuple[str, str, int], ...]  # (key, lease id, limit)
    hits: tuple[tuple[RateLimitItem, tuple[str, ...]], ...]
    ttl: float  # of the leases


@dataclass(frozen=True)
class Outcome:
    quota: bool
    leases: tuple[bool, ...]
    hits: tuple[bool, ...]


class Backend(ABC):
    storage: Storage  # the `limits` storage for windows

    def strategies(self) -> None:
        self.window = SlidingWindowCounterRateLimiter(self.storage)
        self.quota = FixedWindowRateLimiter(self.storage)

    async def check(self, checks: Checks) -> Outcome:
        """Run every check (none depends on another's result); Redis does it in one round trip."""
        quota = True if checks.quota is None else await self.quota.test(checks.quota[0], *checks.quota[1])
        leases = [await self.acquire(key, lease, limit, checks.ttl) for key, lease, limit in checks.leases]
        hits = [await self.window.hit(item, *identifiers) for item, identifiers in checks.hits]
        return Outcome(quota, tuple(leases), tuple(hits))

    @abstractmethod
    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        """Take a lease under `key` unless `limit` live leases are held there already."""

    @abstractmethod
    async def release(self, key: str, lease: str) -> None: ...

    @abstractmethod
    async def refresh(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """Push back the lapse of these (key, lease) pairs; a lease already gone stays gone."""

    @abstractmethod
    async def held(self, key: str) -> int:
        """Live leases under `key`."""

    @abstractmethod
    async def record_refusal(self, entry: dict) -> None:
        """Remember a refusal for the admin (the most recent few hundred)."""

    @abstractmethod
    async def refusals(self) -> list[dict]:
        """Recent refusals, newest first."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemoryBackend(Backend):
    """One process's counts: several workers each count for themselves."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.strategies()
        self.leases: dict[str, dict[str, float]] = {}
        self.recent: deque[str] = deque(maxlen=REFUSALS_KEPT)

    def _live(self, key: str) -> dict[str, float]:
        leases = self.leases.get(key)
        if leases is None:
            return {}
        now = time.monotonic()
        for lease, lapses in list(leases.items()):
            if lapses <= now:
                del leases[lease]
        if not leases:
            del self.leases[key]
        return leases

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        leases = self._live(key)
        if len(leases) >= limit:
            return False
        self.leases.setdefault(key, leases)[lease] = time.monotonic() + ttl
        return True

    async def release(self, key: str, lease: str) -> None:
        leases = self.leases.get(key)
        if leases is not None:
            leases.pop(lease, None)
            if not leases:
                del self.leases[key]

    async def refresh(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        lapses = time.monotonic() + ttl
        for key, lease in leases:
            held = self.leases.get(key)
            if held is not None and lease in held:
                held[lease] = lapses

    async def held(self, key: str) -> int:
        return len(self._live(key))

    async def record_refusal(self, entry: dict) -> None:
        self.recent.appendleft(json.dumps(entry))

    async def refusals(self) -> list[dict]:
        return [json.loads(item) for item in self.recent]
