"""`runserver` that streams: Django's command, served through ASGI by uvicorn.

Django's own runserver is WSGI, which collects an async StreamingHttpResponse into a list
before sending anything, so a reply arrives all at once at its end. This keeps what people
rely on (addrport, --noreload, autoreload, static files while DEBUG, the banner) and serves
the project's ASGI application instead. (The bundled project also serves its static files
itself, as in production: project/static_files.py; a host project may not.)
"""

import asyncio
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading

import uvicorn
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver
from django.core.asgi import get_asgi_application
from django.db import connections
from django.utils import autoreload
from django.utils.module_loading import import_string

from chat.asgi import with_chat
from chat.replies import generation

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "access": {"format": "[%(asctime)s] %(message)s", "datefmt": "%d/%b/%Y %H:%M:%S"},
        "default": {"format": "%(levelname)s: %(message)s"},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
        "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "uvicorn.error": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


class WithStaticFiles:
    """Serves STATIC_URL from the finders (as Django's runserver does) and passes the rest on."""

    def __init__(self, app) -> None:
        self.app = app
        self.static = ASGIStaticFilesHandler(get_asgi_application())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.static._should_handle(scope["path"]):
            return await self.static(scope, receive, send)
        return await self.app(scope, receive, send)


class LoopServer(uvicorn.Server):
    """A uvicorn server that keeps its event loop, for work sent from other threads."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.finished = threading.Event()

    async def startup(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)


class Command(StaticRunserver):
    help = "Starts a development server that streams (ASGI through uvicorn), serving static files."

    server: "LoopServer | None" = None

    def get_handler(self, *args, **options):
        # A project without ASGI_APPLICATION (startproject sets none) gets Django's, with ours.
        if getattr(settings, "ASGI_APPLICATION", None):
            app = import_string(settings.ASGI_APPLICATION)
        else:
            app = with_chat(get_asgi_application())
        if options["use_static_handler"] and (settings.DEBUG or options["insecure_serving"]):
            return WithStaticFiles(app)
        return app

    def run(self, **options) -> None:
        if not options["use_reloader"]:
            self.inner_run(None, **options)
        elif os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
            try:
                autoreload.run_with_reloader(self.inner_run, **options)
            finally:  # Ctrl-C, SIGTERM, or a code change: save the replies in flight first
                self.stop_server()
        else:
            sys.exit(self.supervise())

    def supervise(self) -> int:
        """The reloader's parent: restart the server on code change (exit code 3).

        Unlike Django's, it passes SIGTERM on to the server and waits, so that the server can
        save its replies (Django's parent kills the child). Ctrl-C reaches both processes
        from the terminal; the parent then just waits for the server to finish.
        """
        env = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
        while True:
            child = subprocess.Popen(autoreload.get_child_arguments(), env=env, close_fds=False)
            signal.signal(signal.SIGTERM, lambda signum, frame, child=child: child.send_signal(signum))
            while True:
                try:
                    code = child.wait()
                    break
                except KeyboardInterrupt:
                    continue
            if code != 3:
                return code

    def stop_server(self) -> None:
        """Save the replies in flight as `interrupted`, then stop uvicorn (autoreload child)."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server = self.server
        if server is None or server.loop is None or server.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(generation.interrupt_all(), server.loop).result(timeout=15)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            self.stderr.write(f"Could not save the replies in flight: {exc}")
        server.should_exit = True
        server.finished.wait(timeout=10)

    def inner_run(self, *args, **options) -> None:
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            check_kwargs = super(StaticRunserver, self).get_check_kwargs(options)
            check_kwargs["display_num_errors"] = True
            self.check(**check_kwargs)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()

        try:
            sock = socket.socket(socket.AF_INET6 if self.use_ipv6 else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.addr, int(self.port)))
        except OSError as e:
            messages = {
                errno.EACCES: "You don't have permission to access that port.",
                errno.EADDRINUSE: "That port is already in use.",
                errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
            }
            self.stderr.write(f"Error: {messages.get(e.errno, e)}")
            os._exit(1)  # as Django's: sys.exit does not work in the reloader's thread

        config = uvicorn.Config(
            self.get_handler(*args, **options),
            lifespan="on",
            log_config=LOG_CONFIG,
            server_header=False,
            timeout_graceful_shutdown=10,
            # Who the client is behind a proxy is the app's decision (CHAT_TRUSTED_PROXIES,
            # chat/proxies.py), not uvicorn's, which believes any local peer by default.
            proxy_headers=False,
        )
        self.server = LoopServer(config)
        self.on_bind(sock.getsockname()[1])
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        try:
            self.server.run(sockets=[sock])
        except KeyboardInterrupt:
            sys.exit(0)
        finally:
            self.server.finished.set()
