"""Django's own middleware, with its hooks run on the event loop when served by ASGI.

Under ASGI, Django calls a `MiddlewareMixin`'s process_request, process_view and
process_response each through `sync_to_async`: a hop to the request's thread and back. The
seven of the bundled project made about fifteen hops per request, the largest part of opening
a reply (issue 14's profile). Most of those hooks do no I/O at all (headers, cookies, a lazy
session or user object), so these subclasses call them directly; where a hook may touch the
database (a session being saved, messages kept in the session, a form's CSRF token read from
its body, a CSRF secret kept in the session) it still goes to the thread, exactly as Django
would. Under WSGI (or `manage.py` commands) they are Django's classes, unchanged.

A project lists them in MIDDLEWARE in place of Django's (project/settings.py does); a
project that keeps Django's gets the same behaviour, with the hops.
"""

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse
from django.middleware import clickjacking, common, csrf, security


class OnTheLoop:
    """A MiddlewareMixin whose hooks do no I/O: called inline, not through a thread."""

    def request_on_loop(self, request: HttpRequest) -> bool:
        return True

    def response_on_loop(self, request: HttpRequest, response: HttpResponse) -> bool:
        return True

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if hasattr(self, "process_request"):
            if self.request_on_loop(request):
                response = self.process_request(request)
            else:
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_on_loop(request, response):
                return self.process_response(request, response)
            return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
        return response


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(OnTheLoop, common.CommonMiddleware):
    pass


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware):
    """Sets the lazy `request.user` and `request.auser`; nothing is read until they are used."""


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(OnTheLoop, sessions.SessionMiddleware):
    """A lazy SessionStore per request; the response goes to the thread only to save it."""

    def response_on_loop(self, request: HttpRequest, response: HttpResponse) -> bool:
        session = getattr(request, "session", None)
        if session is None:
            return True
        return not (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(OnTheLoop, messages.MessageMiddleware):
    """Messages read or added may be stored in the session, which may have to be loaded."""

    def response_on_loop(self, request: HttpRequest, response: HttpResponse) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is None or not (storage.used or storage.added_new)


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    """The cookie's secret and the checks of exempt and safe requests on the loop; a form
    POST's check (which may parse its body) in the thread."""

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(self):  # async mode: Django adapts process_view as it finds it
            self.process_view = self._process_view_async

    def request_on_loop(self, request: HttpRequest) -> bool:
        return not settings.CSRF_USE_SESSIONS  # else the secret is read from the session

    def response_on_loop(self, request: HttpRequest, response: HttpResponse) -> bool:
        return not settings.CSRF_USE_SESSIONS  # else a new secret is written into the session

    async def _process_view_async(self, request, callback, callback_args, callback_kwargs):
        inline = (
            getattr(request, "csrf_processing_done", False)
            or getattr(callback, "csrf_exempt", False)
            or request.method in ("GET", "HEAD", "OPTIONS", "TRACE")
        )
        check = csrf.CsrfViewMiddleware.process_view.__get__(self)
        if inline:
            return check(request, callback, callback_args, callback_kwargs)
        return await sync_to_async(check, thread_sensitive=True)(
            request, callback, callback_args, callback_kwargs
        )
