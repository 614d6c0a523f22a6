"""Limits and quotas through the real server (../shared/API.md "Limits and quotas (429)").

tests/settings.py turns every limit off; each test here turns on the ones it is about, with a
key prefix of its own, so that it starts from fresh counts.
"""

import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from chat import conf
from chat.models import Conversation, Message
from chat.ratelimit.backends import Checks, MemoryBackend, Outcome
from chat.ratelimit.redis import RedisBackend
from chat.replies import generation
from tests.conftest import free_port
from tests.fakes import gate, script
from tests.sse_client import SSE, events, text_of

FAKE = "script:fake"
QUICK = script({"say": "ok"}, {"finish": "stop", "usage": [1, 1]})


class LimitsOnlyRedis(RedisBackend):
    """The environment's Redis (REDIS_URL) for the limits alone: the rest of the in-process
    server (its event log) stays in memory, as tests/settings.py has it."""

    @classmethod
    def from_settings(cls) -> "LimitsOnlyRedis":
        return cls(os.environ["REDIS_URL"], str(conf.get("CHAT_LIMITS_PREFIX")))


@pytest.fixture
def fresh(settings):
    """The settings, with every limit off and counts of this test's own (a fresh key prefix)."""
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    return settings


def refused(response: httpx.Response, limit: str) -> dict:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited" and body["limit"] == limit
    assert isinstance(body["retry_after"], int) and body["retry_after"] >= 1
    assert response.headers["Retry-After"] == str(body["retry_after"])
    assert body["error"].endswith(".") and len(body["error"]) > 20
    return body


def counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()


def send(tab, cid: str, content: str = QUICK, **headers) -> httpx.Response:
    return tab.post(f"/api/conversations/{cid}/messages", json={"content": content}, headers=headers)


def test_the_message_over_the_limit_is_refused_stores_nothing_and_passes_later(tab, lim):
    lim.CHAT_LIMIT_MESSAGES = "3/second"
    cid = tab.conversation(model=FAKE)["id"]
    for _ in range(3):
        assert send(tab, cid).status_code == 201
    before = counts()
    body = refused(send(tab, cid), "messages")
    assert "3 per second" in body["error"]
    assert counts() == before  # nothing stored
    # Honest: it passes once Retry-After has gone by (polled, a refused try counts nothing).
    deadline = time.monotonic() + body["retry_after"] + 0.5
    while (response := send(tab, cid)).status_code == 429:
        assert time.monotonic() < deadline, "still refused after Retry-After"
        time.sleep(0.05)
    assert response.status_code == 201
    assert counts()[1] == before[1] + 2


def test_two_visitors_have_separate_counts(new_tab, lim):
    lim.CHAT_LIMIT_MESSAGES = "2/day"
    first, second = new_tab(), new_tab()
    one, two = first.conversation(model=FAKE)["id"], second.conversation(model=FAKE)["id"]
    for _ in range(2):
        assert send(first, one).status_code == 201
    refused(send(first, one), "messages")
    for _ in range(2):
        assert send(second, two).status_code == 201
    refused(send(second, two), "messages")


def test_one_address_without_cookies_is_limited_by_address(server, lim):
    lim.CHAT_LIMIT_MESSAGES_IP = "3/day"
    visitors = set()
    for _ in range(3):  # a new visitor each time: no cookie is sent back
        response = httpx.post(
            f"{server.url}/api/conversations", json={"content": QUICK, "model": FAKE}, timeout=10
        )
        assert response.status_code == 201, response.text
        visitors.add(response.cookies.get("sessionid"))
    assert len(visitors) == 3
    before = counts()
    body = refused(
        httpx.post(f"{server.url}/api/conversations", json={"content": QUICK, "model": FAKE}, timeout=10),
        "messages_ip",
    )
    assert "network address" in body["error"]
    assert counts() == before  # no conversation either


def post_without_cookies(url: str, content: str, **headers: str) -> httpx.Response:
    """A first message from a client that keeps no cookie: a new visitor every time."""
    return httpx.post(
        f"{url}/api/conversations", json={"content": content, "model": FAKE}, headers=headers, timeout=10
    )


def follow(client: httpx.Client, message_id: str) -> list[SSE]:
    """A reply's events to its `done` (or `error`)."""
    received: list[SSE] = []
    with client.stream("GET", f"/api/messages/{message_id}/stream") as response:
        assert response.status_code == 200
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event in ("done", "error"):
                break
    return received


def streaming_replies() -> int:
    return Message.objects.filter(role="assistant", status=Message.Status.STREAMING).count()


def test_a_client_without_cookies_gets_one_visitors_replies_at_once(server, tab, lim, django_user_model):
    """Each request without cookies was a new visitor with 3 slots of its own: 8 sent at once
    from one address all generated. They share their address's count now, held to one visitor's 3;
    a visitor with a session at that address (a colleague behind the same NAT) still gets its own,
    within the address's share (four visitors' by default), and another address is untouched."""
    lim.CHAT_LIMIT_REPLIES = 3
    held = script({"gate": "cookieless"})
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post_without_cookies(server.url, held), range(8)))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * 5, [r.text for r in responses]
    for response in responses:
        if response.status_code == 429:
            body = refused(response, "replies_ip")
            assert "from your network address" in body["error"] and "3" in body["error"]
    assert streaming_replies() == 3  # generating at once
    cid = tab.conversation(model=FAKE)["id"]
    assert send(tab, cid, held).status_code == 201
    lim.CHAT_TRUSTED_PROXIES = ["127.0.0.0/8"]
    assert post_without_cookies(server.url, held, **{"X-Forwarded-For": "203.0.113.7"}).status_code == 201
    assert streaming_replies() == 5
    gate("cookieless").set()
    admin = admin_session(server, django_user_model)
    try:
        refusals = admin.get("/admin/chat/conversation/limits/").text
        assert "address <code>127.0.0.1</code>" in refusals and "replies at once per address" in refusals
    finally:
        admin.close()


def test_a_client_without_cookies_gets_one_visitors_token_quota(server, tab, lim):
    """Each request without cookies was a new visitor with a quota of its own: one address spent
    ten times the quota in seconds. Its address is charged too now: once it has spent one
    visitor's quota, a new visitor without a session is refused until the window renews."""
    lim.CHAT_QUOTA_TOKENS = "10/hour"
    twelve = script({"say": "x" * 48}, {"finish": "stop", "usage": [1, 12]})
    with httpx.Client(base_url=server.url, timeout=10) as first:  # sends no cookie: a new visitor
        response = first.post("/api/conversations", json={"content": twelve, "model": FAKE})
        assert response.status_code == 201, response.text
        reply = response.json()["assistant_message"]
        assert text_of(follow(first, reply["id"])) == "x" * 48  # to its end: charged
    before = counts()
    body = refused(post_without_cookies(server.url, QUICK), "tokens_ip")
    assert "from your network address" in body["error"] and "10" in body["error"]
    assert body["retry_after"] > 3000  # the address's window renews an hour after its first charge
    assert counts() == before
    # A visitor with a session has its own quota, within the address's (four visitors', 40).
    assert send(tab, tab.conversation(model=FAKE)["id"]).status_code == 201
    lim.CHAT_TRUSTED_PROXIES = ["127.0.0.0/8"]
    assert post_without_cookies(server.url, QUICK, **{"X-Forwarded-For": "203.0.113.7"}).status_code == 201


@pytest.mark.parametrize("limit", ["replies_ip", "tokens_ip"])
def test_visitors_with_sessions_share_their_address_limits(new_tab, lim, limit):
    """A client that collects sessions (a page load each) is held to its address's share."""
    lim.CHAT_LIMIT_REPLIES, lim.CHAT_LIMIT_REPLIES_IP = 1, 2
    lim.CHAT_QUOTA_TOKENS, lim.CHAT_QUOTA_TOKENS_IP = "10/day", "20/day"
    twelve = script({"say": "x" * 48}, {"finish": "stop", "usage": [1, 12]})
    held = script({"gate": "sessions"})
    for tab in (new_tab(), new_tab()):
        reply = tab.send(held if limit == "replies_ip" else twelve, tab.conversation(model=FAKE)["id"])
        if limit == "tokens_ip":
            assert text_of(tab.stream(reply["assistant_message"]["id"]))
    third = new_tab()
    body = refused(send(third, third.conversation(model=FAKE)["id"]), limit)
    assert "from your network address" in body["error"]
    gate("sessions").set()


def _replies(tab, cid: str, *scripts: str) -> list[dict]:
    return [tab.send(content, cid)["assistant_message"] for content in scripts]


def _end(ending: str, tab, server, reply: dict, name: str) -> None:
    if ending == "stop":
        assert tab.post(f"/api/messages/{reply['id']}/stop").json()["status"] == "stopped"
    elif ending == "interrupted":  # what a server shutdown does to every reply in flight
        server.call(generation.interrupt_all())
    else:
        gate(name).set()
    assert tab.wait_finished(reply["id"], reply["conversation_id"])["status"] != "streaming"


@pytest.mark.parametrize(
    "ending, steps, status",
    [
        ("complete", [{"say": "a"}, {"gate": "end"}, {"finish": "stop"}], "complete"),
        ("stop", [{"say": "a"}, {"gate": "never"}], "stopped"),
        ("error", [{"say": "a"}, {"gate": "end"}, {"fail": "The model broke."}], "error"),
        ("interrupted", [{"say": "a"}, {"gate": "never"}], "interrupted"),
    ],
)
def test_the_fourth_reply_at_once_is_refused_until_one_ends(tab, server, lim, ending, steps, status):
    lim.CHAT_LIMIT_REPLIES = 3
    cid = tab.conversation(model=FAKE)["id"]
    held = script({"gate": "hold"})
    replies = _replies(tab, cid, script(*steps), held, held)
    before = counts()
    body = refused(send(tab, cid, held), "replies")
    assert "3 replies" in body["error"]
    assert counts() == before
    _end(ending, tab, server, replies[0], "end")
    assert tab.message(replies[0]["id"], cid)["status"] == status
    assert send(tab, cid, QUICK).status_code == 201


def test_a_refused_edit_or_regenerate_changes_nothing(tab, lim):
    cid = tab.conversation(model=FAKE)["id"]
    first = tab.send(QUICK, cid)
    tab.wait_finished(first["assistant_message"]["id"], cid)
    lim.CHAT_LIMIT_MESSAGES = "1/day"
    assert send(tab, cid).status_code == 201
    stored = tab.get(f"/api/conversations/{cid}").json()["messages"]
    edit = {"content": QUICK, "edit": stored[-2]["id"]}
    refused(tab.post(f"/api/conversations/{cid}/messages", json=edit), "messages")
    refused(tab.post(f"/api/conversations/{cid}/regenerate", json={}), "messages")
    assert [m["id"] for m in tab.get(f"/api/conversations/{cid}").json()["messages"]] == [
        m["id"] for m in stored
    ]


@pytest.mark.parametrize("usage", [[2, 12], None], ids=["reported", "estimated"])
def test_the_token_quota_refuses_the_next_send_after_a_reply_crosses_it(tab, lim, usage):
    lim.CHAT_QUOTA_TOKENS = "10/day"
    cid = tab.conversation(model=FAKE)["id"]
    # Reported: 12 output tokens. Estimated (no usage from the model): 48 characters, 12 tokens.
    crossing = script({"say": "x" * 48}, {"finish": "stop", **({"usage": usage} if usage else {})})
    sent = tab.send(crossing, cid)
    received = tab.stream(sent["assistant_message"]["id"])
    assert received[-1].event == "done" and text_of(received) == "x" * 48  # it finishes
    before = counts()
    body = refused(send(tab, cid), "tokens")
    assert body["retry_after"] > 3600  # a daily quota renews a day after its first use
    assert "10 per day" in body["error"]
    assert counts() == before


@pytest.mark.parametrize("titles", [True, False], ids=["titled-by-the-model", "no-title-request"])
def test_the_models_title_counts_against_the_token_quota(tab, new_tab, lim, titles):
    """The title a real model writes for a new conversation is tokens it answered with: they
    count as a reply's do, for its owner and its address. Here the fake model answers the
    title request with the same script, 12 tokens, so the reply and its title cross a quota of
    20 that the reply alone does not."""
    from chat import titles as chat_titles

    lim.CHAT_QUOTA_TOKENS = lim.CHAT_QUOTA_TOKENS_IP = "20/day"
    lim.CHAT_TITLE_BY_MODEL = titles
    twelve = script({"say": "x" * 48}, {"finish": "stop", "usage": [1, 12]})
    sent = tab.send(twelve, tab.conversation(model=FAKE)["id"])
    assert text_of(tab.stream(sent["assistant_message"]["id"]))
    deadline = time.monotonic() + 10
    while chat_titles.title_tasks() and time.monotonic() < deadline:  # the title asked, and done
        time.sleep(0.02)
    assert not chat_titles.title_tasks()
    cid = tab.conversation(model=FAKE)["id"]
    other = new_tab()  # another visitor at the same address
    if titles:
        refused(send(tab, cid), "tokens")
        refused(send(other, other.conversation(model=FAKE)["id"]), "tokens_ip")
    else:
        assert send(tab, cid).status_code == 201
        assert send(other, other.conversation(model=FAKE)["id"]).status_code == 201


def test_streams_at_once_per_address(tab, server, lim):
    lim.CHAT_LIMIT_STREAMS_IP = 2
    cid = tab.conversation(model=FAKE)["id"]
    reply = tab.send(script({"say": "a"}, {"gate": "streams"}, {"finish": "stop"}), cid)["assistant_message"]
    url = f"{server.url}/api/messages/{reply['id']}/stream"
    with httpx.Client(timeout=10) as a, httpx.Client(timeout=10) as b:
        a.cookies, b.cookies = tab.http.cookies, tab.http.cookies
        with a.stream("GET", url) as first, b.stream("GET", url) as second:
            assert first.status_code == second.status_code == 200
            refused(tab.get(f"/api/messages/{reply['id']}/stream"), "streams_ip")
            before = counts()
            post = {"Accept": "text/event-stream"}
            refused(send(tab, cid, QUICK, **post), "streams_ip")  # a send that streams opens one too
            assert counts() == before
    # Both closed: their slots are free again.
    deadline = time.monotonic() + 5
    while True:
        with tab.http.stream("GET", f"/api/messages/{reply['id']}/stream") as response:
            if response.status_code == 200:
                break
        assert response.status_code == 429 and time.monotonic() < deadline
        time.sleep(0.02)
    gate("streams").set()


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(server, lim):
    lim.CHAT_LIMIT_MESSAGES_IP = "1/day"

    def post(forwarded: str) -> httpx.Response:
        headers = {"X-Forwarded-For": forwarded}
        return httpx.post(
            f"{server.url}/api/conversations", json={"content": QUICK, "model": FAKE}, headers=headers
        )

    # Nobody is trusted: the header is anybody's to write, and the peer is the client.
    assert post("203.0.113.7").status_code == 201
    refused(post("203.0.113.8"), "messages_ip")
    lim.CHAT_LIMITS_PREFIX += "-proxied"
    lim.CHAT_TRUSTED_PROXIES = ["127.0.0.0/8"]
    assert post("203.0.113.7").status_code == 201
    assert post("203.0.113.8").status_code == 201  # another client behind the same proxy
    refused(post("203.0.113.7"), "messages_ip")
    # The client may write anything on the left; the first hop the proxy did not add counts.
    assert post("198.51.100.1, 203.0.113.9").status_code == 201
    refused(post("198.51.100.2, 203.0.113.9"), "messages_ip")


def test_limits_on_by_default_allow_an_ordinary_conversation(tab, settings):
    """The contract's defaults (30 messages a minute, 3 replies at once ...) in force."""
    for name in ("MESSAGES", "MESSAGES_IP", "REPLIES", "STREAMS_IP"):
        delattr(settings, f"CHAT_LIMIT_{name}")
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    cid = tab.conversation(model=FAKE)["id"]
    for _ in range(3):
        reply = tab.send(QUICK, cid)["assistant_message"]
        received = tab.stream(reply["id"])
        assert received[-1].event == "done"
    held = script({"gate": "default-hold"})
    for _ in range(3):
        tab.send(held, cid)
    refused(send(tab, cid, held), "replies")
    gate("default-hold").set()


def admin_session(server, django_user_model) -> httpx.Client:
    django_user_model.objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    client = httpx.Client(base_url=server.url, timeout=10)
    client.get("/admin/login/")
    form = {"username": "operator", "password": "pw", "csrfmiddlewaretoken": client.cookies["csrftoken"]}
    assert client.post("/admin/login/?next=/admin/", data=form).status_code == 302
    return client


def test_the_admin_shows_an_owners_usage_and_who_is_refused(tab, server, lim, django_user_model):
    lim.CHAT_LIMIT_MESSAGES, lim.CHAT_QUOTA_TOKENS, lim.CHAT_LIMIT_REPLIES = "2/day", "100/day", 3
    cid = tab.conversation(model=FAKE)["id"]
    for _ in range(2):
        tab.stream(tab.send(QUICK, cid)["assistant_message"]["id"])  # 1 output token each
    refused(send(tab, cid), "messages")
    admin = admin_session(server, django_user_model)
    try:
        page = admin.get(f"/admin/chat/conversation/{cid}/change/").text
        assert "Messages: 2 of 2 per day" in page
        assert "Output tokens: 2 of 100 per day, renews in" in page
        assert "Replies generating: 0 of 3 at once" in page
        refusals = admin.get("/admin/chat/conversation/limits/").text
        assert "anonymous visitor" in refusals and "messages per person" in refusals
        assert "Limits: who is refused" in admin.get("/admin/chat/conversation/").text
    finally:
        admin.close()


# --- a storage out of reach lets requests through; a bug fails them (CHAT_LIMITS_BACKEND) ----


class UnreachableRedis(RedisBackend):
    """Redis where nothing listens: every call is refused a connection, as when Redis is down."""

    @classmethod
    def from_settings(cls) -> "UnreachableRedis":
        return cls(f"redis://127.0.0.1:{free_port()}/0", "unreachable", socket_connect_timeout=2)


class Buggy(MemoryBackend):
    """A backend with a bug: what a renamed attribute of a library it calls would give."""

    async def check(self, checks: Checks) -> Outcome:
        return await self.storage.acquire_sliding_window_entry(checks)  # no such attribute


def test_limits_whose_storage_is_out_of_reach_let_requests_through_and_say_so(tab, fresh, caplog):
    fresh.CHAT_LIMITS_BACKEND = "tests.test_limits.UnreachableRedis"
    fresh.CHAT_LIMIT_MESSAGES, fresh.CHAT_LIMIT_REPLIES, fresh.CHAT_QUOTA_TOKENS = "1/day", 1, "1/day"
    cid = tab.conversation(model=FAKE)["id"]
    with caplog.at_level(logging.WARNING, logger="chat.ratelimit"):
        for _ in range(3):  # each past every limit, were they counted
            reply = tab.send(QUICK, cid)["assistant_message"]
            assert tab.stream(reply["id"])[-1].event == "done"
    warnings = [r.getMessage() for r in caplog.records if r.name == "chat.ratelimit"]
    assert len(warnings) == 1, warnings  # at most one every 30 s
    assert "ConnectionError" in warnings[0] and "let through" in warnings[0]


def test_limits_that_fail_with_a_bug_fail_the_send_and_start_no_reply(tab, fresh):
    """Only the storage's own outage lets requests through: any other error is a 500, never a
    limit that turned itself off."""
    fresh.CHAT_LIMITS_BACKEND = "tests.test_limits.Buggy"
    fresh.CHAT_LIMIT_REPLIES = 3
    cid = tab.conversation(model=FAKE)["id"]
    before = counts()
    response = send(tab, cid)
    assert response.status_code == 500, response.text
    assert response.json()["code"] == "internal_error"
    assert counts() == before  # no message stored, no reply started
    assert tab.get(f"/api/conversations/{cid}").json()["messages"] == []
