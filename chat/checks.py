"""System checks for the mistakes that break streaming (`manage.py check`, `check --deploy`)."""

import os
import sys
from collections.abc import Iterable

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.core.management import get_commands

from chat import conf
from chat.eventlog import REDIS, backend_path

GZIP = "django.middleware.gzip.GZipMiddleware"
WSGI_SERVERS = ("gunicorn.app", "uwsgi", "mod_wsgi", "waitress", "werkzeug.serving")
UVICORN_WORKERS = ("uvicorn.workers", "uvicorn_worker")
ASGI_RUNSERVERS = ("chat", "daphne")


@register(Tags.compatibility)
def check_gzip_middleware(app_configs: Iterable | None = None, **kwargs) -> list[Warning]:
    if GZIP not in getattr(settings, "MIDDLEWARE", []):
        return []
    return [
        Warning(
            "GZipMiddleware compresses the reply streams in blocks: replies arrive in bursts or at the end.",
            hint="Remove it from MIDDLEWARE and let the proxy compress pages (deploy/nginx.conf does).",
            id="chat.W001",
        )
    ]


def wsgi_server() -> str | None:
    """The WSGI server this process runs under, by the modules it loaded; None under ASGI.

    gunicorn runs ASGI too, with uvicorn's worker class (`uvicorn.workers`, or the
    `uvicorn_worker` package that replaces it).
    """
    server = next((name for name in WSGI_SERVERS if name in sys.modules), None)
    if server == "gunicorn.app" and any(name in sys.modules for name in UVICORN_WORKERS):
        return None
    return server


def runserver_app() -> str | None:
    """The app whose `runserver` `manage.py runserver` runs, when that one is WSGI: Django's
    command lookup (`get_commands`, as manage.py does it) gives it to the first app listed in
    INSTALLED_APPS that has one; staticfiles', ServeStatic's and WhiteNoise's are Django's WSGI
    server. None when it is the chat's, or another ASGI one (Daphne's)."""
    app = get_commands().get("runserver")
    return None if app in ASGI_RUNSERVERS else app


@register(Tags.compatibility)
def check_served_under_wsgi(app_configs: Iterable | None = None, **kwargs) -> list[Warning]:
    """Warns from what really serves, never from settings alone.

    It once warned when ASGI_APPLICATION was unset, which startproject never sets and Django
    never reads: every new site got the warning. What serves a site is its server (a WSGI one
    loaded in this process) or, in development, the `runserver` that INSTALLED_APPS' order
    picks; ASGI_APPLICATION only names, to the app's runserver, what to serve.
    """
    server = wsgi_server()
    if server is not None:
        return [
            Warning(
                f"The chat streams need ASGI, but this process runs under {server.split('.')[0]}: "
                "under WSGI a reply arrives all at once at its end.",
                hint="Serve your project's asgi.py, its application wrapped in chat.asgi.with_chat, "
                "with uvicorn (README: Add to your project).",
                id="chat.W002",
            )
        ]
    app = runserver_app()
    if app is not None:
        return [
            Warning(
                f"`manage.py runserver` is Django's WSGI server here, not the chat's: {app} comes "
                "before chat in INSTALLED_APPS, and under WSGI a reply arrives all at once at its end.",
                hint=f'List "chat" before "{app}" in INSTALLED_APPS (README: Add to your project).',
                id="chat.W002",
            )
        ]
    return []


def worker_count() -> int:
    """Server processes on this machine: WEB_CONCURRENCY (uvicorn's --workers reads it), or the
    --workers of the command line this process runs (a uvicorn worker keeps its parent's)."""
    count = int(os.environ.get("WEB_CONCURRENCY") or 1)
    argv = sys.argv
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--workers=") else None
        if arg == "--workers" and i + 1 < len(argv):
            value = argv[i + 1]
        if value and value.isdigit():
            count = max(count, int(value))
    return count


@register(Tags.compatibility, deploy=True)
def check_workers_without_redis(app_configs: Iterable | None = None, **kwargs) -> list[Warning]:
    if backend_path() == REDIS or conf.get("REDIS_URL"):
        return []
    workers = worker_count()
    message = (
        f"{workers} server processes without REDIS_URL"
        if workers > 1
        else "No REDIS_URL: every server process keeps its replies to itself"
    )
    return [
        Warning(
            f"{message}: a stream served by another process than the one generating its reply "
            "follows it at checkpoint pace, and a stop takes up to a checkpoint to arrive.",
            hint="Set REDIS_URL (README: Deploying); with one server process only, silence chat.W003.",
            id="chat.W003",
        )
    ]


@register()
def limits_settings(app_configs, **kwargs) -> list[Error]:
    """A limit or proxy written wrong is named at start, not at the first send."""
    from chat.proxies import trusted_networks
    from chat.ratelimit import rules

    errors = []
    for read in (rules, trusted_networks):
        try:
            read()
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="chat.E001"))
    return errors
