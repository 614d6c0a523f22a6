"""Who asks: a visitor is known by Django's own database session, through a real server."""

from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from chat.models import Conversation
from chat.signals import VISITOR_KEY


def listed(tab) -> list[str]:
    response = tab.get("/api/conversations")
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["conversations"]]


def test_a_visitor_made_over_http_is_found_by_its_session_and_by_nobody_else(tab, new_tab):
    created = tab.conversation(title="mine")
    assert listed(tab) == [created["id"]]
    key = tab.http.cookies[settings.SESSION_COOKIE_NAME]
    visitor = SessionStore(key).load()[VISITOR_KEY]  # Django's own store reads what the app wrote
    assert Conversation.objects.get(pk=created["id"]).visitor == visitor
    stranger = new_tab()
    assert listed(stranger) == []
    assert stranger.get(f"/api/conversations/{created['id']}").status_code == 404


def test_an_expired_session_is_nobody(tab):
    created = tab.conversation()
    key = tab.http.cookies[settings.SESSION_COOKIE_NAME]
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert tab.get(f"/api/conversations/{created['id']}").status_code == 404
    assert listed(tab) == []


def test_a_signed_in_user_is_found_by_the_session_djangos_login_made(tab, django_user_model):
    django_user_model.objects.create_user("ada", password="a long enough password")
    page = tab.get("/accounts/login/")
    assert page.status_code == 200, page.text
    signed_in = tab.http.post(
        "/accounts/login/",
        data={"username": "ada", "password": "a long enough password"},
        headers=tab.csrf,
    )
    assert signed_in.status_code == 302, signed_in.text
    created = tab.conversation()
    assert Conversation.objects.get(pk=created["id"]).user.username == "ada"
    assert listed(tab) == [created["id"]]
