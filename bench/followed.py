"""5. A reply followed from another process: the in-process log against Redis Streams.

Both runs drive the same procedure: replies created with a plain POST on the generating
server, each followed by a GET of its stream on the serving server. In-process, both are one
server (its memory log); with Redis, two servers (uvicorn processes) share a redis-server of
the run's own, all pinned to the server CPU, so that the figures count every process a token
goes through. CPU per token is the app processes' (Redis's own is shown beside it).
"""

import asyncio
import json
import math
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from bench.load import Client, Stream, clock
from bench.scenarios import PACED_RATE, QUESTION, Sizes, paced_env, percentile, token_index
from bench.servers import SERVER_CPU, Server, base_env, copy_database, cpu_seconds, free_port
from chat.providers.demo import demo_tokens


class RedisProcess:
    """redis-server without persistence, on a free port, pinned to the server CPU."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisProcess":
        args = ["taskset", "-c", SERVER_CPU, "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*args, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def jitter(stream: Stream, index: dict[int, int], since: float, until: float) -> list[float]:
    """Seconds each token arrived after its due time, the stream's schedule anchored on its
    most punctual event (a follower that joins late first gets the text so far at once)."""
    if not stream.times:
        return []
    ks = [index[offset] for offset in stream.offsets]
    anchor = min(at - k / PACED_RATE for at, k in zip(stream.times, ks, strict=True))
    out, previous = [], -1
    for at, k in zip(stream.times, ks, strict=True):
        if since <= at <= until:
            out.extend(at - anchor - j / PACED_RATE for j in range(previous + 1, k + 1))
        previous = k
    return out


async def _reply_ids(client: Client, count: int) -> list[str]:
    gate = asyncio.Semaphore(16)

    async def one() -> str:
        async with gate:
            status, raw = await client.call("POST", "/api/conversations", {"content": QUESTION})
            assert status == 201, raw[:300]
            return json.loads(raw.split(b"\r\n\r\n", 1)[1])["assistant_message"]["id"]

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _follow(client: Client, message_ids: list[str]) -> list[Stream]:
    gate = asyncio.Semaphore(32)
    loop = asyncio.get_running_loop()

    async def one(message_id: str) -> Stream:
        request = client._request(
            "GET", f"/api/messages/{message_id}/stream", b"", "text/event-stream", False
        )
        async with gate:
            _, stream = await loop.create_connection(lambda: client._new(request), "127.0.0.1", client.port)
            await stream.started
            return stream

    return list(await asyncio.gather(*(one(m) for m in message_ids)))


async def measure(generator: Server, follower: Server, others: list, sizes: Sizes, n: int) -> dict:
    gen = Client(generator.port)
    await gen.setup()
    fol = Client(follower.port, cookies=gen.cookies)
    index = token_index(demo_tokens(QUESTION, int(generator.env["CHAT_DEMO_TOKENS"])))
    servers = [generator] if follower is generator else [generator, follower]
    streams = await _follow(fol, await _reply_ids(gen, n))
    texted = not (await asyncio.wait([s.texted for s in streams], timeout=sizes.paced_ramp))[1]
    await asyncio.sleep(1.0)  # past the catch-ups
    since, other0 = clock(), sum(o.cpu() for o in others)
    each0 = [s.cpu() for s in servers]
    events0 = sum(len(s.offsets) for s in streams)
    await asyncio.sleep(sizes.paced_window)
    until = clock()
    each = [s.cpu() - c for s, c in zip(servers, each0, strict=True)]
    cpu, other = sum(each), sum(o.cpu() for o in others) - other0
    events = sum(len(s.offsets) for s in streams) - events0
    streaming = all(s.end is None for s in streams)
    for stream in streams:
        stream.close()
    late = [x for s in streams for x in jitter(s, index, since, until)]
    return {
        "streams": n,
        "all_streaming": texted and streaming and bool(late),
        "all_texted": texted,
        "none_ended": streaming,
        "tokens_measured": len(late),
        "p50_ms": percentile(late, 50) * 1000 if late else math.inf,
        "p99_ms": percentile(late, 99) * 1000 if late else math.inf,
        "cpu_us_per_token": cpu / max(len(late), 1) * 1e6,
        "cpu_us_per_token_each": [c / max(len(late), 1) * 1e6 for c in each],
        "redis_cpu_us_per_token": other / max(len(late), 1) * 1e6 if others else None,
        "events_per_token": events / max(len(late), 1),
        "errors": sum(s.errors for s in streams),
    }


async def followed(template: Path, workdir: Path, sizes: Sizes) -> dict | None:
    """Both runs, in-process first; None when this machine has no redis-server."""
    if shutil.which("redis-server") is None or shutil.which("taskset") is None:
        return None
    n = sizes.followed_streams
    env = paced_env(sizes.paced_ramp + sizes.paced_window + 10)
    out: dict = {"streams": n, "rate": PACED_RATE}
    database = copy_database(template, workdir / "followed-memory.sqlite3")
    server = Server("app", base_env(database, **env)).start()
    try:
        print("  followed: in-process ...", flush=True)
        out["memory"] = await measure(server, server, [], sizes, n)
    finally:
        await asyncio.to_thread(server.stop)
    redis = RedisProcess().start()
    database = copy_database(template, workdir / "followed-redis.sqlite3")
    shared = {**env, "REDIS_URL": redis.url, "CHAT_REDIS_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:"}
    a = Server("app", base_env(database, **shared)).start()
    b = Server("app", base_env(database, **shared)).start()
    try:
        print("  followed: Redis, another process ...", flush=True)
        out["redis"] = await measure(a, b, [redis], sizes, n)
    finally:
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)
        redis.stop()
    return out
