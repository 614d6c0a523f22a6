"""chat/asgi.py: the lifespan, and the one departure it keeps (replies interrupted at a
shutdown signal; tests/test_servers.py sends the signals to real servers)."""

import asyncio
import signal
import threading

from chat.asgi import interrupt_replies_at_shutdown_signals


def test_outside_the_main_thread_the_signals_are_left_alone():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    installed = []

    async def install() -> None:
        installed.append(interrupt_replies_at_shutdown_signals(asyncio.get_running_loop()))

    thread = threading.Thread(target=asyncio.run, args=(install(),))
    thread.start()
    thread.join(10)
    assert installed == [False]
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_the_hosts_own_handler_still_runs_after_the_replies_are_interrupted():
    heard: list[int] = []

    def hosts_handler(signum, frame) -> None:
        heard.append(signum)

    before = signal.signal(signal.SIGTERM, hosts_handler)
    interrupted_sigint = signal.getsignal(signal.SIGINT)

    async def run() -> None:
        assert interrupt_replies_at_shutdown_signals(asyncio.get_running_loop())
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.01)  # the interruption, scheduled on the loop, runs (no reply)

    try:
        asyncio.run(asyncio.wait_for(run(), 10))
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, interrupted_sigint)
    assert heard == [signal.SIGTERM]
