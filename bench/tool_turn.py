"""`python -m bench.tool_turn [--replies N]`: from a tool's result to the model's next token.

Issue 12's closing figure. The app runs under uvicorn (as bench/run.py starts it) against a
fake OpenAI-compatible server on loopback (tests/vendor_servers.py) that asks for one call
of `stamp` and, in the next round, answers at once. `stamp` returns the wall-clock time it
returned; this client notes when the first text event of the next round reaches it. The
difference is what the app adds around a tool round: the result recorded and logged, the
next request built and sent, the vendor's first token read, cleaned, logged and streamed.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import Server, base_env, prepare_database
from tests.sse_client import events
from tests.vendor_servers import VendorServer


def stamp() -> dict:
    """The server's clock, now (a tool for the benchmark)."""
    return {"t": time.time()}


def one_reply(client: httpx.Client, vendor: VendorServer) -> float:
    vendor.play({"call": "stamp", "id": "s", "args": ["{}"]}, {"finish": "tool_calls"})
    vendor.play({"say": "Done"}, {"say": " now."})
    returned = None
    client.cookies.clear()  # a new visitor each time: no session, so no CSRF token needed
    with client.stream(
        "POST", "/api/conversations", json={"content": "go"}, headers={"Accept": "text/event-stream"}
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:300]!r}")
        for event in events(response.iter_lines()):
            if event.event == "tool_result":
                returned = event.json["result"]["t"]
            elif event.event == "message":
                return time.time() - returned
            elif event.event in ("done", "error"):
                raise RuntimeError(f"the reply ended without text: {event.data}")
    raise RuntimeError(f"the stream ended early (tool result: {returned})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, VendorServer("openai") as vendor:
        database = Path(tmp) / "db.sqlite3"
        prepare_database(database)
        env = base_env(
            database,
            OPENAI_BASE_URL=f"{vendor.url}/v1",
            CHAT_MODELS="openai:gpt-test",
            CHAT_TOOLS="bench.tool_turn.stamp",
            CHAT_TITLE_BY_MODEL="0",  # the limits are off already (base_env)
        )
        server = Server("app", env).start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                one_reply(client, vendor)  # warm up: imports, the SDK client, the first connection
                delays = sorted(one_reply(client, vendor) * 1000 for _ in range(args.replies))
        finally:
            server.stop()
    result = {
        "replies": len(delays),
        "median_ms": round(statistics.median(delays), 2),
        "p90_ms": round(delays[int(len(delays) * 0.9) - 1], 2),
        "min_ms": round(delays[0], 2),
    }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
