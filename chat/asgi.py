"""ASGI lifespan for the chat app: the reply engine starts with the server and stops with it.

Django's ASGIHandler serves only HTTP, so `with_chat` wraps it and answers `lifespan` itself;
the API's requests have their body's size checked before Django reads it (`BodyLimit`); the
app's own static files are served when nothing else serves them (chat/static_serving.py); an
HTTP request's sync work runs on a thread borrowed from a pool (chat/threads.py); every other
scope goes to Django's application as it is. In a project's asgi.py:
`application = with_chat(get_asgi_application())`.
"""

import asyncio
import gc
import logging
import signal
import threading
from typing import Any

from django.urls import NoReverseMatch, get_script_prefix, reverse

from chat import conf
from chat.providers import registry
from chat.replies import generation
from chat.runtime import runtime
from chat.static_serving import AppStaticFiles
from chat.threads import request_context, request_threads
from chat.views import UPLOAD_PATH, body_limit, body_too_large, error_response, upload_body_limit

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
            loop.call_soon_threadsafe(
                lambda: runtime.spawn(generation.interrupt_all(), name="chat-interrupt-all")
            )
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
    await runtime.start()
    try:  # in a thread: listing a local server's models may wait for CHAT_DISCOVERY_TIMEOUT
        await asyncio.to_thread(registry.warm_up)
    except Exception:  # a broken provider must not keep the server from starting
        log.exception("Could not prepare the models offered")


class ChatLifespan:
    """Answers `lifespan` (the engine's start and stop); passes everything else to `app`, an
    HTTP request's sync work on a thread borrowed from a pool (chat/threads.py)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            async with request_context(request_threads()):
                return await self.app(scope, receive, send)
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await startup()
                interrupt_replies_at_shutdown_signals(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


class BodyLimit:
    """Refuses an API request whose body is over the limit (`chat.views.body_limit`) before
    Django reads the body; everything else goes to `app` untouched.

    Django's ASGIHandler reads a request's whole body, spooled to a temporary file past
    FILE_UPLOAD_MAX_MEMORY_SIZE, before any middleware or view runs (reading it on demand
    instead is Django ticket #33699, https://code.djangoproject.com/ticket/33699, whose pull
    request #15704 was closed unmerged): the view's own check came after a 500 MiB body had
    been written to disk. Here, with the ASGI spec's messages alone:
    - a `Content-Length` over the limit is answered 413 at once; Django is not called and the
      body is not read (a client that sent `Expect: 100-continue` is never asked for it);
    - any other body (chunked, or from a server that passes on more than it declared) is
      counted as its `http.request` messages arrive (`BodyCounter`).
    The 413 is the view's own JSON error, with `Connection: close`: the server then closes the
    connection rather than read, and throw away, the rest of the upload.

    Only paths under the API's prefix (`reverse("chat:api")`, wherever the host mounted the
    app) are limited. CHAT_MAX_BODY_BYTES is the chat API's limit, whose bodies are small JSON
    objects; the host's other paths (the admin, its forms, its file uploads) keep Django's
    behaviour and the host's own limits (the proxy's). Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    is no limit to apply here to every path: it leaves out the files of a multipart upload,
    which only Django's parser can tell apart, so refusing on it would refuse a host's uploads.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.urlconf: str | None = None  # the ROOT_URLCONF the API's prefix was found in
        self.api_prefix: str | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.limits(scope):
            return await self.app(scope, receive, send)
        limit = upload_body_limit() if self.upload(scope) else body_limit()
        if declared_length(scope) > limit:
            return await answer_too_large(send, limit)
        await self.app(scope, BodyCounter(receive, send, limit), send)

    def limits(self, scope: dict) -> bool:
        """Whether the request is the API's: its path, as Django will resolve it (without the
        script name), starts with the API's prefix."""
        urlconf = conf.get("ROOT_URLCONF")  # conf: kept, and read again when a test changes it
        if urlconf != self.urlconf:
            self.urlconf, self.api_prefix = urlconf, api_prefix()
        if self.api_prefix is None:
            return False
        return self.api_path(scope).startswith(self.api_prefix)

    def api_path(self, scope: dict) -> str:
        script_name = conf.get("FORCE_SCRIPT_NAME") or scope.get("root_path", "")  # as Django takes it
        path = scope["path"]
        return path.removeprefix(script_name) if script_name else path

    def upload(self, scope: dict) -> bool:
        """The upload endpoint (contract v3, "Files and images"): its body is a file, held to
        CHAT_MAX_ATTACHMENT_BYTES (chat.views.upload_body_limit) instead of the JSON limit."""
        return self.api_path(scope) == f"{self.api_prefix}{UPLOAD_PATH}"


def api_prefix() -> str | None:
    """The API's URL prefix (`/api/`, or `/assistant/api/` when mounted there) without the script
    name; None when the URLconf does not include the app."""
    try:
        url = reverse("chat:api")
    except NoReverseMatch:
        return None
    return "/" + url.removeprefix(get_script_prefix())


def declared_length(scope: dict) -> int:
    """The request's `Content-Length`; 0 when it has none (or one the server let through
    unparsed): such a body is counted as it arrives."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


class BodyCounter:
    """The `receive` Django reads an API request's body through: past the limit, the 413 is
    sent and Django is told the client went away.

    Django awaits these messages in its body-reading loop, before it builds the request, so no
    response has started when the limit is crossed; `http.disconnect` makes that loop drop
    what it read and the handler return without answering. The message that crossed the limit
    is not passed on, so Django never holds more than the limit.
    """

    def __init__(self, receive: Any, send: Any, limit: int) -> None:
        self.receive = receive
        self.send = send
        self.limit = limit
        self.received = 0
        self.refused = False

    async def __call__(self) -> dict:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refused = True
                await answer_too_large(self.send, self.limit)
                return {"type": "http.disconnect"}
        return message


async def answer_too_large(send: Any, limit: int) -> None:
    """The view's 413 (`chat.views.error_response`), sent as the ASGI spec's two messages."""
    response = error_response(body_too_large(limit))
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    headers += [(b"content-length", b"%d" % len(response.content)), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


def with_chat(application: Any) -> ChatLifespan:
    """A project's ASGI application with the chat app's lifespan, the API's body limit and the
    app's own static files when nothing else serves them (chat/static_serving.py; see README:
    Add to your project)."""
    return ChatLifespan(AppStaticFiles(BodyLimit(application)))
