"""Where the counts live: this process's memory, or Redis (chat/ratelimit/redis.py).

Both count the same way, written twice (here in Python, there in Lua):
- Messages: a sliding window counter. Counts are kept per window of the rate's length, the
  first starting at the first hit; a hit is allowed while the current window's count plus the
  previous window's, weighted by the part of it still inside the sliding window, is under the
  limit (the algorithm of the `limits` library, whose `RateLimitItem` names the rates).
- Tokens: a fixed window that starts at the first charge and lasts the rate's length.
- Things held at once (replies generating, streams open) are leases under a key, each lapsing
  unless its holder refreshes it: a process that dies stops refreshing, so what it held is
  free again within the stale-reply window, with no one to clean up after it.
"""

import json
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from django.utils.module_loading import import_string
from limits import RateLimitItem

from chat import conf

REFUSALS_KEPT = 200
MEMORY = "chat.ratelimit.backends.MemoryBackend"
REDIS = "chat.ratelimit.redis.RedisBackend"

Counted = tuple[RateLimitItem, tuple[str, ...]]  # a rate, and whose count (item.key_for's identifiers)
# A quota tested: its window and whose (the key), and the use it must be under. Not always the
# rate's amount: an address's quota holds a client without a session to one visitor's.
Tested = tuple[RateLimitItem, tuple[str, ...], int]


@dataclass(frozen=True)
class Checks:
    """Everything one request asks for at once: quotas to test, leases to take, windows to hit."""

    quotas: tuple[Tested, ...]
    leases: tuple[tuple[str, str, int], ...]  # (key, lease id, limit)
    hits: tuple[Counted, ...]
    ttl: float  # of the leases


@dataclass(frozen=True)
class Outcome:
    """Which checks passed. Windows with room count the hit whatever the rest says (an attempt
    is an attempt); the leases are taken only when the request is `admitted`."""

    quotas: tuple[bool, ...]
    leases: tuple[bool, ...]
    hits: tuple[bool, ...]

    @property
    def admitted(self) -> bool:
        return all(self.quotas) and all(self.leases) and all(self.hits)


@dataclass(frozen=True)
class Window:
    """A sliding window counter, in seconds: the previous window's count and how long it still
    weighs, the current window's count and how long until it is forgotten (its own end plus
    one window, as the `limits` library reports it)."""

    previous: int
    previous_ttl: float
    current: int
    current_ttl: float

    def used(self, expiry: float) -> int:
        return weighted(self.previous, self.previous_ttl, self.current, expiry)


def weighted(previous: int, previous_ttl: float, current: int, expiry: float) -> int:
    """The count a hit is compared with: allowed while it is under the limit."""
    return math.floor(previous * previous_ttl / expiry) + current


@dataclass(frozen=True)
class Quota:
    used: int
    renews_in: float  # seconds; 0 when nothing is used


class Backend(ABC):
    @classmethod
    def from_settings(cls) -> Self:
        """The backend as the settings configure it (CHAT_LIMITS_BACKEND names the class)."""
        return cls()

    def outage(self, exc: Exception) -> bool:
        """Whether `exc` says the storage itself is out of reach (then requests are let through).

        Anything else is an error, and fails the request: a limit must not turn itself off.
        """
        return False

    @abstractmethod
    async def check(self, checks: Checks) -> Outcome:
        """Run a request's checks at once (atomically: no other request's checks in between)."""

    @abstractmethod
    async def window(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> Window:
        """A message window's counts, for the wait of a refusal and the admin."""

    @abstractmethod
    async def quota(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> Quota:
        """A token quota's use and when it renews."""

    @abstractmethod
    async def charge(self, quotas: Sequence[Counted], cost: int) -> None:
        """Add `cost` to each of these quotas (an owner's and its address's), even past them
        (the reply that crosses one has finished)."""

    @abstractmethod
    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        """Take a lease under `key` unless `limit` live leases are held there already."""

    @abstractmethod
    async def release(self, leases: Sequence[tuple[str, str]]) -> None:
        """Give back these (key, lease) pairs (a reply's own slot and its address's)."""

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


def backend_path() -> str:
    """CHAT_LIMITS_BACKEND when set; else Redis with REDIS_URL, this process's memory without."""
    return conf.get_str("CHAT_LIMITS_BACKEND") or (REDIS if conf.get("REDIS_URL") else MEMORY)


def backend_create(path: str) -> Backend:
    return import_string(path).from_settings()


# --- this process's memory --------------------------------------------------------------------


def shifted(start: float, current: int, previous: int, now: float, expiry: float) -> tuple[float, int, int]:
    """A sliding window counter's (start, current, previous) at `now`: once the current window
    has ended its count becomes the previous one; after two windows nothing is left."""
    if now - start >= 2 * expiry:
        return now, 0, 0
    if now - start >= expiry:
        return start + expiry, 0, current
    return start, current, previous


class Counters:
    """Sliding window counters and fixed windows in memory, on the monotonic clock."""

    SWEEP_EVERY = 60.0

    def __init__(self) -> None:
        self.windows: dict[str, tuple[float, int, int, float]] = {}  # start, current, previous, expiry
        self.fixed: dict[str, tuple[int, float]] = {}  # used, ends
        self.swept = -math.inf  # the first sweep runs whenever it is asked for

    def _state(self, key: str, expiry: float, now: float) -> tuple[float, int, int]:
        start, current, previous, _ = self.windows.get(key, (now, 0, 0, expiry))
        return shifted(start, current, previous, now, expiry)

    def window(self, key: str, expiry: float, now: float) -> Window:
        start, current, previous = self._state(key, expiry, now)
        return Window(previous, start + expiry - now, current, start + 2 * expiry - now)

    def hit(self, key: str, limit: int, expiry: float, now: float) -> bool:
        start, current, previous = self._state(key, expiry, now)
        if weighted(previous, start + expiry - now, current, expiry) >= limit:
            return False
        self.windows[key] = (start, current + 1, previous, expiry)
        return True

    def quota(self, key: str, now: float) -> Quota:
        used, ends = self.fixed.get(key, (0, now))
        return Quota(used, ends - now) if ends > now else Quota(0, 0.0)

    def charge(self, key: str, cost: int, expiry: float, now: float) -> None:
        quota = self.quota(key, now)
        self.fixed[key] = (quota.used + cost, now + (quota.renews_in if quota.used else expiry))

    def sweep(self, now: float) -> None:
        """Forget what has lapsed, now and then (a count per visitor and address seen)."""
        if now - self.swept < self.SWEEP_EVERY:
            return
        self.swept = now
        self.windows = {k: v for k, v in self.windows.items() if now - v[0] < 2 * v[3]}
        self.fixed = {k: v for k, v in self.fixed.items() if v[1] > now}


class MemoryBackend(Backend):
    """One process's counts: several workers each count for themselves."""

    def __init__(self) -> None:
        self.counters = Counters()
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

    async def check(self, checks: Checks) -> Outcome:
        now = time.monotonic()
        self.counters.sweep(now)
        outcome = Outcome(
            quotas=tuple(
                self.counters.quota(item.key_for(*who), now).used < limit
                for item, who, limit in checks.quotas
            ),
            leases=tuple(len(self._live(key)) < limit for key, _, limit in checks.leases),
            hits=tuple(
                self.counters.hit(item.key_for(*who), item.amount, item.get_expiry(), now)
                for item, who in checks.hits
            ),
        )
        if outcome.admitted:
            for key, lease, _ in checks.leases:
                self.leases.setdefault(key, {})[lease] = now + checks.ttl
        return outcome

    async def window(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> Window:
        return self.counters.window(item.key_for(*identifiers), item.get_expiry(), time.monotonic())

    async def quota(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> Quota:
        return self.counters.quota(item.key_for(*identifiers), time.monotonic())

    async def charge(self, quotas: Sequence[Counted], cost: int) -> None:
        now = time.monotonic()
        for item, identifiers in quotas:
            self.counters.charge(item.key_for(*identifiers), cost, item.get_expiry(), now)

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        if len(self._live(key)) >= limit:
            return False
        self.leases.setdefault(key, {})[lease] = time.monotonic() + ttl
        return True

    async def release(self, leases: Sequence[tuple[str, str]]) -> None:
        for key, lease in leases:
            held = self.leases.get(key)
            if held is not None:
                held.pop(lease, None)
                if not held:
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
