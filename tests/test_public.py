"""Open to the public (contract v2): cross-site requests, one visitor per browser, hostile input,
and a reply the database refuses, against a real server on SQLite and on PostgreSQL."""

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from django.db import connection

from chat.models import Conversation, Message
from tests.conftest import free_port
from tests.fakes import gate, script
from tests.processes import PYTHON, ServerProcess, migrate, server_env
from tests.sse_client import events, text_of
from tests.vendor_servers import VendorServer

EVIL = "https://evil.example"
ALLOWED = "https://friend.example"


def stored_counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()


def assert_refused(response: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and mentions in body["error"], body
    assert "set-cookie" not in response.headers


# --- cross-site requests ------------------------------------------------------------------

FORGED = [
    pytest.param({"Origin": EVIL}, id="origin"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
    pytest.param({"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, id="both"),
    pytest.param({"Origin": "null"}, id="opaque-origin"),
    pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site"),
]


@pytest.mark.parametrize("headers", FORGED)
def test_a_cross_site_form_without_cookies_is_refused_and_sets_no_cookie(server, headers):
    """A form on another site posting text/plain that looks like JSON: no cookie under SameSite=Lax."""
    body = json.dumps({"content": "hi", "system_prompt": "planted"}) + "="
    with httpx.Client(base_url=server.url) as browser:
        response = browser.post(
            "/api/conversations", content=body, headers={"Content-Type": "text/plain", **headers}
        )
    assert_refused(response, 403, "csrf", "another site")
    assert stored_counts() == (0, 0)


@pytest.mark.parametrize("headers", FORGED)
def test_cross_site_writes_with_the_visitors_cookies_are_refused(tab, headers):
    sent = tab.send("mine")
    cid, mid = sent["assistant_message"]["conversation_id"], sent["assistant_message"]["id"]
    before = stored_counts()
    attempts = [
        tab.post("/api/conversations", json={"system_prompt": "planted"}, headers=headers),
        tab.post(f"/api/conversations/{cid}/messages", json={"content": "x"}, headers=headers),
        tab.post(f"/api/conversations/{cid}/regenerate", headers=headers),
        tab.post(f"/api/conversations/{cid}/branch", json={"message_id": mid}, headers=headers),
        tab.post(f"/api/messages/{mid}/stop", headers=headers),
        tab.http.patch(f"/api/conversations/{cid}", json={"title": "x"}, headers={**tab.csrf, **headers}),
        tab.http.delete(f"/api/conversations/{cid}", headers={**tab.csrf, **headers}),
    ]
    for response in attempts:
        assert_refused(response, 403, "csrf")
    assert stored_counts() == before
    assert tab.get(f"/api/conversations/{cid}").json()["title"] == "mine"


def test_the_pages_own_requests_pass_with_their_browser_headers(tab):
    own = {"Origin": tab.http.base_url.scheme + "://" + tab.http.base_url.netloc.decode()}
    response = tab.post("/api/conversations", json={}, headers={**own, "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 201, response.text
    # A typed address or a bookmark: `none`.
    assert tab.post("/api/conversations", json={}, headers={"Sec-Fetch-Site": "none"}).status_code == 201


def test_an_allowed_origin_may_write_with_cors_headers(server, settings):
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.partner.example"]
    with httpx.Client(base_url=server.url) as client:
        for origin in (ALLOWED, "https://app.partner.example"):
            response = client.post(
                "/api/conversations",
                json={"title": "from a friend"},
                headers={"Origin": origin, "Sec-Fetch-Site": "cross-site"},
            )
            assert response.status_code == 201, response.text
            if origin == ALLOWED:
                assert response.headers["access-control-allow-origin"] == ALLOWED
                assert response.headers["access-control-allow-credentials"] == "true"
            client.cookies.clear()
        refused = client.post("/api/conversations", json={}, headers={"Origin": "https://partner.example"})
    assert_refused(refused, 403, "csrf")


def test_curl_needs_no_token_for_its_first_request(server):
    response = httpx.post(f"{server.url}/api/conversations", json={"content": "hello"})
    assert response.status_code == 201, response.text
    assert "sessionid" in response.cookies


def test_a_cross_site_post_to_the_admin_login_is_refused(server):
    response = httpx.post(
        f"{server.url}/admin/login/",
        data={"username": "x", "password": "y"},
        headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403


# --- one visitor per browser ----------------------------------------------------------------


def test_the_page_gives_a_visitor_at_once(server):
    with httpx.Client(base_url=server.url) as browser:
        page = browser.get("/")
        assert {"sessionid", "csrftoken"} <= set(page.cookies)


def test_parallel_first_requests_after_the_page_are_one_visitor(server):
    with httpx.Client(base_url=server.url, timeout=20) as browser:
        browser.get("/")
        headers = {"X-CSRFToken": browser.cookies["csrftoken"]}

        def create(i: int) -> httpx.Response:
            return browser.post("/api/conversations", json={"title": f"tab {i}"}, headers=headers)

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(create, range(20)))
        assert [r.status_code for r in responses] == [201] * 20
        assert all("sessionid" not in r.cookies for r in responses)  # nobody replaced the session
        listed = browser.get("/api/conversations").json()["conversations"]
        assert len(listed) == 20
        for response in responses:  # every tab's conversation answers in every other tab
            assert browser.get(f"/api/conversations/{response.json()['id']}").status_code == 200
    assert Conversation.objects.values("visitor").distinct().count() == 1


def test_a_failed_first_request_makes_no_visitor(server):
    response = httpx.post(f"{server.url}/api/conversations", json={"content": ""})
    assert_refused(response, 400, "invalid")


# --- hostile input --------------------------------------------------------------------------

HOSTILE = [pytest.param("a\x00b", "U+0000", id="nul"), pytest.param("a\ud800b", "U+D800", id="surrogate")]


def raw_json(data: dict) -> bytes:
    """JSON as a client may send it: lone surrogates as \\u escapes (valid JSON text)."""
    return json.dumps(data).encode()


def hostile_requests(cid: str, user_message_id: str, bad: str) -> list[tuple[str, str, dict, str]]:
    return [
        ("POST", "/api/conversations", {"title": bad}, "title"),
        ("POST", "/api/conversations", {"system_prompt": bad}, "system_prompt"),
        ("POST", "/api/conversations", {"model": bad}, "model"),
        ("POST", "/api/conversations", {"content": bad}, "content"),
        ("POST", "/api/conversations", {"content": "fine", "title": bad}, "title"),
        ("POST", "/api/conversations", {"content": "fine", "system_prompt": bad}, "system_prompt"),
        ("POST", f"/api/conversations/{cid}/messages", {"content": bad}, "content"),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "fine", "model": bad}, "model"),
        ("POST", f"/api/conversations/{cid}/messages", {"content": bad, "edit": user_message_id}, "content"),
        ("POST", f"/api/conversations/{cid}/regenerate", {"model": bad}, "model"),
        ("PATCH", f"/api/conversations/{cid}", {"title": bad}, "title"),
    ]


def check_hostile_input(http: httpx.Client, headers: dict, bad: str, mentions: str, counts) -> None:
    created = http.post("/api/conversations", json={"content": "first"}, headers=headers).json()
    cid, user_id = created["id"], created["user_message"]["id"]
    before = counts()
    for method, path, body, field in hostile_requests(cid, user_id, bad):
        response = http.request(
            method, path, content=raw_json(body), headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, (method, path, body, response.text)
        error = response.json()
        assert error["code"] == "invalid" and f"'{field}'" in error["error"] and mentions in error["error"]
        assert counts() == before, (method, path, body)
    assert http.get(f"/api/conversations/{cid}").json()["title"] == "first"
    deep = b'{"content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = http.post("/api/conversations", content=deep, headers=headers)
    assert response.status_code == 400 and response.json()["code"] == "invalid", response.text
    assert "nested" in response.json()["error"]
    assert counts() == before


@pytest.mark.parametrize(("bad", "mentions"), HOSTILE)
def test_hostile_text_in_every_field_is_a_400_that_stores_nothing(tab, bad, mentions):
    check_hostile_input(tab.http, tab.csrf, bad, mentions, stored_counts)


def test_a_create_and_send_that_fails_leaves_no_conversation(tab, settings):
    settings.CHAT_MODELS = [*settings.CHAT_MODELS, "openai:not-configured"]
    response = tab.post("/api/conversations", json={"content": "hi", "model": "openai:not-configured"})
    assert_refused(response, 503, "unavailable")
    response = tab.post("/api/conversations", json={"content": "hi", "model": "nope"})
    assert_refused(response, 400, "invalid")
    assert stored_counts() == (0, 0)


def test_model_text_with_nul_and_lone_surrogates_streams_and_is_stored_cleaned(tab):
    steps = ({"say": "a\x00b"}, {"say": "\ud800c"}, {"say": "\x00"}, {"say": "d\udfff"})
    sent = tab.send(script(*steps), model="script:fake")
    reply = sent["assistant_message"]
    received = tab.stream(reply["id"])
    assert received[-1].event == "done"
    assert text_of(received) == "ab\ufffdcd\ufffd"
    assert [int(e.id) for e in received if e.event == "message"][-1] == len("ab\ufffdcd\ufffd")
    assert tab.message(reply["id"], reply["conversation_id"])["content"] == "ab\ufffdcd\ufffd"


# --- one reply the database refuses --------------------------------------------------------


POISON_SQLITE = [
    "CREATE TRIGGER refuse_poison BEFORE UPDATE OF content ON chat_message "
    "WHEN NEW.content LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned text'); END"
]
POISON_POSTGRES = [
    "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
    "IF NEW.content LIKE '%poison%' THEN "
    "RAISE EXCEPTION 'poisoned text' USING ERRCODE = 'data_exception'; END IF; "
    "RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER refuse_poison BEFORE UPDATE OF content ON chat_message "
    "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
]
"""A trigger that makes the database refuse a reply's text containing 'poison', as PostgreSQL
refused U+0000 (a `DataError`)."""


@pytest.fixture
def poison_trigger(transactional_db):
    with connection.cursor() as cursor:
        for statement in POISON_SQLITE:
            cursor.execute(statement)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS refuse_poison")


def test_a_reply_the_database_refuses_never_holds_up_the_others(server, tab, poison_trigger):
    clean = tab.send(
        script({"say": "clean one."}, {"gate": "go"}, {"say": " clean two."}), model="script:fake"
    )
    bad = tab.send(
        script({"say": "poison"}, {"gate": "go"}, {"say": " more"}, {"finish": "stop"}), model="script:fake"
    )
    clean_id = clean["assistant_message"]["id"]
    # The clean reply's checkpoint lands although the batch it shares with the bad one fails.
    wait_until(lambda: Message.objects.filter(pk=clean_id, content="clean one.").exists())
    gate("go").set()
    clean_done = tab.wait_finished(clean_id, clean["assistant_message"]["conversation_id"])
    assert (clean_done["status"], clean_done["content"]) == ("complete", "clean one. clean two.")
    bad_done = tab.wait_finished(bad["assistant_message"]["id"], bad["assistant_message"]["conversation_id"])
    # Its end is kept (status, finish, usage); its text could not be, and the log holds it.
    assert bad_done["status"] == "complete" and bad_done["finish_reason"] == "stop"
    assert bad_done["content"] == ""


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the same on PostgreSQL, through a uvicorn process ----------------------------------------


@pytest.fixture
def postgres_server(postgres_database):
    database, _, _ = postgres_database
    env = server_env(database)
    migrate(env)
    with VendorServer("openai") as vendor:
        port = free_port()
        command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
        env.update(
            OPENAI_BASE_URL=f"{vendor.url}/v1",
            CHAT_MODELS="demo,openai:gpt-test",
            CHAT_MODEL="demo",
            CHAT_CHECKPOINT_INTERVAL="0.1",
            CHAT_DEMO_RATE="0",
        )
        server = ServerProcess(command, env, port).start()
        try:
            yield server, vendor, postgres_database
        finally:
            server.stop()


class Postgres:
    """Direct reads and writes on the server's PostgreSQL database, beside the server."""

    def __init__(self, admin, name: str) -> None:
        self.conn = psycopg.connect(admin.info.dsn, dbname=name, autocommit=True)

    def counts(self) -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("chat_conversation", "chat_message")
        )

    def content(self, message_id: str) -> str:
        return self.conn.execute("SELECT content FROM chat_message WHERE id = %s", [message_id]).fetchone()[0]


@contextmanager
def browser(url: str) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with httpx.Client(base_url=url, timeout=20) as http:
        http.get("/")
        yield http, {"X-CSRFToken": http.cookies["csrftoken"]}


def start_replies(http: httpx.Client, headers: dict, count: int) -> list[dict]:
    replies = []
    for _ in range(count):
        body = {"content": "go", "model": "openai:gpt-test"}
        response = http.post("/api/conversations", json=body, headers=headers)
        assert response.status_code == 201, response.text
        replies.append(response.json()["assistant_message"])
    return replies


def follow(http: httpx.Client, reply: dict) -> tuple[list, dict]:
    with http.stream("GET", f"/api/messages/{reply['id']}/stream") as response:
        received = list(events(response.iter_lines()))
    stored = http.get(f"/api/conversations/{reply['conversation_id']}").json()["messages"][-1]
    return received, stored


@pytest.mark.parametrize(("bad", "mentions"), HOSTILE)
def test_hostile_text_is_a_400_that_stores_nothing_on_postgres(postgres_server, bad, mentions):
    server, _, (_, name, admin) = postgres_server
    with browser(server.url) as (http, headers):
        check_hostile_input(http, headers, bad, mentions, Postgres(admin, name).counts)


def test_a_model_emitting_nul_and_surrogates_beside_a_clean_reply_both_saved_on_postgres(postgres_server):
    server, vendor, (_, name, admin) = postgres_server
    database = Postgres(admin, name)
    vendor.play({"say": "dirty\x00 one"}, {"gate": "go"}, {"say": " \ud800two\x00"}, {"finish": "stop"})
    vendor.play({"say": "clean one"}, {"gate": "go"}, {"say": " clean two"}, {"finish": "stop"})
    with browser(server.url) as (http, headers):
        dirty, clean = start_replies(http, headers, 2)
        # Checkpoints with the cleaned text in flight, beside the clean reply's.
        wait_until(lambda: database.content(dirty["id"]) == "dirty one")
        wait_until(lambda: database.content(clean["id"]) == "clean one")
        vendor.gate("go").set()
        for reply, expected in ((dirty, "dirty one \ufffdtwo"), (clean, "clean one clean two")):
            received, stored = follow(http, reply)
            assert received[-1].event == "done" and received[-1].json["status"] == "complete"
            assert text_of(received) == expected
            assert (stored["status"], stored["content"]) == ("complete", expected)
    assert "Traceback" not in server.output, server.output


def test_a_reply_postgres_refuses_never_holds_up_the_others(postgres_server):
    server, vendor, (_, name, admin) = postgres_server
    database = Postgres(admin, name)
    for statement in POISON_POSTGRES:
        database.conn.execute(statement)
    vendor.play({"say": "poison"}, {"gate": "go"}, {"say": " more"}, {"finish": "stop"})
    vendor.play({"say": "clean one"}, {"gate": "go"}, {"say": " clean two"}, {"finish": "stop"})
    with browser(server.url) as (http, headers):
        bad, clean = start_replies(http, headers, 2)
        wait_until(lambda: database.content(clean["id"]) == "clean one")
        vendor.gate("go").set()
        received, stored = follow(http, clean)
        assert text_of(received) == stored["content"] == "clean one clean two"
        _, stored = follow(http, bad)
        # The database kept its end; its text, which it refused, is in the server's log.
        assert (stored["status"], stored["finish_reason"], stored["content"]) == ("complete", "stop", "")
    assert "poisoned text" in server.output and "'poison more'" in server.output
