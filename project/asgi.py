"""ASGI entry point: `uvicorn project.asgi:application` (and what `manage.py runserver` serves)."""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# uvicorn's exit code for a worker that cannot start (uvicorn.config.STARTUP_FAILURE): with
# --workers N the parent then stops instead of restarting the worker forever.
STARTUP_FAILURE = 3

try:
    django_application = get_asgi_application()
except ImproperlyConfigured as exc:  # e.g. no SECRET_KEY with DEBUG off: say what to set, once
    print(f"Cannot start the server: {exc}", file=sys.stderr, flush=True)
    sys.exit(STARTUP_FAILURE)

from chat.asgi import tune_garbage_collector, with_chat  # noqa: E402  (needs the app registry loaded)

application = with_chat(django_application)

# A server that holds many open streams may opt in to the collector tuning the app offers:
# GC_THRESHOLDS=5000,20,100 (the benchmarks set it); unset, Python's collector is left alone.
if thresholds := os.environ.get("GC_THRESHOLDS", "").strip():
    tune_garbage_collector(thresholds=tuple(int(n) for n in thresholds.split(",")))
