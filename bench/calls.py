"""`python -m bench.calls [N]`: Python calls per streamed token on the server's event loop,
counted (sys.setprofile), not timed.

Serves the project with uvicorn on this process's loop, opens N replies of the demo model at
20 tokens a second, and counts, for two seconds of their streaming, every Python function
call and generator or coroutine resumption on the loop's thread, by function (the bench
client's own are left out). Divided by the tokens the server sent in that time, it is the
work per token that does not depend on the machine's speed: issue 14 compares it before and
after a change, and tests/test_bench.py checks which tasks run per token.
"""

import asyncio
import sys
import threading
from collections import Counter

from bench import scenarios
from bench.load import Client
from bench.servers import measure_in_process

RATE = 20
WINDOW = 2.0


def _where(code) -> str:
    path = code.co_filename.split("site-packages/")[-1]
    for root in ("/chat/", "/bench/", "/project/"):
        if root in path:
            path = root.strip("/") + "/" + path.rsplit(root, 1)[1]
    return f"{path}:{code.co_name}"


async def count(port: int, replies: int) -> tuple[Counter, int]:
    client = Client(port)
    await client.warm_up(scenarios.QUESTION)
    calls: Counter = Counter()
    loop_thread = threading.get_ident()

    def profile(frame, event, arg) -> None:
        if event == "call" and threading.get_ident() == loop_thread:
            calls[frame.f_code] += 1

    streams = await client.open_many(scenarios.QUESTION, replies)
    await asyncio.sleep(1.0)  # every reply past its opening, streaming
    sys.setprofile(profile)
    try:
        await asyncio.sleep(WINDOW)
    finally:
        sys.setprofile(None)
    for stream in streams:
        stream.close()
    named: Counter = Counter()
    for code, n in calls.items():
        if "/bench/" not in code.co_filename:
            named[_where(code)] += n
    return named, round(replies * RATE * WINDOW)


def main(argv: list[str] | None = None) -> int:
    replies = int((argv or sys.argv[1:] or ["10"])[0])
    env = {"CHAT_DEMO_RATE": str(RATE), "CHAT_DEMO_TOKENS": str(int(RATE * (WINDOW + 5)))}
    named, tokens = measure_in_process(env, count, replies)
    print(f"{replies} replies at {RATE} tokens/s for {WINDOW:g} s: about {tokens} tokens")
    print(f"{sum(named.values()) / tokens:6.1f}  Python calls per token on the event loop, of which:")
    for where, n in named.most_common(30):
        print(f"{n / tokens:6.2f}    {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
