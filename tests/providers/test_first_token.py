"""How much passing through the app adds to the upstream's pace, measured (not a timing assertion).

The fake vendor notes when it has written a token to its socket; the client notes when the
token arrives through the app's SSE stream. Both clocks are this process's monotonic clock.
Run with `-s` to see the figures.
"""

import asyncio
import statistics
import time

from chat.providers import Prompt, Turn
from chat.providers.openai import OpenAIProvider
from tests.sse_client import events

ROUNDS = 15


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(len(ms) * 0.9) - 1]
    return (
        f"{name}: median {statistics.median(ms):.2f} ms, p90 {p90:.2f} ms, max {ms[-1]:.2f} ms (n={len(ms)})"
    )


def test_first_token_reaches_the_client_within_milliseconds_of_the_upstream_sending_it(tab, openai_vendor):
    delays = []
    for i in range(ROUNDS):
        openai_vendor.play({"gate": f"go{i}"}, {"say": f"first{i}"}, {"say": " rest"})
        reply = tab.send("Hi", model="openai:gpt-test")["assistant_message"]
        with tab.http.stream("GET", f"/api/messages/{reply['id']}/stream") as response:
            for event in events(response.iter_lines()):
                if event.event == "status":  # connected, and the model is "thinking": let it speak
                    openai_vendor.gate(f"go{i}").set()
                elif event.event == "message":
                    delays.append(event.at - dict(openai_vendor.sent)[f"first{i}"])
                    break
        tab.wait_finished(reply["id"], reply["conversation_id"])
    print("\n" + summary("upstream -> SDK -> app -> SSE client, first token", delays))
    assert statistics.median(delays) < 0.1  # a sanity bound only: the figures are the point


def test_first_token_reaches_the_provider_within_a_millisecond_of_the_upstream_sending_it(openai_vendor):
    async def measure() -> list[float]:
        delays = []
        provider = OpenAIProvider("gpt-test")
        for i in range(ROUNDS):
            openai_vendor.play({"say": f"first{i}"})
            async for item in provider.stream(Prompt("gpt-test", "", (Turn("user", "Hi"),))):
                if item == f"first{i}":
                    delays.append(time.monotonic() - dict(openai_vendor.sent)[item])
        return delays

    delays = asyncio.run(asyncio.wait_for(measure(), 20))
    print("\n" + summary("upstream -> SDK -> provider, first token", delays))
    assert statistics.median(delays) < 0.1
