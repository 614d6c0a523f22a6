"""chat.middleware: Django's middleware, with the hooks that do no I/O run on the event loop.

Django's AsyncClient serves the project in async mode, as uvicorn does. Each hop to a thread
the middleware still makes goes through chat.middleware's sync_to_async, counted here.
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from chat import middleware

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hops(monkeypatch) -> list[str]:
    calls: list[str] = []

    def counting(fn, *args, **kwargs):
        calls.append(fn.__qualname__)
        return sync_to_async(fn, *args, **kwargs)

    monkeypatch.setattr(middleware, "sync_to_async", counting)
    return calls


def test_a_known_visitors_api_request_makes_no_thread_hop_in_the_middleware(hops):
    async def go():
        client = AsyncClient()
        page = await client.get("/")
        hops.clear()
        response = await client.get("/api/conversations")
        return page, response

    page, response = asyncio.run(go())
    assert page.status_code == 200 and "sessionid" in page.cookies
    assert response.status_code == 200 and response.json() == {"conversations": []}
    assert hops == []


def test_a_session_to_save_and_a_forms_csrf_check_still_go_to_the_thread(hops):
    async def go():
        client = AsyncClient(enforce_csrf_checks=True)
        page = await client.get("/")  # a new visitor: the session is saved
        saved = list(hops)
        hops.clear()
        token = page.cookies["csrftoken"].value
        login = await client.post(
            "/admin/login/", {"csrfmiddlewaretoken": token, "username": "x", "password": "y"}
        )
        forged = await client.post("/admin/login/", {"csrfmiddlewaretoken": "0" * 32, "username": "x"})
        return saved, list(hops), login, forged

    saved, form_hops, login, forged = asyncio.run(go())
    assert saved == ["SessionMiddleware.process_response"]
    assert "CsrfViewMiddleware.process_view" in form_hops  # a form's token is read from its body
    assert login.status_code == 200  # the form again, with "enter a correct username"
    assert forged.status_code == 403  # Django's CSRF check still refuses a bad token
