"""System checks for the mistakes that break streaming (`manage.py check`, `check --deploy`)."""

import os
import sys
from collections.abc import Iterable

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from chat import conf
from chat.eventlog import REDIS, backend_path

GZIP = "django.middleware.gzip.GZipMiddleware"
WSGI_SERVERS = ("gunicorn.app", "uwsgi", "mod_wsgi", "waitress", "werkzeug.serving")


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


@register(Tags.compatibility)
def check_served_under_wsgi(app_configs: Iterable | None = None, **kwargs) -> list[Warning]:
    wsgi_only = getattr(settings, "WSGI_APPLICATION", None) and not getattr(
        settings, "ASGI_APPLICATION", None
    )
    server = next((name for name in WSGI_SERVERS if name in sys.modules), None)
    if server and "uvicorn" in sys.modules:  # gunicorn with uvicorn's worker serves ASGI
        server = None
    if not wsgi_only and not server:
        return []
    where = (
        f"this process runs under {server.split('.')[0]}"
        if server
        else "the project sets only WSGI_APPLICATION"
    )
    return [
        Warning(
            f"The chat streams need ASGI, but {where}: under WSGI a reply arrives all at once at its end.",
            hint="Set ASGI_APPLICATION to your project's asgi application, wrapped in "
            "chat.asgi.with_chat, and serve that with uvicorn (README: Add to your project).",
            id="chat.W002",
        )
    ]


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
