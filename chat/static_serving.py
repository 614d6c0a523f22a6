"""The app's own static files (`STATIC_URL` + `chat/...`), served by `with_chat` when nothing
else serves them.

A site that adds the app by the README and runs `uvicorn mysite.asgi:application`, or
`runserver` with DEBUG off, had a chat page whose CSS and JavaScript answered 404: Django serves
static files only through runserver's handler while DEBUG is on, and a new project has no
WhiteNoise. The page is the app's, so the app makes sure its files load:

- only its own files (`chat/...` under STATIC_URL), found as `collectstatic` would find them:
  in `staticfiles_storage` when they were collected there (hashed names included), else through
  Django's finders (`django.contrib.staticfiles.finders.find`), which refuse a path that
  leaves their directories; a `..` or a backslash is refused before either is asked;
- GET and HEAD; `ETag`/`Last-Modified` with `Cache-Control: no-cache` (a browser revalidates
  and gets 304: a new release's modules never mix with old ones), `nosniff`, and the type of
  each file by its extension;
- it steps aside, leaving the request to the application, when STATIC_URL is another host
  (a CDN), when WhiteNoise's or ServeStatic's middleware is installed (they serve them, with
  compression and far-future caching), when CHAT_SERVE_STATIC is off, or when no such file
  exists. In front of it, runserver's own static handler (DEBUG on) and a proxy such as nginx
  serve the files before they reach it.

In production, `collectstatic` with WhiteNoise or ServeStatic, or the proxy serving
STATIC_ROOT, remains the better way (compressed, cached for a year): this is the fallback that
keeps a new site's page working.
"""

import asyncio
import hashlib
import mimetypes
import os
import posixpath
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.exceptions import SuspiciousFileOperation

from chat import conf

APP_DIR = "chat/"
CHUNK = 256 * 1024
# Middleware that serves static files itself: with one installed, the app leaves them to it.
STATIC_MIDDLEWARE = (
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "servestatic.middleware.ServeStaticMiddlewareAsync",
)
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
}


def static_prefix() -> str | None:
    """STATIC_URL's path when the site serves it itself; None when another host does (a CDN),
    when a static files middleware serves it, or when CHAT_SERVE_STATIC is off."""
    static_url = conf.get("STATIC_URL")  # conf: kept, and read again when a test changes it
    if not conf.get("CHAT_SERVE_STATIC") or not static_url:
        return None
    if any(name in STATIC_MIDDLEWARE for name in conf.get("MIDDLEWARE") or ()):
        return None
    url = urlsplit(str(static_url))
    if url.scheme or url.netloc:
        return None
    return url.path if url.path.endswith("/") else url.path + "/"


def static_name(path: str, prefix: str) -> str | None:
    """The file's name under STATIC_URL (`chat/chat.css`) if `path` asks for one of the app's
    files; None for anything else, a `..`, a backslash or a NUL included."""
    if not path.startswith(prefix + APP_DIR):
        return None
    name = path[len(prefix) :]
    if "\\" in name or "\x00" in name or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    if posixpath.normpath(name) != name or not name.startswith(APP_DIR):
        return None
    return name


def static_file(name: str) -> str | None:
    """The file's absolute path: collected (STATIC_ROOT, a local storage), else found where the
    app keeps it; None when there is no such file."""
    try:
        if getattr(settings, "STATIC_ROOT", None) and staticfiles_storage.exists(name):
            found = staticfiles_storage.path(name)  # NotImplementedError: a remote storage
        else:
            found = finders.find(name)
    except (SuspiciousFileOperation, NotImplementedError, ValueError):
        return None
    return found if found and os.path.isfile(found) else None


def content_type(name: str) -> str:
    extension = posixpath.splitext(name)[1].lower()
    if extension in TYPES:
        return TYPES[extension]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def read_file(path: str) -> tuple[bytes, float]:
    with open(path, "rb") as f:
        return f.read(), os.fstat(f.fileno()).st_mtime


class AppStaticFiles:
    """ASGI: answers GET and HEAD for the app's own static files (see the module's docstring);
    every other request goes to `app` untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            name = self.name(scope)  # on the loop: most requests are not the app's files
            path = None if name is None else await asyncio.to_thread(static_file, name)
            if path is not None:
                return await self.answer(scope, send, path)
        return await self.app(scope, receive, send)

    def name(self, scope: dict) -> str | None:
        prefix = static_prefix()
        if prefix is None:
            return None
        root, path = scope.get("root_path", ""), scope["path"]
        return static_name(path, prefix) or (static_name(path.removeprefix(root), prefix) if root else None)

    async def answer(self, scope: dict, send: Any, path: str) -> None:
        data, mtime = await asyncio.to_thread(read_file, path)
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        headers = [
            (b"content-type", content_type(path).encode()),
            (b"etag", etag.encode()),
            (b"last-modified", formatdate(mtime, usegmt=True).encode()),
            (b"cache-control", b"no-cache"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if etag in if_none_match(scope):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        for start in range(0, len(data), CHUNK):
            more = start + CHUNK < len(data)
            await send({"type": "http.response.body", "body": data[start : start + CHUNK], "more_body": more})
        if not data:
            await send({"type": "http.response.body", "body": b""})


def if_none_match(scope: dict) -> set[str]:
    """The ETags a client already holds (`If-None-Match`), weak ones compared as strong."""
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return {tag.strip().removeprefix("W/") for tag in value.decode("latin-1").split(",")}
    return set()
