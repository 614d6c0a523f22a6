"""`python -m bench.limits --backend memory|redis [--design app|limits-api] [--sends N]`: the server
CPU a limit check adds to a send, measured in-process (a micro-benchmark of the check, printed
as JSON), and with Redis the round trips it takes.

Each send is what the server does for limits on POST .../messages with the contract's defaults
(30 messages a minute per owner, 120 per address, 3 replies at once): `Limiter.admit` (the
message windows hit, the reply's lease taken), then, when the reply ends, the lease released;
with `--tokens`, also the quota tested and the reply's tokens charged. Owners and addresses
rotate so that nothing is refused (the happy path). The event loop is uvloop's, as under
uvicorn[standard]. CPU is this process's (all threads: `time.process_time`), so with Redis it
is our side of the round trips, not Redis's own. Run pinned to one CPU by bench.run, like the
servers.

Two designs for Redis, measured against each other when the counting left `limits`' private
names (its window keys and Lua bridge):
- `app`: the app's own scripts (chat/ratelimit/redis.py), a request's admission one EVALSHA;
- `limits-api`: `limits`' public async API (`SlidingWindowCounterRateLimiter.hit`,
  `FixedWindowRateLimiter.test`/`hit`), one round trip per call, the leases by the app's script.
A round trip is one command or pipeline written to a connection (`send_packed_command`).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = ("app", "limits-api")

SETTINGS = {
    "CHAT_LIMIT_MESSAGES": "30/minute",
    "CHAT_LIMIT_MESSAGES_IP": "120/minute",
    "CHAT_LIMIT_REPLIES": "3",
    "CHAT_QUOTA_TOKENS": "0",
}


def counting_connection():
    """redis-py's asyncio connection, counting what it writes (one write per round trip)."""
    import redis.asyncio as aioredis

    class Counting(aioredis.Connection):
        writes = 0

        async def send_packed_command(self, command, check_health: bool = True) -> None:
            Counting.writes += 1
            await super().send_packed_command(command, check_health)

    return Counting


def limits_api_backend():
    """Design (b): the windows and the quota through `limits`' public async API."""
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

    from chat.ratelimit.backends import Checks, Outcome, Quota, Window
    from chat.ratelimit.redis import RedisBackend

    class LimitsApiBackend(RedisBackend):
        def __init__(self, url: str, prefix: str, **options) -> None:
            super().__init__(url, prefix, **options)
            scheme, rest = url.split("://", 1)
            self.storage = RedisStorage(
                f"async+{scheme}://{rest}",
                implementation="redispy",
                key_prefix=f"{prefix}:windows",
                connection_pool=self.pool,
                wrap_exceptions=True,
            )
            self.sliding = SlidingWindowCounterRateLimiter(self.storage)
            self.fixed = FixedWindowRateLimiter(self.storage)

        async def check(self, checks: Checks) -> Outcome:
            """One call per check; the leases taken last, only when the rest passed (and given
            back if a later one is refused): not atomic, so a slot may be seen taken a moment."""
            # `limits` tests a quota against its own amount: an address's quota held to one
            # visitor's share for a client without a session has no counterpart there.
            quotas = tuple([await self.fixed.test(item, *who) for item, who, _ in checks.quotas])
            hits = tuple([await self.sliding.hit(item, *who) for item, who in checks.hits])
            leases: list[bool] = []
            if all(quotas) and all(hits):
                for key, lease, limit in checks.leases:
                    leases.append(await self.acquire(key, lease, limit, checks.ttl))
                    if not leases[-1]:
                        break
            leases += [False] * (len(checks.leases) - len(leases))
            outcome = Outcome(quotas, tuple(leases), hits)
            if not outcome.admitted:
                for (key, lease, _), taken in zip(checks.leases, leases, strict=True):
                    if taken:
                        await self.release([(key, lease)])
            return outcome

        async def window(self, item, identifiers) -> Window:
            previous, previous_ttl, current, current_ttl = await self.storage.get_sliding_window(
                item.key_for(*identifiers), item.get_expiry()
            )
            return Window(previous, previous_ttl, current, current_ttl)

        async def quota(self, item, identifiers) -> Quota:
            stats = await self.fixed.get_window_stats(item, *identifiers)
            return Quota(item.amount - stats.remaining, max(stats.reset_time - time.time(), 0))

        async def charge(self, quotas, cost: int) -> None:
            for item, identifiers in quotas:
                await self.fixed.hit(item, *identifiers, cost=cost)

    return LimitsApiBackend


async def run(sends: int, tokens: bool, design: str) -> dict:
    from chat import conf
    from chat.ratelimit import Limiter
    from chat.ratelimit.backends import MemoryBackend
    from chat.ratelimit.redis import RedisBackend

    counting = None
    if conf.get("REDIS_URL"):
        counting = counting_connection()
        kind = RedisBackend if design == "app" else limits_api_backend()
        backend = kind(conf.get("REDIS_URL"), conf.get("CHAT_LIMITS_PREFIX"), connection_class=counting)
    else:
        backend = MemoryBackend()
    limiter = Limiter(backend)
    owners, addresses = 1000, 200  # at most 30 sends per owner and 120 per address a minute
    warmup = min(200, sends // 10)
    started = 0.0
    wall = 0.0
    writes = 0
    for i in range(warmup + sends):
        if i == warmup:
            started, wall = time.process_time(), time.perf_counter()
            writes = counting.writes if counting else 0
        owner, address = f"visitor:{i % owners}", f"10.0.{(i // owners) % addresses}.{i % 250}"
        leases = await limiter.admit(owner=owner, ip=address)
        await limiter.release(leases)
        if tokens:
            await limiter.charge(owner=owner, ip=address, tokens=300)
    cpu, wall = time.process_time() - started, time.perf_counter() - wall
    writes = (counting.writes - writes) if counting else 0
    await limiter.backend.close()
    return {
        "sends": sends,
        "cpu_us_per_send": cpu / sends * 1e6,
        "wall_us_per_send": wall / sends * 1e6,
        "round_trips_per_send": writes / sends,
    }


def measure(backend: str, sends: int, cpu: str, design: str = "app") -> dict:
    """Run this module in a process of its own pinned to `cpu`; its JSON, or why it did not run."""
    if backend == "redis" and not os.environ.get("REDIS_URL"):
        return {"backend": backend, "skipped": "REDIS_URL is not set"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "DJANGO_"))}
    env.update(DEBUG="0", SECRET_KEY="bench-only-not-secret")  # production-like, as bench/servers.py
    result = subprocess.run(
        [
            "taskset",
            "-c",
            cpu,
            sys.executable,
            "-m",
            "bench.limits",
            "--backend",
            backend,
            "--sends",
            str(sends),
            "--design",
            design,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        return {"backend": backend, "skipped": (result.stderr or result.stdout).strip()[-300:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["memory", "redis"], default="memory")
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--tokens", action="store_true", help="with a token quota too (200000/day)")
    parser.add_argument("--design", choices=DESIGNS, default="app", help="with Redis: whose counting")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.update(SETTINGS)
    if args.tokens:
        os.environ["CHAT_QUOTA_TOKENS"] = "200000/day"
    if args.backend == "memory":
        os.environ.pop("REDIS_URL", None)
    elif not os.environ.get("REDIS_URL"):
        raise SystemExit("REDIS_URL is not set")
    prefix = f"chat-bench-{uuid.uuid4().hex[:10]}"
    os.environ["CHAT_LIMITS_PREFIX"] = prefix
    import django

    django.setup()
    from bench.load import new_loop  # uvloop, as uvicorn[standard] serves the app

    loop = new_loop()
    try:
        result = loop.run_until_complete(run(args.sends, args.tokens, args.design))
    finally:
        loop.close()
        if args.backend == "redis":
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()
    design = args.design if args.backend == "redis" else "app"
    print(json.dumps({"backend": args.backend, "design": design, "tokens": args.tokens, **result}))


if __name__ == "__main__":
    main()
