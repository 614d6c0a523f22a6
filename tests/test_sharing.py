"""Sharing a conversation (contract v3): the API and the shared page, against a real server."""

import math
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from chat.models import Conversation, Share
from chat.sharing import Block, blocks
from tests.fakes import script
from tests.test_api import assert_error


def conversation_with(tab, text: str) -> str:
    sent = tab.send(script({"say": text}), model="script:fake")
    reply = sent["assistant_message"]
    tab.wait_finished(reply["id"], reply["conversation_id"])
    return reply["conversation_id"]


def share(tab, cid: str) -> str:
    response = tab.post(f"/api/conversations/{cid}/share")
    assert response.status_code == 201, response.text
    return response.json()["url"]


def anonymous_get(url: str) -> httpx.Response:
    """The link opened by someone else: no cookie, no session."""
    with httpx.Client() as client:
        return client.get(url)


def test_share_answers_201_with_an_absolute_url_that_anyone_can_read(tab, server):
    cid = conversation_with(tab, "The **answer** is 42.")
    url = share(tab, cid)
    assert url.startswith(f"{server.url}/s/") and url.endswith("/")
    response = anonymous_get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "The **answer** is 42." in response.text  # in the HTML: readable without JavaScript
    assert "set-cookie" not in response.headers
    assert tab.get(f"/api/conversations/{cid}").json()["share_url"] == url


def test_the_shared_page_is_private_to_the_link_and_runs_no_script(tab):
    url = share(tab, conversation_with(tab, "hello"))
    response = anonymous_get(url)
    headers = response.headers
    assert headers["X-Robots-Tag"] == "noindex"
    assert '<meta name="robots" content="noindex">' in response.text
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in headers["Cache-Control"]
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script" not in response.text.lower()
    assert "<form" not in response.text and "<textarea" not in response.text and "<input" not in response.text


def test_the_shared_page_says_nothing_of_the_owner(server, django_user_model):
    django_user_model.objects.create_user("alice.owner", email="alice@example.org", password="pw-alice-123")
    with httpx.Client(base_url=server.url) as client:
        client.get("/accounts/login/")
        signed_in = client.post(
            "/accounts/login/",
            data={"username": "alice.owner", "password": "pw-alice-123"},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        assert signed_in.status_code in (200, 302)
        csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
        created = client.post("/api/conversations", json={"content": "hi"}, headers=csrf).json()
        url = client.post(f"/api/conversations/{created['id']}/share", headers=csrf).json()["url"]
    page = anonymous_get(url).text
    for secret in ("alice.owner", "alice@example.org", created["id"], "Sign out", "csrfmiddlewaretoken"):
        assert secret not in page


def test_the_shared_page_names_no_visitor(tab):
    cid = conversation_with(tab, "hello")
    page = anonymous_get(share(tab, cid)).text
    visitor = Conversation.objects.get(pk=cid).visitor
    assert visitor and visitor not in page and cid not in page
    assert tab.http.cookies["sessionid"] not in page


def test_a_message_sent_after_sharing_shows_only_after_sharing_again_under_the_same_url(tab):
    cid = conversation_with(tab, "first answer")
    url = share(tab, cid)
    sent = tab.send(script({"say": "second answer"}), conversation_id=cid, model="script:fake")
    tab.wait_finished(sent["assistant_message"]["id"], cid)
    assert "first answer" in anonymous_get(url).text
    assert "second answer" not in anonymous_get(url).text
    assert share(tab, cid) == url
    assert "second answer" in anonymous_get(url).text
    assert Share.objects.count() == 1


def test_revoking_makes_the_url_answer_404(tab):
    cid = conversation_with(tab, "soon private")
    url = share(tab, cid)
    assert tab.delete(f"/api/conversations/{cid}/share").status_code == 204
    gone = anonymous_get(url)
    assert gone.status_code == 404
    assert gone.headers["Content-Type"].startswith("text/html")
    assert "soon private" not in gone.text
    assert gone.headers["X-Robots-Tag"] == "noindex"
    assert tab.get(f"/api/conversations/{cid}").json()["share_url"] is None
    assert tab.delete(f"/api/conversations/{cid}/share").status_code == 204  # already not shared
    assert share(tab, cid) != url  # shared again after a revoke: a new URL


def test_deleting_the_conversation_revokes_its_url(tab):
    cid = conversation_with(tab, "deleted soon")
    url = share(tab, cid)
    assert tab.delete(f"/api/conversations/{cid}").status_code == 204
    assert anonymous_get(url).status_code == 404
    assert not Share.objects.exists()


def test_another_owner_cannot_share_or_revoke(tab, new_tab):
    cid = conversation_with(tab, "mine")
    url = share(tab, cid)
    other = new_tab()
    assert_error(other.post(f"/api/conversations/{cid}/share"), 404, "not_found")
    assert_error(other.delete(f"/api/conversations/{cid}/share"), 404, "not_found")
    assert anonymous_get(url).status_code == 200
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        assert_error(tab.post(f"/api/conversations/{bad}/share"), 404, "not_found")


def test_share_needs_the_csrf_token_and_refuses_other_sites(tab):
    cid = conversation_with(tab, "x")
    assert_error(tab.http.post(f"/api/conversations/{cid}/share"), 403, "csrf")
    evil = {"Origin": "https://evil.example"}
    assert_error(tab.post(f"/api/conversations/{cid}/share", headers=evil), 403, "csrf")
    assert_error(tab.get(f"/api/conversations/{cid}/share"), 405, "method_not_allowed")
    assert not Share.objects.exists()


def test_share_tokens_cannot_be_guessed(tab):
    tokens = {urlsplit(share(tab, tab.conversation()["id"])).path.split("/")[-2] for _ in range(5)}
    assert len(tokens) == 5
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
        assert len(token) * math.log2(64) >= 128  # URL-safe base64: 6 bits a character


@pytest.mark.parametrize("token", ["x" * 32, "short", "a" * 65, "%00" * 20, "../../etc"])
def test_unknown_tokens_answer_an_html_404(server, token):
    response = anonymous_get(f"{server.url}/s/{token}/")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


def test_a_reply_shows_escaped_with_its_code_blocks(tab):
    hostile = 'Look: <img src=x onerror="alert(1)"> <script>alert(2)</script>\n\n```python\nprint("<b>")\n```'
    page = anonymous_get(share(tab, conversation_with(tab, hostile))).text
    assert "<img src=x" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "<pre><code>print(&quot;&lt;b&gt;&quot;)</code></pre>" in page


def test_markdown_becomes_paragraphs_and_code_blocks():
    text = "One\nline two\n\nPara two\n```js\nlet a;\n\nlet b;\n```\nafter\n~~~\nunclosed"
    assert blocks(text) == [
        Block("text", "One\nline two"),
        Block("text", "Para two"),
        Block("code", "let a;\n\nlet b;"),
        Block("text", "after"),
        Block("code", "unclosed"),
    ]


def test_the_shared_page_needs_sign_in_where_the_chat_does(tab, settings):
    url = share(tab, conversation_with(tab, "members only"))
    settings.CHAT_LOGIN_REQUIRED = True
    response = anonymous_get(url)
    assert response.status_code == 302 and "login" in response.headers["Location"]


def test_the_share_url_follows_the_mount_prefix(server, settings):
    settings.ROOT_URLCONF = "tests.urls_mounted"
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        browser.get("/assistant/")
        headers = {"X-CSRFToken": browser.cookies["csrftoken"]}
        sent = browser.post("/assistant/api/conversations", json={"content": "hello"}, headers=headers).json()
        url = browser.post(f"/assistant/api/conversations/{sent['id']}/share", headers=headers).json()["url"]
    assert url.startswith(f"{server.url}/assistant/s/")
    assert anonymous_get(url).status_code == 200


def test_the_admin_lists_shares_and_revokes_one(tab, client, django_user_model):
    cid = conversation_with(tab, "public words")
    url = share(tab, cid)
    token = urlsplit(url).path.split("/")[-2]
    staff = django_user_model.objects.create_user("operator", is_staff=True, is_superuser=True)
    client.force_login(staff)
    listing = client.get("/admin/chat/share/")
    assert listing.status_code == 200 and f"/s/{token}/" in listing.content.decode()
    assert client.get(f"/admin/chat/share/{token}/change/").status_code == 200
    deleted = client.post(f"/admin/chat/share/{token}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert anonymous_get(url).status_code == 404


def test_the_shared_page_shows_the_current_branch_only(tab):
    sent = tab.send(script({"say": "old answer"}), model="script:fake")
    cid, question = sent["assistant_message"]["conversation_id"], sent["user_message"]["id"]
    tab.wait_finished(sent["assistant_message"]["id"], cid)
    edited = tab.send(script({"say": "new answer"}), conversation_id=cid, model="script:fake", edit=question)
    tab.wait_finished(edited["assistant_message"]["id"], cid)
    # (The title holds the first question, script and all: look at the replies' paragraphs.)
    page = anonymous_get(share(tab, cid)).text
    assert "<p>new answer</p>" in page and "<p>old answer</p>" not in page
    switched = tab.post(f"/api/conversations/{cid}/branch", json={"message_id": question})
    assert switched.status_code == 200, switched.text
    page = anonymous_get(share(tab, cid)).text
    assert "<p>old answer</p>" in page and "<p>new answer</p>" not in page
