"""ASGI entry point: `uvicorn project.asgi:application` (and what `manage.py runserver` serves)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()

from chat.asgi import with_chat  # noqa: E402  (needs the app registry loaded)

application = with_chat(django_application)
