"""ASGI lifespan for the chat app: the reply engine starts with the server and stops with it.

Django's ASGIHandler serves only HTTP, so `with_chat` wraps it and answers `lifespan` itself;
every other scope goes to Django's application as it is. In a project's asgi.py:
`application = with_chat(get_asgi_application())`.
"""

import asyncio
import gc
import logging
import signal
import threading
from typing import Any

from chat.providers import registry
from chat.replies.generation import engine
from chat.threads import RequestThreads, request_context

log = logging.getLogger("chat.asgi")


def interrupt_replies_at_shutdown_signals(loop: asyncio.AbstractEventLoop) -> bool:
    """Save replies in flight as `interrupted` as soon as SIGINT/SIGTERM arrives, then let the
    server's own handler (uvicorn's, or whatever the host set) go on as before.

    uvicorn's graceful shutdown waits for every open response before it sends the lifespan's
    `shutdown`, and tells a streaming response nothing meanwhile (uvicorn issue #451, "How do
    I cancel a streaming response on shutdown?", https://github.com/Kludex/uvicorn/issues/451;
    uvicorn PR #2829 would send `http.disconnect` instead, which cuts the stream without its
    `done`). A reply's stream stays open until the reply ends, so without this a server with
    an open stream waits for every reply to finish (or for `timeout_graceful_shutdown`, then
    cancels them unsaved). Interrupting them here ends each stream with `done` (status
    `interrupted`), and the server stops at once with every reply saved.
    tests/test_servers.py sends SIGINT and SIGTERM to a real uvicorn and runserver with a reply
    streaming, and fails if the reply is not saved `interrupted` or the server does not stop.

    The previous handler is chained, never replaced: it runs after the interruption is
    scheduled. Signal handlers belong to the main thread; elsewhere (a server run in a thread,
    as the tests do) this does nothing and returns False.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(engine.interrupt_all()))
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt

        signal.signal(sig, handler)
    return True


def tune_garbage_collector(thresholds: tuple[int, ...] = (5000, 20, 100)) -> None:
    """An opt-in helper for a server with many open streams; the app never calls it itself.

    It freezes what was loaded so far (Django, the app, their modules) out of the collector's
    reach and collects less often. With Python's defaults (700, 10, 10) a server with 700 open
    streams spent a tenth of its CPU in the collector and stalled its event loop up to 0.2 s at
    each full collection, which walked every stream's objects and all of Django's; with
    (5000, 20, 100), 0.3 s in all instead of 2.0 s over the same run, and pauses under 0.06 s.

    Call it once the application is loaded, in the project's asgi.py:

        application = with_chat(get_asgi_application())
        tune_garbage_collector(thresholds=(5000, 20, 100))
    """
    if not 1 <= len(thresholds) <= 3:
        raise ValueError(f"gc.set_threshold takes one to three numbers, not {len(thresholds)}")
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


async def startup() -> None:
    await engine.start()
    try:  # in a thread: listing a local server's models may wait for CHAT_DISCOVERY_TIMEOUT
        await asyncio.to_thread(registry.warm_up)
    except Exception:  # a broken provider must not keep the server from starting
        log.exception("Could not prepare the models offered")


class ChatLifespan:
    """Answers `lifespan` (the engine's start and stop); passes everything else to `app`, an
    HTTP request's sync work on a thread borrowed from a pool (chat/threads.py)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.threads = RequestThreads()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            async with request_context(self.threads):
                return await self.app(scope, receive, send)
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.threads.reopen()
                await startup()
                interrupt_replies_at_shutdown_signals(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await engine.stop()
                self.threads.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def with_chat(application: Any) -> ChatLifespan:
    """A project's ASGI application with the chat app's lifespan (see README: Add to your project)."""
    return ChatLifespan(application)
