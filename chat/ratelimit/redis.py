"""Counts shared by every process and machine through Redis (REDIS_URL).

Windows use the `limits` library's Redis storage (its Lua scripts, on redis-py's asyncio
client); leases are a sorted set per key, scored by the moment each lapses (Redis's clock,
so machines need not agree on the time), trimmed whenever a lease is asked for.
"""

import json
from collections.abc import Sequence

import redis.asyncio as aioredis
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from redis.exceptions import NoScriptError

from chat.ratelimit.backends import REFUSALS_KEPT, Backend, Checks, Outcome

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"

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

HELD = f"""{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class RedisBackend(Backend):
    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.pool = aioredis.ConnectionPool.from_url(url)
        self.client = aioredis.Redis(connection_pool=self.pool)
        scheme, rest = url.split("://", 1)
        self.storage = RedisStorage(
            f"async+{scheme}://{rest}",
            implementation="redispy",
            key_prefix=f"{prefix}:windows",
            connection_pool=self.pool,
        )
        self._acquire = self.client.register_script(ACQUIRE)
        self._refresh = self.client.register_script(REFRESH)
        self._held = self.client.register_script(HELD)
        self.strategies()

    async def check(self, checks: Checks) -> Outcome:
        """Every check of a request in one round trip (a pipeline): each round trip costs about
        as much client CPU as all the rest of a check (bench/limits.py)."""
        for attempt in range(2):
            async with self.client.pipeline(transaction=False) as pipe:
                if checks.quota is not None:
                    pipe.get(self._window_key(checks.quota[0].key_for(*checks.quota[1])))
                ttl = max(1, int(checks.ttl * 1000))
                for key, lease, limit in checks.leases:
                    pipe.evalsha(self._acquire.sha, 1, self._key(key), lease, limit, ttl)
                for item, identifiers in checks.hits:
                    self._queue_window_hit(pipe, item, identifiers)
                results = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                await self._load_scripts()  # Redis restarted or flushed its scripts: once more
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            break
        quota = True
        if checks.quota is not None:
            quota = int(results.pop(0) or 0) < checks.quota[0].amount
        leases = tuple(bool(r) for r in results[: len(checks.leases)])
        return Outcome(quota, leases, tuple(bool(r) for r in results[len(checks.leases) :]))

    # The `limits` library's own keys and Lua script, queued on a pipeline, as its
    # RedisStorage.acquire_sliding_window_entry (limits 5.x) sends them one round trip at a time.
    # tests/test_limits_redis.py compares the two, and fails if the library changes them.

    def _window_key(self, key: str) -> str:
        return self.storage.bridge.prefixed_key(key)

    def _queue_window_hit(self, pipe, item: RateLimitItem, identifiers: tuple[str, ...]) -> None:
        key = item.key_for(*identifiers)
        previous = self._window_key(self.storage._previous_window_key(key))
        current = self._window_key(self.storage._current_window_key(key))
        script = self.storage.bridge.lua_acquire_sliding_window
        pipe.evalsha(script.sha, 2, previous, current, item.amount, item.get_expiry(), 1)

    async def _load_scripts(self) -> None:
        for script in (self._acquire, self.storage.bridge.lua_acquire_sliding_window):
            await self.client.script_load(script.script)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:leases:{key}"

    async def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        return bool(await self._acquire([self._key(key)], [lease, limit, max(1, int(ttl * 1000))]))

    async def release(self, key: str, lease: str) -> None:
        await self.client.zrem(self._key(key), lease)

    async def refresh(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        if leases:
            keys = [self._key(key) for key, _ in leases]
            await self._refresh(keys, [max(1, int(ttl * 1000)), *(lease for _, lease in leases)])

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
