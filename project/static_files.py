"""Static files from the app itself, DEBUG on or off: WhiteNoise, as an async middleware.

`uvicorn project.asgi:application` alone serves a working page: the files come from the apps'
`static/` folders (WHITENOISE_USE_FINDERS, so no collectstatic step), indexed once at start
(re-read on each request while DEBUG is on, so edits show at once).

WhiteNoiseMiddleware is sync-only (ASGI support: evansd/whitenoise#179; the async middleware of
PR #359 was never merged), and a single sync middleware makes Django run every request,
streams included, through a thread; its FileResponse is also a sync iterator, which Django
under ASGI reads whole, with a warning (evansd/whitenoise#531). This subclass does what
WhiteNoiseMiddleware.__call__ and .serve do (whitenoise 6, pinned below 7 in pyproject.toml),
on the event loop, reading the file in a thread; everything else goes straight on.
tests/test_deploy.py serves the page's files through it from a real uvicorn.
"""

import asyncio
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

CHUNK = 64 * 1024


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        with warnings.catch_warnings():
            # STATIC_ROOT exists only after a collectstatic, which this setup does not need.
            warnings.filterwarnings("ignore", message="No directory at")
            super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        static_file = None
        if path.startswith(self.static_prefix):
            static_file = self.find_file(path) if self.autorefresh else self.files.get(path)
        if static_file is None:
            return await self.get_response(request)
        return static_response(static_file, request)


def static_response(static_file, request: HttpRequest) -> HttpResponseBase:
    """WhiteNoise's answer (headers, 304, 405, ranges) with the file read off the event loop."""
    served = static_file.get_response(request.method, request.META)
    if served.file is None:  # HEAD, 304 Not Modified, 405
        response: HttpResponseBase = HttpResponse(status=int(served.status))
    else:
        response = StreamingHttpResponse(_read(served.file), status=int(served.status))
    del response["Content-Type"]  # WhiteNoise's own, if it has one, comes next
    for name, value in served.headers:
        response[name] = value
    return response


async def _read(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        file.close()
