"""The host's users: signing in keeps a visitor's conversations, CHAT_LOGIN_REQUIRED, ownership,
the page's account corner, and the app mounted under a prefix."""

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import get_user_model

from chat import conf
from chat.models import Conversation
from tests.conftest import Tab
from tests.sse_client import events, text_of

PASSWORD = "a long test password"


@pytest.fixture
def users(transactional_db):
    model = get_user_model()
    return [model.objects.create_user(name, password=PASSWORD) for name in ("ada", "grace")]


def sign_in(tab: Tab, username: str, *, follow: bool = True) -> httpx.Response:
    form = tab.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return tab.http.post(
        "/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/"},
        headers={"Referer": f"{tab.http.base_url}accounts/login/"},
        follow_redirects=follow,
    )


def titles(tab: Tab) -> set[str]:
    return {c["title"] for c in tab.get("/api/conversations").json()["conversations"]}


def test_signing_in_claims_the_visitors_conversations(tab, users):
    tab.conversation(title="as a visitor")
    tab.send("a question before signing in")
    assert sign_in(tab, "ada").status_code == 200
    assert titles(tab) == {"as a visitor", "a question before signing in"}
    assert set(Conversation.objects.values_list("user__username", "visitor")) == {("ada", "")}
    # Signed out, the browser is a new visitor: the conversations stay with the user.
    tab.post("/accounts/logout/")
    tab.get("/")
    assert titles(tab) == set()


def test_two_tabs_signing_in_at_once_lose_nothing(server, users):
    tab = Tab(server.url)
    for i in range(10):
        tab.conversation(title=f"visitor {i}")
    form = tab.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)

    def login(_):
        return tab.http.post(
            "/accounts/login/",
            data={"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{server.url}/accounts/login/"},
        )

    with ThreadPoolExecutor(2) as pool:
        assert [r.status_code for r in pool.map(login, range(2))] == [302, 302]
    assert Conversation.objects.filter(user__username="ada").count() == 10
    assert not Conversation.objects.filter(user__isnull=True).exists()
    tab.close()


def test_users_see_only_their_own_conversations(server, users, new_tab):
    ada, grace, visitor = new_tab(), new_tab(), new_tab()
    sign_in(ada, "ada")
    sign_in(grace, "grace")
    mine = ada.send("ada's")["assistant_message"]
    visitors = visitor.send("a visitor's")["assistant_message"]
    assert titles(grace) == set() and titles(visitor) == {"a visitor's"}
    for other, message in ((grace, mine), (visitor, mine), (grace, visitors), (ada, visitors)):
        assert other.get(f"/api/conversations/{message['conversation_id']}").status_code == 404
        assert other.get(f"/api/messages/{message['id']}/stream").status_code == 404
        assert other.post(f"/api/messages/{message['id']}/stop").status_code == 404


def test_login_required_redirects_the_page_and_answers_401(server, settings, users):
    tab = Tab(server.url)
    settings.CHAT_LOGIN_REQUIRED = True
    with httpx.Client(base_url=server.url) as anonymous:
        page = anonymous.get("/c/6f1c1b5e-0000-4000-8000-000000000000/")
        assert page.status_code == 302
        assert page.headers["location"] == "/accounts/login/?next=/c/6f1c1b5e-0000-4000-8000-000000000000/"
        assert "sessionid" not in page.cookies
        for method, path in (
            ("GET", "/api/conversations"),
            ("POST", "/api/conversations"),
            ("GET", "/api/models"),
        ):
            response = anonymous.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "login_required"
        assert not Conversation.objects.exists()
    sign_in(tab, "ada")
    assert tab.get("/").status_code == 200
    assert tab.send("signed in")["assistant_message"]["status"] == "streaming"
    tab.close()


def test_the_page_shows_who_is_signed_in(tab, users):
    page = tab.get("/").text
    assert 'href="/accounts/login/?next=/"' in page and "Sign in" in page
    sign_in(tab, "ada")
    page = tab.get("/").text
    assert '<span class="account-name" title="Signed in">ada</span>' in page
    assert 'action="/accounts/logout/"' in page and "Sign out" in page


def test_title_and_default_system_prompt_come_from_settings(tab, settings):
    settings.CHAT_PAGE_TITLE = "Ask the library"
    settings.CHAT_SYSTEM_PROMPT = "You answer questions about the library."
    assert "<title>Ask the library</title>" in tab.get("/").text
    assert tab.conversation()["system_prompt"] == "You answer questions about the library."
    assert tab.conversation(system_prompt="")["system_prompt"] == ""


def test_every_url_follows_the_mount_prefix(server, settings):
    settings.ROOT_URLCONF = "tests.urls_mounted"
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        page = browser.get("/assistant/").text
        assert 'data-app-root="/assistant/"' in page and 'href="/assistant/" id="new-chat"' in page
        headers = {"X-CSRFToken": browser.cookies["csrftoken"]}
        sent = browser.post("/assistant/api/conversations", json={"content": "hello"}, headers=headers).json()
        assert sent["stream_url"] == f"/assistant/api/messages/{sent['assistant_message']['id']}/stream"
        with browser.stream("GET", sent["stream_url"]) as response:
            assert response.status_code == 200
            received = list(events(response.iter_lines()))
        assert received[-1].event == "done" and text_of(received).startswith("Thanks")
        missing = browser.get("/assistant/api/nothing")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert browser.get("/api/conversations").status_code == 404  # nothing at the root


def test_settings_come_from_settings_then_the_environment_then_the_defaults(settings, monkeypatch):
    del settings.CHAT_DEMO_RATE
    monkeypatch.setenv("CHAT_DEMO_RATE", "12.5")
    monkeypatch.setenv("CHAT_LOGIN_REQUIRED", "yes")
    monkeypatch.setenv("CHAT_MODELS", "demo, openai:gpt-4o-mini")
    monkeypatch.setenv("CHAT_DB_THREADS", "3")
    assert conf.get("CHAT_DEMO_RATE") == 12.5
    assert conf.get("CHAT_LOGIN_REQUIRED") is True
    assert conf.get("CHAT_DB_THREADS") == 3
    settings.CHAT_DEMO_RATE = 7.0
    assert conf.get("CHAT_DEMO_RATE") == 7.0
    assert conf.get("CHAT_MODELS") == settings.CHAT_MODELS  # tests/settings.py sets it
    del settings.CHAT_MODELS
    conf.forget()  # a deletion sends no setting_changed (see the test below)
    assert conf.get("CHAT_MODELS") == ["demo", "openai:gpt-4o-mini"]
    monkeypatch.setenv("CHAT_RETRY_MS", "soon")
    with pytest.raises(ValueError, match="CHAT_RETRY_MS"):
        conf.get("CHAT_RETRY_MS")


def test_a_setting_is_read_once_and_again_after_a_change_of_djangos_settings(settings, monkeypatch):
    """What chat.conf read is kept (a reply reads some 60 settings); a change of Django's
    settings (its `setting_changed` signal) has it read again. A deletion through
    pytest-django's `settings` sends no signal, so the test forgets by hand there."""
    from django.test import override_settings

    del settings.CHAT_DEMO_RATE
    monkeypatch.setenv("CHAT_DEMO_RATE", "3")
    assert conf.get("CHAT_DEMO_RATE") == 3.0
    monkeypatch.setenv("CHAT_DEMO_RATE", "4")
    assert conf.get("CHAT_DEMO_RATE") == 3.0  # the environment is read once
    conf.forget()
    assert conf.get("CHAT_DEMO_RATE") == 4.0
    settings.CHAT_DEMO_RATE = 5.0
    assert conf.get("CHAT_DEMO_RATE") == 5.0
    with override_settings(CHAT_DEMO_RATE=6.0):
        assert conf.get("CHAT_DEMO_RATE") == 6.0
    assert conf.get("CHAT_DEMO_RATE") == 5.0
    del settings.CHAT_DEMO_RATE
    assert conf.get("CHAT_DEMO_RATE") == 5.0  # no signal: still what was read
    conf.forget()
    assert conf.get("CHAT_DEMO_RATE") == 4.0
