"""`runserver` that streams: the project's ASGI application served by uvicorn.

Django's own runserver is WSGI, which collects an async StreamingHttpResponse into a list
before sending anything, so a reply arrives all at once at its end. This is Django's command
(its options, address parsing and autoreloader, `autoreload.run_with_reloader`) with the
server swapped for uvicorn's public `Config` and `Server`. It keeps what people rely on:
addrport and --ipv6, --noreload, the reloader, the system checks and the unapplied migrations
note, static files while DEBUG is on (--nostatic, --insecure), the port-in-use message.

Stopping it saves the replies in flight as `interrupted`, so their streams end with `done`
rather than being cut:
- Ctrl-C, a code change that reloads, and SIGTERM with --noreload: saved. The server runs in
  a thread and the process's main thread, which receives the signal, stops it (`stop`); the
  reloader's parent waits for it meanwhile (`leave_ctrl_c_to_the_server`).
- SIGTERM to the reloader's parent (`kill <pid>` without --noreload): not saved. Django's
  parent does not pass the signal on, it kills the server process (Django ticket #19137), and
  nothing public changes that. The replies keep their last checkpoint and the next start's
  sweeper marks them `interrupted`. Send SIGINT instead, or run with --noreload.
"""

import asyncio
import errno
import importlib.util
import os
import signal
import socket
import sys
import threading
from datetime import datetime
from typing import Any

import uvicorn
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver
from django.core.asgi import get_asgi_application
from django.db import connections
from django.utils import autoreload
from django.utils.module_loading import import_string

from chat.asgi import ChatLifespan, with_chat
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
BIND_ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}
# Set in the reloader's parent when it leaves Ctrl-C to the server process (below).
CTRL_C_LEFT_TO_SERVER = "CHAT_RUNSERVER_CTRL_C_LEFT_TO_SERVER"


def leave_ctrl_c_to_the_server() -> None:
    """In the reloader's parent: ignore Ctrl-C, so that it waits while the server saves.

    Ctrl-C reaches every process of the terminal's job. Django's parent would stop waiting for
    the server then and kill it a quarter of a second later (Python's subprocess gives a child
    that long after a KeyboardInterrupt): with 80 replies in flight on a busy 2-core host, 1
    to 6 of them were left `streaming` so (none with this). Ignoring it, the parent returns
    when the server exits. A SIGINT sent to the parent alone does nothing, as before.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.environ[CTRL_C_LEFT_TO_SERVER] = "1"  # the server process inherits the environment


def take_ctrl_c_back() -> None:
    """In the server process: Ctrl-C stops it again (it inherits the parent's "ignore")."""
    if os.environ.get(CTRL_C_LEFT_TO_SERVER) == "1":
        signal.signal(signal.SIGINT, signal.default_int_handler)


def project_application() -> Any:
    """What the project serves in production: ASGI_APPLICATION when set; else the `asgi` module
    beside WSGI_APPLICATION's (startproject makes both, and sets only the latter), as
    `uvicorn mysite.asgi:application` would; else Django's application with the chat's.
    ASGI_APPLICATION is then optional: the system check no longer asks for it."""
    if getattr(settings, "ASGI_APPLICATION", None):
        return import_string(settings.ASGI_APPLICATION)
    wsgi = getattr(settings, "WSGI_APPLICATION", None) or ""
    if wsgi.count(".") >= 2:
        module = wsgi.rsplit(".", 2)[0] + ".asgi"
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if found:  # wrapped here if the site has not done it yet: the engine needs the lifespan
            app = import_string(f"{module}.application")
            return app if isinstance(app, ChatLifespan) else with_chat(app)
    return with_chat(get_asgi_application())


class Command(StaticRunserver):
    help = "Starts a development server that streams (ASGI, served by uvicorn), serving static files."

    server: uvicorn.Server | None = None
    loop: asyncio.AbstractEventLoop | None = None
    exit_code: int | str | None = None

    def get_handler(self, *args: Any, **options: Any) -> Any:
        app = project_application()
        if options["use_static_handler"] and (settings.DEBUG or options["insecure_serving"]):
            # STATIC_URL from the finders, as Django's runserver does; the rest, lifespan
            # included, goes on to the application (the ASGI twin of Django's WSGI handler).
            return ASGIStaticFilesHandler(app)
        return app

    def run(self, **options: Any) -> None:
        self.served = threading.Event()
        if options["use_reloader"]:
            if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
                take_ctrl_c_back()
            else:
                leave_ctrl_c_to_the_server()
            try:  # inner_run in a thread; this one watches the files, and gets the signals
                autoreload.run_with_reloader(self.inner_run, **options)
            finally:  # Ctrl-C, SIGTERM, or a code change (nothing to do in the parent)
                self.stop()
            return
        sock = self.prepare(**options)
        app = self.get_handler(**options)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # as the reloader's
        serving = threading.Thread(target=self.serve, args=(sock, app), name="chat-server", daemon=True)
        serving.start()
        try:
            serving.join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        if self.exit_code:  # uvicorn's own, e.g. 3 when the application could not start
            sys.exit(self.exit_code)

    def inner_run(self, *args: Any, **options: Any) -> None:
        """The reloader's thread: checks, then the server until it is stopped."""
        autoreload.raise_last_exception()  # one raised while loading the project, if any
        sock = self.prepare(**options)
        self.serve(sock, self.get_handler(*args, **options))

    def prepare(self, **options: Any) -> socket.socket:
        """System checks and migrations, as Django's runserver makes them, and the bound socket."""
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):  # opened by the checks, not needed
            conn.close()
        sock = self.bind()
        self.banner(sock.getsockname()[1])
        return sock

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if self.use_ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.addr, int(self.port)))
        except OSError as exc:
            sock.close()
            self.stderr.write(f"Error: {BIND_ERRORS.get(exc.errno, exc)}")
            os._exit(1)  # as Django's: sys.exit would end only the reloader's thread
        return sock

    def banner(self, port: int) -> None:
        """Django's banner, saying what serves: ASGI through uvicorn, on every Django."""
        addr = f"[{self.addr}]" if ":" in self.addr else ("0.0.0.0" if self.addr == "0" else self.addr)
        self.stdout.write(
            f"{datetime.now():%B %d, %Y - %X}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI development server (uvicorn {uvicorn.__version__}) at http://{addr}:{port}/\n"
            "Quit the server with CONTROL-C."
        )
        if os.environ.get("DJANGO_RUNSERVER_HIDE_WARNING") != "true":
            self.stdout.write(
                self.style.WARNING(
                    "WARNING: This is a development server. Do not use it in a production setting: "
                    "serve your project's ASGI application with uvicorn instead."
                )
            )

    def serve(self, sock: socket.socket, app: Any) -> None:
        """uvicorn on a loop of this thread, until `stop` (uvicorn's documented `serve()`)."""
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_config=LOG_CONFIG,
            server_header=False,
            timeout_graceful_shutdown=10,
            # Who the client is behind a proxy is the app's decision (CHAT_TRUSTED_PROXIES,
            # chat/proxies.py), not uvicorn's, which believes any local peer by default.
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        try:
            asyncio.run(self.serving(self.server, sock))
        except SystemExit as exc:  # raised by uvicorn in this thread: passed on to the process
            self.exit_code = exc.code
        finally:
            self.served.set()

    async def serving(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()  # for `stop`, from the main thread
        await server.serve(sockets=[sock])

    def stop(self) -> None:
        """Save the replies in flight as `interrupted` (their streams end), then stop uvicorn."""
        if self.server is None or self.loop is None or self.served.is_set():
            return  # the reloader's parent, or a server that never started or already stopped
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the saving
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            asyncio.run_coroutine_threadsafe(generation.interrupt_all(), self.loop).result(timeout=15)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            self.stderr.write(f"Could not save the replies in flight: {exc!r}")
        self.server.should_exit = True
        self.served.wait(timeout=10)
