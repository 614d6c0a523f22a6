"""Clearer answers (issue 32): a lookup without a session says so, never whether the id exists;
the CSRF 403 says how a script gets the token. Against the real server."""

import uuid

import httpx
import pytest

from tests.fakes import script
from tests.test_api import assert_error

LOOKUPS = [
    ("GET", "/api/messages/{reply}/stream", "reply"),
    ("GET", "/api/messages/{reply}", "message"),
    ("POST", "/api/messages/{reply}/stop", "reply"),
    ("POST", "/api/messages/{reply}/feedback", "message"),
    ("GET", "/api/conversations/{conversation}", "conversation"),
    ("DELETE", "/api/conversations/{conversation}", "conversation"),
    ("POST", "/api/conversations/{conversation}/messages", "conversation"),
]


@pytest.fixture
def reply(tab) -> dict:
    sent = tab.send(script({"say": "Mine"}, {"finish": "stop"}), model="script:fake")["assistant_message"]
    return tab.wait_finished(sent["id"], sent["conversation_id"])


def ask(client: httpx.Client, method: str, path: str) -> httpx.Response:
    body = {"rating": 1} if path.endswith("feedback") else {"content": "Hi"}
    return client.request(method, path, json=None if method in ("GET", "DELETE") else body)


def answers(server, method: str, path: str, ids: dict, cookies: dict) -> list[dict]:
    """The bodies for the real ids, for unknown ones and for ids that are not ids at all."""
    bodies = []
    for values in (ids, {k: str(uuid.uuid4()) for k in ids}, dict.fromkeys(ids, "not-an-id")):
        with httpx.Client(base_url=server.url, cookies=cookies) as client:
            bodies.append(assert_error(ask(client, method, path.format(**values)), 404, "not_found"))
    return bodies


@pytest.mark.parametrize(("method", "path", "what"), LOOKUPS)
def test_a_lookup_without_a_session_cookie_says_so_whether_or_not_the_id_exists(
    server, reply, method, path, what
):
    ids = {"reply": reply["id"], "conversation": reply["conversation_id"]}
    bodies = answers(server, method, path, ids, cookies={})
    assert bodies[0] == bodies[1] == bodies[2]  # nothing tells an existing id from another
    assert bodies[0]["error"] == (
        f"No {what} with this id in this session: the request carried no session cookie "
        "(send the cookie the page set, or sign in)."
    )


def test_a_lookup_with_an_unknown_session_cookie_says_it_is_new_or_expired(server, reply):
    ids = {"reply": reply["id"], "conversation": reply["conversation_id"]}
    bodies = answers(server, "GET", "/api/messages/{reply}/stream", ids, cookies={"sessionid": "expired"})
    assert bodies[0] == bodies[1] == bodies[2]
    assert "the session cookie it carried is new or has expired" in bodies[0]["error"]


def test_another_visitors_lookup_keeps_the_plain_not_found(new_tab, reply):
    """A visitor with a session of its own asks for someone else's reply: the usual 404, as
    for an id that does not exist (its cookie is there: nothing is missing)."""
    other = new_tab()
    mine = assert_error(other.get(f"/api/messages/{reply['id']}"), 404, "not_found")
    unknown = str(uuid.uuid4())
    theirs = assert_error(other.get(f"/api/messages/{unknown}"), 404, "not_found")
    assert mine["error"] == f"No message with id {reply['id']}."
    assert theirs["error"] == f"No message with id {unknown}."


def test_the_csrf_403_says_how_a_script_gets_the_token_and_following_it_works(server):
    with httpx.Client(base_url=server.url) as client:
        first = client.post("/api/conversations", json={})  # no cookies: a new visitor
        assert first.status_code == 201 and "csrftoken" not in client.cookies
        refused = assert_error(client.post("/api/conversations", json={}), 403, "csrf")
        assert refused["error"] == (
            "This request needs the CSRF token: GET the chat's page (/) to receive the csrftoken "
            "cookie, then send its value back in an X-CSRFToken header, with the cookies "
            "(over HTTPS, also a Referer or Origin header of this site)."
        )
        client.get("/")  # as the sentence says
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        assert client.post("/api/conversations", json={}, headers=headers).status_code == 201


def test_the_csrf_403_names_the_sites_own_cookie_and_header(server, settings):
    settings.CSRF_COOKIE_NAME = "site_csrf"
    settings.CSRF_HEADER_NAME = "HTTP_X_SITE_TOKEN"
    with httpx.Client(base_url=server.url) as client:
        client.get("/")
        refused = assert_error(client.post("/api/conversations", json={}), 403, "csrf")
        assert "the site_csrf cookie" in refused["error"] and "an X-Site-Token header" in refused["error"]
        headers = {"X-Site-Token": client.cookies["site_csrf"]}
        assert client.post("/api/conversations", json={}, headers=headers).status_code == 201
