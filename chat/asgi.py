"""ASGI lifespan for the chat app: the reply engine starts with the server and stops with it.

Django's ASGIHandler serves only HTTP, so this wraps it and answers `lifespan` itself; it also
runs each HTTP request's sync work on a pooled thread it gives back when a stream starts
(chat/request_thread.py). In a project's asgi.py: `application = with_chat(get_asgi_application())`.
"""

import asyncio
import contextvars
import gc
import logging
import signal
import threading
from typing import Any

from django.core.handlers.asgi import ASGIHandler

from chat import conf, handling
from chat.providers import registry
from chat.replies.generation import engine
from chat.request_thread import give_back_request_started, request_context, take_over_request_started
from chat.sse import OUTLET, Outlet

log = logging.getLogger("chat.asgi")


def _chain_shutdown_signals(loop: asyncio.AbstractEventLoop) -> None:
    """Interrupt replies as soon as SIGINT/SIGTERM arrives, then let the server go on.

    uvicorn waits for open responses before its lifespan shutdown, and a reply's stream
    stays open until the reply ends: saving replies as `interrupted` at the signal is what
    lets those streams end (with `done`, status `interrupted`) and the server stop at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(engine.interrupt_all()))
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt

        signal.signal(sig, handler)


def tune_garbage_collector() -> None:
    """Freeze what start-up loaded (Django, the app, their modules) out of the collector's
    reach and collect less often (CHAT_GC_THRESHOLDS). With Python's defaults a server with
    700 open streams spent a tenth of its CPU in the collector and stalled its event loop up
    to 0.2 s at each full collection, which walked every stream's objects and all of Django's;
    with these, 0.3 s in all instead of 2.0 s over the same run, and pauses under 0.06 s."""
    thresholds = conf.get_ints("CHAT_GC_THRESHOLDS")  # checked at start (chat.E002)
    if not thresholds:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds[:3])


async def startup() -> None:
    await engine.start()
    try:  # in a thread: listing a local server's models may wait for CHAT_DISCOVERY_TIMEOUT
        await asyncio.to_thread(registry.warm_up)
    except Exception:  # a broken provider must not keep the server from starting
        log.exception("Could not prepare the models offered")
    tune_garbage_collector()


class ChatLifespan:
    def __init__(self, app: Any) -> None:
        self.app = app
        # A stream may write its parts to `send` itself, and go on without Django's handler
        # (chat/sse.py, Outlet), only where nothing stands between the two: no ASGI middleware.
        self.direct = isinstance(app, ASGIHandler)
        # Django's handling of a request, its end on the loop where it needs no thread
        # (chat/handling.py), where Django's own method is the code copied there.
        self.finishes = self.direct and handling.serves(app)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":  # its sync work on a pooled thread (chat/request_thread.py)
            if not self.direct:
                async with request_context():
                    return await self.app(scope, receive, send)
            outlet = scope[OUTLET] = Outlet(send)
            # In a task of its own, with a copy of this one's context: what the request sets
            # there (asgiref's locals, the request's executor) goes when it ends, rather than
            # stay with an open stream for its life (issue 14: memory per idle stream).
            django = self._django(scope, receive, outlet)
            await asyncio.get_running_loop().create_task(django, context=contextvars.copy_context())
            return await outlet.go_on(receive)  # a stream that went on without Django's handler
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await startup()
                take_over_request_started()
                if self.finishes:
                    handling.take_over()
                _chain_shutdown_signals(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await engine.stop()
                give_back_request_started()
                if self.finishes:
                    handling.give_back()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _django(self, scope: dict, receive: Any, outlet: Outlet) -> None:
        async with request_context():
            if self.finishes:
                await handling.handle(self.app, scope, receive, outlet.to_django)
            else:
                await self.app(scope, receive, outlet.to_django)


def with_chat(application: Any) -> ChatLifespan:
    """A project's ASGI application with the chat app's lifespan (see README: Add to your project)."""
    return ChatLifespan(application)
