"""Counts shared by every process and machine through Redis (REDIS_URL).

The app's own Lua scripts, counting as chat/ratelimit/backends.py does in memory. A request's
whole admission (quotas tested, windows hit, leases taken) is one script, so one round trip and
atomic: after a Redis restart or SCRIPT FLUSH the call fails with NOSCRIPT having done nothing,
and redis-py's `Script` loads it and calls it again without taking anything twice. Time is
Redis's (`TIME`), so machines need not agree on the clock. Leases are a sorted set per key,
scored by the moment each lapses, trimmed whenever they are counted. A message window is a
hash (s: the current window's start, c: its count, p: the previous window's count).
"""

import json
from collections.abc import Sequence
from typing import Any, Self

import redis.asyncio as aioredis
from limits import RateLimitItem
from redis.exceptions import AuthenticationError, AuthorizationError, BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat import conf
from chat.ratelimit.backends import REFUSALS_KEPT, Backend, Checks, Counted, Outcome, Quota, Window

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"

# A message window at `now` (milliseconds), as backends.shifted has it.
_WINDOW = """
local function window(key, expiry, now)
    local v = redis.call('HMGET', key, 's', 'c', 'p')
    local s, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
    if s == nil or now - s >= 2 * expiry then return now, 0, 0 end
    if now - s >= expiry then return s + expiry, 0, c end
    return s, c, p
end
"""

# KEYS: the quotas', the leases', the windows'. ARGV: how many of each, the leases' lifetime (ms),
# then the use each quota must be under, each lease's id and limit, each window's limit and
# length (ms).
# Returns 1 or 0 per check, in that order.
ADMIT = f"""{_NOW}
{_WINDOW}
local quotas, leases, windows = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local results, admitted = {{}}, true
local function put(ok)
    results[#results + 1] = ok and 1 or 0
    admitted = admitted and ok
end
for i = 1, quotas do
    put((tonumber(redis.call('GET', KEYS[i])) or 0) < tonumber(ARGV[4 + i]))
end
for i = 1, leases do
    local key = KEYS[quotas + i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    put(redis.call('ZCARD', key) < tonumber(ARGV[4 + quotas + 2 * i]))
end
for i = 1, windows do
    local key = KEYS[quotas + leases + i]
    local at = 4 + quotas + 2 * leases + 2 * i
    local limit, expiry = tonumber(ARGV[at - 1]), tonumber(ARGV[at])
    local s, c, p = window(key, expiry, now)
    local ok = math.floor(p * (s + expiry - now) / expiry) + c < limit
    if ok then
        redis.call('HSET', key, 's', s, 'c', c + 1, 'p', p)
        redis.call('PEXPIRE', key, s + 2 * expiry - now)
    end
    put(ok)
end
if admitted then
    for i = 1, leases do
        local key = KEYS[quotas + i]
        redis.call('ZADD', key, now + ttl, ARGV[4 + quotas + 2 * i - 1])
        redis.call('PEXPIRE', key, ttl)
    end
end
return results
"""

# KEYS[1]: a window; ARGV[1]: its length (ms). Returns previous, its ttl, current, its ttl (ms).
WINDOW = f"""{_NOW}
{_WINDOW}
local expiry = tonumber(ARGV[1])
local s, c, p = window(KEYS[1], expiry, now)
return {{p, s + expiry - now, c, s + 2 * expiry - now}}
"""

# KEYS: quotas; ARGV: the cost, then each one's window length (ms), which starts at its first charge.
CHARGE = """
for i, key in ipairs(KEYS) do
    redis.call('INCRBY', key, ARGV[1])
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[i + 1]) end
end
return 0
"""

ACQUIRE = f"""{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

REFRESH = f"""{_NOW}
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    if redis.call('ZADD', key, 'XX', 'CH', now + ttl, ARGV[i + 1]) > 0 then
        redis.call('PEXPIRE', key, ttl)
    end
end
return 0
"""

# KEYS: lease sets; ARGV: the lease to remove from each.
RELEASE = """
for i, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[i]) end
return 0
"""

HELD = f"""{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


def ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisBackend(Backend):
    def __init__(self, url: str, prefix: str, **options: Any) -> None:
        """`options` go to redis-py's `ConnectionPool.from_url` (timeouts, a connection class)."""
        self.prefix = prefix
        self.pool = aioredis.ConnectionPool.from_url(url, **options)
        self.client = aioredis.Redis(connection_pool=self.pool)
        self._admit = self.client.register_script(ADMIT)
        self._window = self.client.register_script(WINDOW)
        self._charge = self.client.register_script(CHARGE)
        self._acquire = self.client.register_script(ACQUIRE)
        self._refresh = self.client.register_script(REFRESH)
        self._release = self.client.register_script(RELEASE)
        self._held = self.client.register_script(HELD)

    @classmethod
    def from_settings(cls) -> Self:
        # A Redis that stops answering is an outage after CHAT_REDIS_TIMEOUT, not a hung send.
        timeout = conf.get_float("CHAT_REDIS_TIMEOUT")
        return cls(
            str(conf.get("REDIS_URL")),
            str(conf.get("CHAT_LIMITS_PREFIX")),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def outage(self, exc: Exception) -> bool:
        """Redis down, unreachable, too slow or still loading its data. Wrong credentials are a
        configuration error, like any other error: the request fails rather than go unlimited."""
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return False
        return isinstance(exc, RedisConnectionError | RedisTimeoutError | BusyLoadingError)

    def _window_key(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
        return f"{self.prefix}:sliding:{item.key_for(*identifiers)}"

    def _quota_key(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
        # The key and the counting of the `limits` library's fixed window, which held the
        # quotas before: a deployment keeps its owners' use across the upgrade.
        return f"{self.prefix}:windows:{item.key_for(*identifiers)}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}:leases:{key}"

    async def check(self, checks: Checks) -> Outcome:
        """Every check of a request in one script: one round trip (each costs about as much
        client CPU as all the rest of a check, bench/limits.py), atomic, safe to call again."""
        keys = [self._quota_key(item, who) for item, who, _ in checks.quotas]
        keys += [self._key(key) for key, _, _ in checks.leases]
        keys += [self._window_key(item, who) for item, who in checks.hits]
        args: list[str | int] = [len(checks.quotas), len(checks.leases), len(checks.hits), ms(checks.ttl)]
        args += [limit for _, _, limit in checks.quotas]
        for _, lease, limit in checks.leases:
            args += [lease, limit]
        for item, _ in checks.hits:
            args += [item.amount, item.get_expiry() * 1000]
        results = [bool(result) for result in await self._admit(keys, args)]
        quotas, leases = len(checks.quotas), len(checks.quotas) + len(checks.leases)
        return Outcome(tuple(results[:quotas]), tuple(results[quotas:leases]), tuple(results[leases:]))

    async def window(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> Window:
        key = self._window_key(item, identifiers)
        previous, previous_ttl, current, current_ttl = await self._window([key], [item.get_expiry() * 1000])
        return Window(int(previous), previous_ttl / 1000, int(current), current_ttl / 1000)

    async def quota(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> Quota:
        key = self._quota_key(item, identifiers)
        async with self.client.pipeline(transaction=False) as pipe:
            used, ttl = await pipe.get(key).pttl(key).execute()
        return Quota(int(used or 0), max(ttl, 0) / 1000)

    async def charge(self, quotas: Sequence[Counted], cost: int) -> None:
        """One round trip for an owner's quota and its address's."""
        if quotas:
            keys = [self._quota_key(item, who) for item, who in quotas]
            await self._charge(keys, [cost, *(item.get_expiry() * 1000 for item, _ in quotas)])

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        return bool(await self._acquire([self._key(key)], [lease, limit, ms(ttl)]))

    async def release(self, leases: Sequence[tuple[str, str]]) -> None:
        """One round trip for a reply's slots (run again after NOSCRIPT, it removes nothing more)."""
        if leases:
            await self._release([self._key(key) for key, _ in leases], [lease for _, lease in leases])

    async def refresh(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        if leases:
            keys = [self._key(key) for key, _ in leases]
            await self._refresh(keys, [ms(ttl), *(lease for _, lease in leases)])

    async def held(self, key: str) -> int:
        return int(await self._held([self._key(key)]))

    async def record_refusal(self, entry: dict) -> None:
        key = f"{self.prefix}:refusals"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(entry))
            pipe.ltrim(key, 0, REFUSALS_KEPT - 1)
            await pipe.execute()

    async def refusals(self) -> list[dict]:
        return [json.loads(item) for item in await self.client.lrange(f"{self.prefix}:refusals", 0, -1)]

    async def close(self) -> None:
        await self.pool.disconnect()
