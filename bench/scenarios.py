"""The measurements, each run against one started server (the app or the baseline) by the same
client code. Every function returns plain numbers for the report."""

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.load import Client, Stream, clock, cpu_seconds
from bench.servers import Server
from chat.providers.demo import demo_tokens

QUESTION = "How fast can a Django app stream tokens over SSE?"
PACED_RATE = 20.0  # tokens per second per stream, scenarios 2 and 4
LATE_MS = 50.0  # a stream is held while its tokens' p99 lateness is under this


@dataclass(frozen=True)
class Sizes:
    flat_streams: int = 50
    flat_tokens: int = 2000
    # Up to where the baseline falls behind on a fast host: a side that holds the last level
    # has no figure of its own, only a floor (bench/report.py).
    paced_levels: tuple[int, ...] = (
        100,
        200,
        400,
        700,
        1000,
        1200,
        1500,
        1750,
        2000,
        2500,
        3000,
        3500,
        4000,
        4500,  # a host where the app holds 4,000 and the baseline not 5,000 (2026-12) read 1.00x
        5000,
    )
    paced_window: float = 8.0  # seconds measured once every stream has its first token
    paced_ramp: float = 30.0  # seconds allowed to open the streams, else fallen behind
    idle_streams: int = 2000  # 3. memory per idle stream: the growth over this many ...
    idle_first: int = 1000  # ... opened once this many are open (the server's one-time growth)
    probe_background: int = 100
    probes: int = 150
    followed_streams: int = 500  # 5. replies followed from another process (Redis)
    burst_replies: int = 400  # 7. replies in a burst: this many ...
    burst_tokens: int = 200  # ... of this many tokens at PACED_RATE ...
    burst_over: float = 8.0  # ... opened evenly over this many seconds
    burst_rounds: int = 2  # runs of each side, taken in turns: the lower CPU is kept (bench/run.py)
    limit_sends: int = 20_000  # sends through the limit check (bench/limits.py), per backend


FULL = Sizes()
QUICK = Sizes(
    flat_streams=20,
    flat_tokens=1000,
    paced_levels=(50, 100),
    paced_window=2.0,
    paced_ramp=8.0,
    idle_streams=200,
    idle_first=100,
    probe_background=50,
    probes=20,
    followed_streams=50,
    limit_sends=2_000,
    burst_replies=60,
    burst_tokens=40,
    burst_over=2.0,
    burst_rounds=1,
)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def token_index(tokens: list[str]) -> dict[int, int]:
    """Offset (characters of the reply so far) -> index of the last token it includes."""
    index, length = {}, 0
    for i, token in enumerate(tokens):
        length += len(token)
        index[length] = i
    return index


def paced_env(seconds: float) -> dict[str, str]:
    return {"CHAT_DEMO_RATE": str(PACED_RATE), "CHAT_DEMO_TOKENS": str(int(PACED_RATE * seconds))}


def paced_levels_env(sizes: Sizes) -> dict[str, str]:
    """2.: replies long enough to outlast the ramp and the window."""
    return paced_env(sizes.paced_ramp + sizes.paced_window + 5)


def first_env(sizes: Sizes) -> dict[str, str]:
    """4.: background replies that outlast every probe."""
    return paced_env(60 + sizes.probes * 0.2)


async def _settle(futures: list[asyncio.Future], timeout: float) -> bool:
    if not futures:
        return True
    _, pending = await asyncio.wait(futures, timeout=timeout)
    return not pending


def _close(streams: list[Stream]) -> None:
    for stream in streams:
        stream.close()


async def _warm_up(client: Client, count: int) -> None:
    """A few replies to their end before measuring: imports, caches, the first connections."""
    warm = await client.open_many(QUESTION, count)
    await _settle([s.finished for s in warm], 60)
    _close(warm)


# --- 1. server CPU per token, flat out ------------------------------------------------------


def flat_env(sizes: Sizes) -> dict[str, str]:
    return {"CHAT_DEMO_RATE": "0", "CHAT_DEMO_TOKENS": str(sizes.flat_tokens)}


async def flat_out(server: Server, sizes: Sizes) -> dict:
    client = Client(server.port)
    await client.setup()
    await _warm_up(client, 2)
    tokens = demo_tokens(QUESTION, sizes.flat_tokens)
    total_chars = sum(map(len, tokens))
    cpu0, client0, t0 = server.cpu(), cpu_seconds(), clock()
    streams = await client.open_many(QUESTION, sizes.flat_streams, parallel=sizes.flat_streams)
    finished = await _settle([s.finished for s in streams], 300)
    wall, client_cpu, cpu = clock() - t0, cpu_seconds() - client0, server.cpu() - cpu0
    _close(streams)
    complete = sum(s.end == "done" and s.offsets[-1:] == [total_chars] for s in streams)
    delivered = complete * len(tokens)
    events = sum(len(s.offsets) for s in streams)
    return {
        "streams": sizes.flat_streams,
        "tokens_per_stream": len(tokens),
        "complete": complete,
        "all_finished": finished,
        "wall_s": wall,
        "server_cpu_s": cpu,
        "cpu_us_per_token": cpu / max(delivered, 1) * 1e6,
        "events_per_token": events / max(delivered, 1),
        "tokens_per_s": delivered / wall,
        "server_busy": cpu / wall,
        "client_cpu_s": client_cpu,
        "client_cpu_us_per_token": client_cpu / max(delivered, 1) * 1e6,
        "client_busy": client_cpu / wall,
        "errors": sum(s.errors for s in streams),
    }


# --- 2. streams held at 20 tokens/s ---------------------------------------------------------


def lateness(stream: Stream, index: dict[int, int], since: float, until: float) -> list[float]:
    """Seconds each token arrived after it was due, relative to the stream's first token;
    only for events that arrived within [since, until]."""
    if not stream.times:
        return []
    first, previous, out = stream.times[0], -1, []
    for offset, at in zip(stream.offsets, stream.times, strict=True):
        k = index[offset]
        if since <= at <= until:
            out.extend(at - first - j / PACED_RATE for j in range(previous + 1, k + 1))
        previous = k
    return out


async def paced(server: Server, sizes: Sizes, n: int) -> dict:
    client = Client(server.port)
    await client.setup()
    tokens = demo_tokens(QUESTION, int(server.env["CHAT_DEMO_TOKENS"]))
    index = token_index(tokens)
    client0, t0 = cpu_seconds(), clock()
    try:
        async with asyncio.timeout(sizes.paced_ramp):
            streams = await client.open_many(QUESTION, n)
            await asyncio.wait([s.texted for s in streams])
    except TimeoutError:
        _close(client.opened)
        return {"streams": n, "open_s": None, "held": False, "all_streaming": False, "errors": 0}
    opened = clock() - t0
    all_texting = all(s.first_text is not None for s in streams)
    since, cpu0 = clock(), server.cpu()
    await asyncio.sleep(sizes.paced_window)
    until, cpu = clock(), server.cpu() - cpu0
    client_cpu = cpu_seconds() - client0
    streaming = all(s.end is None for s in streams)  # none ended or dropped early
    _close(streams)
    late = [x for s in streams for x in lateness(s, index, since, until)]
    ok = all_texting and streaming and bool(late)
    p99 = percentile(late, 99) * 1000 if late else math.inf
    return {
        "streams": n,
        "open_s": opened,
        "tokens_measured": len(late),
        "p50_ms": percentile(late, 50) * 1000 if late else math.inf,
        "p99_ms": p99,
        "max_ms": max(late) * 1000 if late else math.inf,
        "server_busy": cpu / (until - since),
        "cpu_us_per_token": cpu / max(len(late), 1) * 1e6,
        "client_busy": client_cpu / (until - t0),
        "all_streaming": ok,
        "held": ok and p99 < LATE_MS,
        "errors": sum(s.errors for s in streams),
    }


# --- 3. memory per idle stream ----------------------------------------------------------------

IDLE_ENV = {"CHAT_DEMO_RATE": "0.001", "CHAT_DEMO_TOKENS": "20", "CHAT_HEARTBEAT_INTERVAL": "1"}


async def idle(server: Server, sizes: Sizes) -> dict:
    """What one more idle open stream costs: the server's RSS growth over `idle_streams` streams
    opened once `idle_first` are open, per stream.

    The first streams also pay for what a server makes once and keeps, whatever the number of
    streams: the request threads that 32 opens at a time add to the pool, their SQLite
    connections with their page and statement caches, the allocator's arenas for those threads
    (issue 14: SQLite's memory grew 3.8 MB over the first 1,000 streams, 0.35 MB over the next
    1,000, nothing over the 1,000 after; over 4,000 streams the first 2,000 read 22.1 KB a
    stream and the next 2,000 18.5). Their growth is reported too (`first_kib_per_stream`).
    """
    client = Client(server.port)
    await client.setup()
    warm = await client.open_many(QUESTION, 20)
    await asyncio.sleep(1.5)
    rss0 = server.rss_kib()
    first = await client.open_many(QUESTION, sizes.idle_first)
    await _wait_pings(first, timeout=30)
    await asyncio.sleep(1.0)
    rss_first = server.rss_kib()
    streams = await client.open_many(QUESTION, sizes.idle_streams)
    pinged = await _wait_pings(streams, timeout=30)
    await asyncio.sleep(1.0)
    rss1 = server.rss_kib()
    everyone = warm + first + streams  # all open and idle while the CPU is measured
    pings0, cpu0, t0 = sum(s.pings for s in everyone), server.cpu(), clock()
    await asyncio.sleep(3.0)
    seconds, cpu = clock() - t0, server.cpu() - cpu0
    pings = sum(s.pings for s in everyone) - pings0
    _close(everyone)
    return {
        "streams": sizes.idle_streams,
        "first_streams": sizes.idle_first,
        "rss_start_kib": rss0,
        "rss_before_kib": rss_first,
        "rss_after_kib": rss1,
        "kib_per_stream": (rss1 - rss_first) / sizes.idle_streams,
        "first_kib_per_stream": (rss_first - rss0) / sizes.idle_first,
        "all_pinged": pinged,
        "pings_per_stream_s": pings / len(everyone) / seconds,
        "idle_cpu_us_per_stream_s": cpu / len(everyone) / seconds * 1e6,
        "texts": sum(len(s.offsets) for s in everyone),
        "errors": sum(s.errors for s in everyone),
    }


async def _wait_pings(streams: list[Stream], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.pings for s in streams):
            return True
        await asyncio.sleep(0.1)
    return False


# --- 4. first status and first text under load -------------------------------------------------


async def first_events(server: Server, sizes: Sizes) -> dict:
    client = Client(server.port)
    await client.setup()
    background = await client.open_many(QUESTION, sizes.probe_background)
    await _settle([s.texted for s in background], 30)
    status_ms: list[float] = []
    text_ms: list[float] = []
    stops: list[int] = []
    for _ in range(sizes.probes):
        probe = await client.open_stream(QUESTION)
        await _settle([probe.texted], 10)
        if probe.first_status is not None:
            status_ms.append((probe.first_status - probe.sent) * 1000)
        if probe.first_text is not None:
            text_ms.append((probe.first_text - probe.sent) * 1000)
        if probe.message_id:  # ends the probe's reply, so that probes do not pile up
            stops.append(await client.stop(probe.message_id))
        probe.close()
        await asyncio.sleep(0.01)
    background_ok = all(s.end is None for s in background)
    _close(background)
    return {
        "background_streams": sizes.probe_background,
        "probes": sizes.probes,
        "status_p50_ms": percentile(status_ms, 50),
        "status_p99_ms": percentile(status_ms, 99),
        "text_p50_ms": percentile(text_ms, 50),
        "text_p99_ms": percentile(text_ms, 99),
        "first_token_due_ms": 1000 / PACED_RATE,
        "answered": len(text_ms),
        "stops_ok": sum(status == 200 for status in stops),
        "background_streaming": background_ok,
        "errors": sum(s.errors for s in background),
    }


# --- 7. replies in a burst (issue 14) ------------------------------------------------------------


def burst_env(sizes: Sizes) -> dict[str, str]:
    return {"CHAT_DEMO_RATE": str(PACED_RATE), "CHAT_DEMO_TOKENS": str(sizes.burst_tokens)}


async def burst(server: Server, sizes: Sizes) -> dict:
    """People send at the same moments: `burst_replies` replies asked for at even intervals
    over `burst_over` seconds, each POSTed as its own request (open loop: a slow answer does
    not delay the next request). Server CPU from the first request until every reply ended,
    the opening included, per token delivered; the first text's delay from its request."""
    client = Client(server.port)
    await client.setup()
    await _warm_up(client, 4)
    tokens = demo_tokens(QUESTION, sizes.burst_tokens)
    total_chars = sum(map(len, tokens))
    n, gap = sizes.burst_replies, sizes.burst_over / sizes.burst_replies
    cpu0, client0, t0 = server.cpu(), cpu_seconds(), clock()

    async def one(i: int) -> Stream:
        await asyncio.sleep(max(0.0, t0 + i * gap - clock()))
        return await client.open_stream(QUESTION)

    streams = await asyncio.gather(*(one(i) for i in range(n)))
    finished = await _settle(
        [s.finished for s in streams], sizes.burst_over + 3 * len(tokens) / PACED_RATE + 30
    )
    wall, cpu, client_cpu = clock() - t0, server.cpu() - cpu0, cpu_seconds() - client0
    _close(streams)
    complete = sum(s.end == "done" and s.offsets[-1:] == [total_chars] for s in streams)
    delivered = complete * len(tokens)
    first = [(s.first_text - s.sent) * 1000 for s in streams if s.first_text is not None]
    return {
        "replies": n,
        "tokens_per_reply": len(tokens),
        "over_s": sizes.burst_over,
        "complete": complete,
        "all_finished": finished,
        "wall_s": wall,
        "server_cpu_s": cpu,
        "cpu_us_per_token": cpu / max(delivered, 1) * 1e6,
        "first_text_p50_ms": percentile(first, 50) if first else math.inf,
        "first_text_p99_ms": percentile(first, 99) if first else math.inf,
        "first_token_due_ms": 1000 / PACED_RATE,
        "client_busy": client_cpu / wall,
        "errors": sum(s.errors for s in streams),
    }
