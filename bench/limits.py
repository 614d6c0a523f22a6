"""`python -m bench.limits --backend memory|redis [--sends N]`: the server CPU a limit check adds
to a send, measured in-process (a micro-benchmark of the check, printed as JSON).

Each send is what the server does for limits on POST .../messages with the contract's defaults
(30 messages a minute per owner, 120 per address, 3 replies at once): `Limiter.admit` (the
windows counted by the `limits` library, the reply's lease taken), then, when the reply ends,
the lease released; with `--tokens`, also the quota checked and the reply's tokens charged.
Owners and addresses rotate so that nothing is refused (the happy path). The event loop is
uvloop's, as under uvicorn[standard]. CPU is this process's
(all threads: `time.process_time`), so with Redis it is our side of the round trips, not
Redis's own. Run pinned to one CPU by bench.run, like the servers.
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

SETTINGS = {
    "CHAT_LIMIT_MESSAGES": "30/minute",
    "CHAT_LIMIT_MESSAGES_IP": "120/minute",
    "CHAT_LIMIT_REPLIES": "3",
    "CHAT_QUOTA_TOKENS": "0",
}


async def run(sends: int, tokens: bool) -> dict:
    from chat.ratelimit import get_limiter

    limiter = get_limiter()
    owners, addresses = 1000, 200  # at most 30 sends per owner and 120 per address a minute
    warmup = min(200, sends // 10)
    started = 0.0
    wall = 0.0
    for i in range(warmup + sends):
        if i == warmup:
            started, wall = time.process_time(), time.perf_counter()
        owner, address = f"visitor:{i % owners}", f"10.0.{(i // owners) % addresses}.{i % 250}"
        leases = await limiter.admit(owner=owner, ip=address)
        await limiter.release(leases)
        if tokens:
            await limiter.charge(owner=owner, tokens=300)
    cpu, wall = time.process_time() - started, time.perf_counter() - wall
    await limiter.backend.close()
    return {"sends": sends, "cpu_us_per_send": cpu / sends * 1e6, "wall_us_per_send": wall / sends * 1e6}


def measure(backend: str, sends: int, cpu: str) -> dict:
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
        result = loop.run_until_complete(run(args.sends, args.tokens))
    finally:
        loop.close()
        if args.backend == "redis":
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()
    print(json.dumps({"backend": args.backend, "tokens": args.tokens, **result}))


if __name__ == "__main__":
    main()
