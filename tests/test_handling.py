"""chat/handling.py: Django's ASGI handling, a request's end on the event loop where it needs no
thread, and on the request's thread, as Django does, where it does."""

import ast
import asyncio
import difflib
import inspect
import textwrap
import threading

import httpx
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import HttpResponse

from chat import handling, request_thread

# What `handling.handle` changes in Django's method: its end, and the code style's notes.
CHANGED = {
    "-    await sync_to_async(error_response.close)()",
    "+    await _finish(error_response)",
    "-    await sync_to_async(response.close)()",
    "+    await _finish(response)",
    "+    if REQUEST_FINISHED.taken:",
    "+        await sync_to_async(_receivers_here)()",
}


def _code_lines(function) -> list[str]:
    """Its body as Python reads it (no docstring, comments or annotations), line by line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) else tree.body  # the docstring
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            node.returns = None
            for arg in node.args.args:
                arg.annotation = None
    return "\n".join(ast.unparse(node) for node in body).splitlines()


def test_djangos_own_handle_is_the_code_copied():
    """Fails when Django's ASGIHandler.handle changes (a Django upgrade): the copy in
    chat/handling.py must then be looked at, and until it is, Django's own method serves."""
    assert handling.django_handle_is_known(), "Django's ASGIHandler.handle changed: see chat/handling.py"
    mine, theirs = _code_lines(handling.handle), _code_lines(ASGIHandler.handle)
    diff = {
        line
        for line in difflib.unified_diff(theirs, mine, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    }
    assert diff == CHANGED, diff


def test_only_djangos_own_handler_is_served_by_the_copy():
    class Overridden(ASGIHandler):
        async def handle(self, scope, receive, send):
            return await super().handle(scope, receive, send)

    class Called(ASGIHandler):
        async def __call__(self, scope, receive, send):
            return await super().__call__(scope, receive, send)

    assert handling.serves(ASGIHandler())
    assert not handling.serves(Overridden())
    assert not handling.serves(Called())
    assert not handling.serves(object())


def _get(server, path: str) -> httpx.Response:
    with httpx.Client(base_url=server.url) as client:
        return client.get(path)


def _finish_in_a_request(response, *, borrow: bool) -> tuple[int, list[str]]:
    """`_finish` at the end of a request (with Django's receivers taken over, as the lifespan
    does) that borrowed a thread for its sync work or not: (threads lent, where the URLconf
    was reset)."""
    threads = request_thread.ThreadPool()
    where = []

    def reset_urlconf(sender, **kwargs):
        where.append(threading.current_thread().name)

    async def request():
        async with request_thread.request_context(threads):
            if borrow:
                await sync_to_async(int)()
            await handling._finish(response)

    receivers = handling.REQUEST_FINISHED.receivers
    handling.REQUEST_FINISHED.receivers = (close_old_connections, reset_urlconf)
    reconnect = request_finished.disconnect(close_old_connections)  # Django's test client's
    handling.take_over()
    try:
        asyncio.run(request())
    finally:
        handling.give_back()
        handling.REQUEST_FINISHED.receivers = receivers
        if not reconnect:
            request_finished.disconnect(close_old_connections)
    return threads.lent, where


def test_a_request_that_borrowed_no_thread_ends_on_the_loop():
    """Issue 14: no thread lent for the request's end; Django's receivers run on the loop, where
    they have nothing to see to. A request that holds a thread ends on it, as in Django."""
    lent, where = _finish_in_a_request(HttpResponse(), borrow=False)
    assert lent == 0 and where == [threading.current_thread().name]
    lent, where = _finish_in_a_request(HttpResponse(), borrow=True)
    assert lent == 1 and where[0].startswith("chat-request")


def test_what_a_response_has_to_close_is_closed_on_a_thread():
    """A file it sent, a sync generator's `finally`: Django's hop, not the loop."""
    response = HttpResponse()
    response._resource_closers.append(lambda: None)
    lent, where = _finish_in_a_request(response, borrow=False)
    assert lent == 1 and where[0].startswith("chat-request")


def test_a_projects_own_receiver_still_hears_each_request_end_on_the_requests_thread(server):
    heard = []
    ended = threading.Semaphore(0)

    def receiver(sender, **kwargs):
        heard.append(threading.current_thread().name)
        ended.release()

    request_finished.connect(receiver, weak=False)
    try:
        lent = request_thread.pool.lent
        assert _get(server, "/api/models").status_code == 200
        assert _get(server, "/api/conversations").status_code == 200  # its sync work on a thread
        # The signal is sent once the response is out: the client may read it first.
        assert all(ended.acquire(timeout=10) for _ in range(2)), heard
    finally:
        request_finished.disconnect(receiver)
    assert len(heard) == 2 and all(name.startswith("chat-request") for name in heard), heard
    assert request_thread.pool.lent >= lent + 2
