"""`python -m bench.hops [N]`: thread hops and threads made per reply, counted, not timed.

Serves the project with uvicorn on this process's loop, opens N replies one after another as
the page does (create-and-send asking for SSE), reads each to its end, and counts every call
handed to a thread pool while they ran: by pool (the request threads, the replies' database
threads) and by the function run there. Each hop is a round trip through another thread and
the GIL, which on a busy event loop can wait for Python's switch interval (5 ms); issue 14's
profile of opening replies in a burst was mostly these.
"""

import asyncio
import sys
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from bench import scenarios
from bench.load import Client
from bench.servers import measure_in_process


def _name(fn) -> str:
    """The function a submitted call runs (asgiref's thread_handler carries it in its args)."""
    if isinstance(fn, partial) and len(fn.args) >= 5 and getattr(fn.func, "__name__", "") == "thread_handler":
        fn = fn.args[4]
    if isinstance(fn, partial) and getattr(fn.func, "__qualname__", "") == "_call" and fn.args:
        return f"_call: {_name(fn.args[0])}"  # chat/db.py: the function run on the writer thread
    while isinstance(fn, partial):
        fn = fn.func
    return getattr(fn, "__qualname__", type(fn).__name__)


async def count(port: int, replies: int) -> tuple[Counter, int]:
    client = Client(port)
    await client.warm_up(scenarios.QUESTION)
    seen: Counter = Counter()
    submitted: list[tuple[str, str, Future]] = []
    original, original_callback = ThreadPoolExecutor.submit, Future.add_done_callback

    def submit(self, fn, /, *args, **kwargs):
        pool = self._thread_name_prefix
        if pool.startswith("ThreadPoolExecutor-"):  # asgiref's: a new executor per request (Django's)
            pool = "a request's own new thread"
        future = original(self, fn, *args, **kwargs)
        submitted.append((pool, _name(fn), future))
        return future

    def add_done_callback(self, fn):  # how the event loop waits for a call (asyncio.wrap_future)
        self.waited_for = True
        return original_callback(self, fn)

    made: list[str] = []
    start_new = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        made.append(thread.name)
        start_new(thread)

    ThreadPoolExecutor.submit, threading.Thread.start = submit, start  # type: ignore[method-assign]
    Future.add_done_callback = add_done_callback  # type: ignore[method-assign]
    try:
        for _ in range(replies):
            stream = await client.open_stream(scenarios.QUESTION)
            await stream.finished
            stream.close()
        await asyncio.sleep(1.5)  # past the last checkpoints
    finally:
        ThreadPoolExecutor.submit, threading.Thread.start = original, start_new  # type: ignore[method-assign]
        Future.add_done_callback = original_callback  # type: ignore[method-assign]
    for pool, name, future in submitted:
        # A call queued ahead of another on the same thread, and not waited for, is no hop.
        seen[pool, name if getattr(future, "waited_for", False) else f"{name} (queued, not waited for)"] += 1
    return seen, made


def main(argv: list[str] | None = None) -> int:
    replies = int((argv or sys.argv[1:] or ["20"])[0])
    env = scenarios.paced_env(2)

    seen, made = measure_in_process(env, count, replies)
    print(f"{replies} replies of {env['CHAT_DEMO_TOKENS']} tokens, one after another; per reply:")
    waited = sum(n for (_, fn), n in seen.items() if not fn.endswith("(queued, not waited for)"))
    print(f"{sum(seen.values()) / replies:5.1f}  calls handed to a thread, of which:")
    print(f"{waited / replies:5.1f}  waited for by the event loop (hops)")
    for (pool, fn), n in sorted(seen.items(), key=lambda kv: -kv[1]):
        print(f"{n / replies:5.1f}    {pool}: {fn}")
    print(f"{len(made) / replies:5.1f}  threads started" + (f" ({', '.join(made)})" if made else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
