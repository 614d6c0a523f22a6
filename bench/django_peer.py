"""A peer: the obvious Django view, `uvicorn bench.django_peer:application`.

What a Django developer writes first: an async view answering with a `StreamingHttpResponse`
over an async generator, in a project with `startproject`'s middleware, served by Django's own
ASGI handler. It streams the same SSE bytes, tokens and pacing as bench/baseline.py and keeps
nothing (no database write, no event log, no session read): whatever the chat app spends above
it is the price of what the app does beyond streaming (persistence, resuming, limits).
"""

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import django
from django.conf import settings

from bench import baseline

settings.configure(
    DEBUG=False,
    SECRET_KEY=secrets.token_urlsafe(32),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ],
    # startproject's middleware, as it writes them
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    # Never opened: the views read and write no session or row.
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(Path("/nonexistent/peer"))}},
    USE_TZ=True,
)
django.setup()

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie  # noqa: E402

from chat.providers.demo import demo_tokens  # noqa: E402

_stopped: set[str] = set()


async def tokens(question: str) -> AsyncIterator[bytes]:
    """retry, start, status, the tokens paced as the demo model, done (bench/baseline.py)."""
    loop = asyncio.get_running_loop()
    message_id = str(uuid.uuid4())
    start_event = {"message_id": message_id, "conversation_id": str(uuid.uuid4()), "model": "demo"}
    parts = demo_tokens(question, baseline.TOKENS)
    yield b"retry: 2000\n\n" + baseline._event("start", start_event)
    yield baseline._event("status", {"state": "thinking"})
    start = last = loop.time()
    offset, status = 0, "complete"
    for i, token in enumerate(parts):
        if baseline.RATE > 0:
            due = start + (i + 1) / baseline.RATE
            while (wait := due - loop.time()) > 0:
                if last + baseline.HEARTBEAT < due:
                    await asyncio.sleep(max(last + baseline.HEARTBEAT - loop.time(), 0))
                    yield baseline.PING
                    last = loop.time()
                else:
                    await asyncio.sleep(wait)
        else:
            await asyncio.sleep(0)
        if message_id in _stopped:
            status = "stopped"
            break
        offset += len(token)
        yield baseline.text_event(offset, token)
        last = loop.time()
    _stopped.discard(message_id)
    usage = {"input_tokens": len(question.split()), "output_tokens": len(parts)}
    yield baseline._event(
        "done", {"message_id": message_id, "status": status, "finish_reason": "stop", "usage": usage}
    )


@ensure_csrf_cookie
async def page(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"page": "django peer"})


@csrf_exempt  # the client sends the token; the peer keeps no session to check it against
async def conversations(request: HttpRequest) -> HttpResponse:
    data = json.loads(request.body or b"{}")
    if "content" not in data:
        response = JsonResponse({"id": str(uuid.uuid4())}, status=201)
        response.set_cookie("sessionid", secrets.token_hex(16), httponly=True, samesite="Lax")
        return response
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return JsonResponse({"assistant_message": {"id": str(uuid.uuid4())}}, status=201)
    response = StreamingHttpResponse(tokens(data["content"]), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"
    return response


@csrf_exempt
async def stop(request: HttpRequest, message_id: str) -> HttpResponse:
    _stopped.add(message_id)
    return JsonResponse({"id": message_id, "status": "stopped"})


urlpatterns = [
    path("", page),
    path("api/conversations", conversations),
    path("api/messages/<str:message_id>/stop", stop),
]

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
