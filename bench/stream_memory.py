"""`python -m bench.stream_memory [N]`: what an idle open stream keeps in memory, by origin.

Serves the project with uvicorn on this process's loop (scenario 3's settings: a reply that
waits 1,000 s for its next token, a heartbeat a second), opens N streams with the bench
client, and compares tracemalloc snapshots taken before and after: the Python objects each
open stream keeps, grouped by the package that allocated them (the client's own are left
out). RSS, which `make bench` measures, adds the allocator's pages on top.
"""

import asyncio
import gc
import os
import sys
import tracemalloc
from collections import Counter

from bench import scenarios
from bench.load import Client
from bench.servers import measure_in_process

GROUPS = (  # first match wins: (part of the allocating file's path, group)
    ("/bench/", None),  # the load client: not the server's
    ("/chat/", "chat (the app: reply, event log, stream, view)"),
    ("/uvicorn/", "uvicorn (connection, protocol)"),
    ("/django/", "Django (request, handler tasks, response, session, middleware)"),
    ("/asgiref/", "Django (request, handler tasks, response, session, middleware)"),
    ("/asyncio/", "asyncio (tasks, futures, events)"),
    ("_weakrefset", "asyncio (tasks, futures, events)"),
)


def group_of(filename: str) -> str | None:
    for part, group in GROUPS:
        if part in filename:
            return group
    return "other (standard library)"


async def measure(port: int, count: int) -> tuple[Counter, int]:
    client = Client(port)
    await client.setup()
    warm = await client.open_many(scenarios.QUESTION, 20)
    await asyncio.sleep(1.5)
    gc.collect()
    tracemalloc.start(25)
    before = tracemalloc.take_snapshot()
    streams = await client.open_many(scenarios.QUESTION, count)
    await asyncio.sleep(2.5)  # every stream past its first events and a heartbeat
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    groups: Counter = Counter()
    chat_lines: Counter = Counter()
    for stat in after.compare_to(before, "traceback"):
        nearest_chat = next((f for f in reversed(stat.traceback) if "/chat/" in f.filename), None)
        # The frame nearest the allocation that is not the standard library's own plumbing
        # decides, so that a task made by Django counts as Django's.
        names = [frame.filename for frame in reversed(stat.traceback)]
        chosen = next((g for g in map(group_of, names) if g != "other (standard library)" or g is None), None)
        if chosen is None and any("/bench/" in n for n in names):
            continue
        groups[chosen or "other (standard library)"] += stat.size_diff
        if chosen and chosen.startswith("chat") and nearest_chat is not None:
            chat_lines[f"{nearest_chat.filename.rsplit('/chat/', 1)[1]}:{nearest_chat.lineno}"] += (
                stat.size_diff
            )
    for stream in streams + warm:
        stream.close()
    lines = int(os.environ.get("CHAT_MEMORY_LINES") or 0)
    if lines:  # CHAT_MEMORY_LINES=N: the app's own part, its N largest lines
        for line, size in chat_lines.most_common(lines):
            print(f"{size / count:7.0f} B  chat/{line}")
    return groups, count


def main(argv: list[str] | None = None) -> int:
    count = int((argv or sys.argv[1:] or ["300"])[0])

    groups, n = measure_in_process(scenarios.IDLE_ENV, measure, count)
    print(f"{n} idle open streams; Python objects kept per stream (tracemalloc):")
    for group, size in groups.most_common():
        print(f"{size / n / 1024:6.1f} KiB  {group}")
    print(f"{sum(groups.values()) / n / 1024:6.1f} KiB  in all (the server's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
