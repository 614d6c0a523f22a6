"""Django's ASGI request handling, with a request's end on the event loop where it needs no thread.

Django ends each ASGI request with `await sync_to_async(response.close)()`: a round trip to
the request's thread to send `request_finished`, whose receivers (Django's own: close the
thread's stale database connections, close caches, reset the URLconf) see to that thread. A
request that borrowed no thread, as a reply opened on SQLite now (its session read on the loop,
its writes on the replies' writer thread), has nothing there to see to, yet the round trip
borrowed a worker for it: 400K instructions of a reply's 7.0M opening, and of a GET's 2.9M
(issue 14, counted with callgrind).

`handle` is Django 5.2's `ASGIHandler.handle` (django/core/handlers/asgi.py) with only its last
step changed (`_finish`). It is used only where Django's method is that very code, checked by
its source's hash: a Django that changed it is served by its own method, as before, and
tests/test_handling.py fails, to say that this copy needs looking at.

`take_over()` (the chat lifespan, at start-up) disconnects Django's three `request_finished`
receivers and `_finish` runs them itself: on the loop when nothing needs a thread (no other
receiver, no thread borrowed, nothing of the response's to close, no cache to close), else on
the request's thread, as Django does.
"""

import asyncio
import hashlib
import inspect
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.cache import caches, close_caches
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections
from django.http import HttpRequest
from django.urls import set_script_prefix

from chat import request_thread

# sha256 of `inspect.getsource(ASGIHandler.handle)` in Django 5.2.19, the code `handle` copies.
DJANGO_HANDLE = "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323"
# Django connects these; the chat lifespan takes them over (`take_over`) where `handle` serves.
REQUEST_FINISHED = request_thread.DjangoReceivers(
    signals.request_finished, (close_old_connections, close_caches, reset_urlconf)
)
take_over, give_back = REQUEST_FINISHED.take_over, REQUEST_FINISHED.give_back


def django_handle_is_known() -> bool:
    source = inspect.getsource(ASGIHandler.handle)
    return hashlib.sha256(source.encode()).hexdigest() == DJANGO_HANDLE


def serves(app: Any) -> bool:
    """`handle` may serve `app`'s requests: Django's ASGI handler, with its own `__call__` and
    `handle` (neither overridden), the latter the code copied here."""
    if not isinstance(app, ASGIHandler):
        return False
    kind = type(app)
    if kind.__call__ is not ASGIHandler.__call__ or kind.handle is not ASGIHandler.handle:
        return False
    return django_handle_is_known()


def _receivers_here() -> None:
    if REQUEST_FINISHED.taken:
        REQUEST_FINISHED.run()


def _close_here(response: Any) -> None:
    """The response closed (`request_finished` sent), then Django's receivers, on whichever
    thread `_finish` chose."""
    response.close()
    _receivers_here()


def _nothing_needs_a_thread(response: Any) -> bool:
    return (
        REQUEST_FINISHED.taken
        and not signals.request_finished.has_listeners()  # a project's receiver may do I/O
        and not request_thread.holds_thread()
        and _closes_only_requests(response)
        and all(type(cache).close is BaseCache.close for cache in caches.all(initialized_only=True))
    )


# A request's close: its uploaded files and (ASGI) its body's file, closed. Nothing else that a
# response may have to close (a file it sends, a sync generator's `finally`) is known here.
_REQUEST_CLOSE = (HttpRequest.close, ASGIRequest.close)


def _closes_only_requests(response: Any) -> bool:
    closers = getattr(response, "_resource_closers", None)  # Django's HttpResponseBase's own list
    return closers is not None and all(getattr(c, "__func__", None) in _REQUEST_CLOSE for c in closers)


async def _finish(response: Any) -> None:
    if _nothing_needs_a_thread(response):
        _close_here(response)  # on the loop: this thread has no connection of Django's open
    else:
        await sync_to_async(_close_here)(response)


async def handle(self: ASGIHandler, scope: dict, receive: Any, send: Any) -> None:
    """Django 5.2's ASGIHandler.handle, line for line, but for `_finish` at its end."""
    # Receive the HTTP request body as a stream object.
    try:
        body_file = await self.read_body(receive)
    except RequestAborted:
        return
    # Request is complete and can be served.
    set_script_prefix(get_script_prefix(scope))
    await signals.request_started.asend(sender=self.__class__, scope=scope)
    # Get the request and check for basic issues.
    request, error_response = self.create_request(scope, body_file)
    if request is None:
        body_file.close()
        await self.send_response(error_response, send)
        await _finish(error_response)
        return

    async def process_request(request: Any, send: Any) -> Any:
        response = await self.run_get_response(request)
        try:  # noqa: SIM105 - Django's code as it is
            await self.send_response(response, send)
        except asyncio.CancelledError:
            # Client disconnected during send_response (ignore exception).
            pass

        return response

    # Try to catch a disconnect while getting response.
    tasks = [
        # Check the status of these tasks and (optionally) terminate them in this order.
        asyncio.create_task(self.listen_for_disconnect(receive)),
        asyncio.create_task(process_request(request, send)),
    ]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    # Now wait on both tasks (they may have both finished by now).
    for task in tasks:
        if task.done():
            try:
                task.result()
            except RequestAborted:
                # Ignore client disconnects.
                pass
            except AssertionError:
                body_file.close()
                raise
        else:
            # Allow views to handle cancellation.
            task.cancel()
            try:  # noqa: SIM105 - Django's code as it is
                await task
            except asyncio.CancelledError:
                # Task re-raised the CancelledError as expected.
                pass

    try:
        response = tasks[1].result()
    except asyncio.CancelledError:
        await signals.request_finished.asend(sender=self.__class__)
        if REQUEST_FINISHED.taken:
            await sync_to_async(_receivers_here)()
    else:
        await _finish(response)

    body_file.close()
