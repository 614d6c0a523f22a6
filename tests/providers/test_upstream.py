"""Upstream failures, stops and disconnects, end to end: page client -> app -> real SDK -> fake vendor.

Each test runs against both vendors' wire formats.
"""

import time

import pytest

from chat.models import Message
from chat.providers.upstream import redact
from tests.conftest import ANTHROPIC_TEST_KEY, OPENAI_TEST_KEY
from tests.sse_client import events, text_of

MODELS = {"openai": "openai:gpt-test", "anthropic": "anthropic:claude-test"}


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request, server):
    vendor = request.getfixturevalue(f"{request.param}_vendor")
    vendor.model_id = MODELS[request.param]
    return vendor


def send(tab, vendor, content="Hi") -> tuple[str, str]:
    sent = tab.send(content, model=vendor.model_id)
    return sent["assistant_message"]["id"], sent["assistant_message"]["conversation_id"]


def test_a_normal_reply_is_streamed_and_stored_with_usage(tab, vendor):
    vendor.play({"say": "Hello"}, {"say": ", world"}, {"finish": "stop", "usage": [9, 2]})
    mid, cid = send(tab, vendor)
    received = tab.stream(mid)
    assert text_of(received) == "Hello, world"
    assert received[-1].event == "done"
    assert received[-1].json == {
        "message_id": mid,
        "status": "complete",
        "finish_reason": "stop",
        "usage": {"input_tokens": 9, "output_tokens": 2},
    }
    stored = tab.wait_finished(mid, cid)
    assert (stored["content"], stored["model"], stored["usage"]) == (
        "Hello, world",
        vendor.model_id,
        {"input_tokens": 9, "output_tokens": 2},
    )


def test_history_and_system_prompt_are_sent_upstream(tab, vendor):
    conversation = tab.conversation(system_prompt="Answer in French.", model=vendor.model_id)
    vendor.play({"say": "Bonjour"})
    first = tab.send("Hello", conversation["id"])
    tab.wait_finished(first["assistant_message"]["id"], conversation["id"])
    tab.send("How are you?", conversation["id"])
    deadline = time.monotonic() + 5
    while len(vendor.completions()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    body = vendor.completions()[-1].body
    history = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "How are you?"},
    ]
    if "system" in body:  # Anthropic: a field of its own
        assert (body["system"], body["messages"]) == ("Answer in French.", history)
    else:
        assert body["messages"] == [{"role": "system", "content": "Answer in French."}, *history]


SENTENCES = {
    401: ("auth", "refused this server's credentials"),
    404: ("model_not_found", "does not know the model"),
    429: ("rate_limited", "rate limiting"),
    500: ("upstream_unavailable", "having trouble"),
}


@pytest.mark.parametrize("status", sorted(SENTENCES))
def test_an_upstream_error_before_the_first_token_is_an_error_event(tab, vendor, status):
    vendor.play({"status": status})
    mid, cid = send(tab, vendor)
    received = tab.stream(mid)
    code, words = SENTENCES[status]
    assert received[-1].event == "error"
    assert received[-1].json["code"] == code
    assert words in received[-1].json["error"] and f"HTTP {status}" in received[-1].json["error"]
    stored = tab.wait_finished(mid, cid)
    assert (stored["status"], stored["content"], stored["error"]) == ("error", "", received[-1].json["error"])


def test_a_rejected_key_reaches_no_page_and_no_database(tab, vendor, caplog):
    vendor.play({"status": 401})  # the fake vendor quotes the key it got, as OpenAI does
    mid, cid = send(tab, vendor)
    page = tab.get(f"/api/messages/{mid}/stream").text + tab.get(f"/api/conversations/{cid}").text
    assert "OPENAI_API_KEY" in page or "ANTHROPIC_API_KEY" in page
    stored = Message.objects.get(pk=mid)
    for key in (OPENAI_TEST_KEY, ANTHROPIC_TEST_KEY, "0123456789"):
        assert key not in page
        assert key not in f"{stored.error} {stored.error_code} {stored.content}"
        assert key not in caplog.text
    assert "HTTP 401" in caplog.text  # the operator still learns what happened


def test_a_connection_dropped_mid_reply_keeps_the_partial_text(tab, vendor):
    vendor.play({"say": "Half a "}, {"say": "sentence"}, {"drop": True})
    mid, cid = send(tab, vendor)
    received = tab.stream(mid)
    assert text_of(received) == "Half a sentence"
    assert received[-1].event == "error" and received[-1].json["code"] == "connection_lost"
    stored = tab.wait_finished(mid, cid)
    assert (stored["status"], stored["content"]) == ("error", "Half a sentence")


def test_an_error_event_inside_the_stream_keeps_the_partial_text(tab, vendor):
    vendor.play({"say": "So far"}, {"error": "overloaded"})
    mid, cid = send(tab, vendor)
    received = tab.stream(mid)
    assert received[-1].event == "error" and received[-1].json["code"] == "upstream_error"
    assert "in the middle of the reply" in received[-1].json["error"]
    assert tab.wait_finished(mid, cid)["content"] == "So far"


def test_an_upstream_that_goes_silent_times_out(tab, vendor, settings):
    settings.CHAT_UPSTREAM_TIMEOUT = 0.3
    vendor.play({"say": "Before the silence"}, {"gate": "never"})
    mid, cid = send(tab, vendor)
    started = time.monotonic()
    received = tab.stream(mid)
    assert received[-1].event == "error" and received[-1].json["code"] == "timeout"
    assert "0.3 seconds" in received[-1].json["error"]
    assert time.monotonic() - started < 3
    stored = tab.wait_finished(mid, cid)
    assert (stored["status"], stored["content"]) == ("error", "Before the silence")
    assert vendor.completions()[-1].closed_early.wait(2)


def test_an_unreachable_server_is_an_error_a_person_can_act_on(tab, vendor, settings):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.OPENAI_BASE_URL, settings.ANTHROPIC_BASE_URL = f"{url}/v1", url
    mid, cid = send(tab, vendor)
    received = tab.stream(mid)
    assert received[-1].event == "error" and received[-1].json["code"] == "unreachable"
    assert "BASE_URL" in received[-1].json["error"]


def test_stop_closes_the_upstream_connection_at_once(tab, vendor):
    vendor.play({"say": "partial"}, {"gate": "hold"}, {"say": "never sent"})
    mid, cid = send(tab, vendor)
    with tab.http.stream("GET", f"/api/messages/{mid}/stream") as response:
        for event in events(response.iter_lines()):
            if event.event == "message":
                stopped = tab.post(f"/api/messages/{mid}/stop").json()
                assert (stopped["status"], stopped["content"]) == ("stopped", "partial")
            if event.event in ("done", "error"):
                break
    assert event.event == "done" and event.json["status"] == "stopped"
    # The vendor sees its connection closed while it still holds the rest of the reply.
    assert vendor.completions()[-1].closed_early.wait(2)
    assert not vendor.gate("hold").is_set()


def test_a_client_going_away_does_not_stop_the_upstream(tab, vendor):
    vendor.play({"say": "one"}, {"gate": "go"}, {"say": " two"})
    mid, cid = send(tab, vendor)
    assert text_of(tab.stream(mid, limit=1)) == "one"  # then hang up
    time.sleep(0.1)
    assert not vendor.completions()[-1].closed_early.is_set()
    vendor.gate("go").set()
    stored = tab.wait_finished(mid, cid)
    assert (stored["status"], stored["content"]) == ("complete", "one two")
    assert not vendor.completions()[-1].closed_early.is_set()


# Keys of the length vendors issue, and how an upstream's 400 may quote one: whole, masked as
# OpenAI masks them, or in part.
QUOTED_KEYS = {
    "OPENAI_API_KEY": "sk-test-SECRETKEY0123456789abcdefghij",
    "ANTHROPIC_API_KEY": "sk-ant-api03-QUIETKEY9876543210zyxwvut",
    "MISTRAL_API_KEY": "ms-HOSTKEY-24680135792468013579",  # a host provider's key, in its settings
}
QUOTES = {
    "whole": lambda key: key,
    "masked": lambda key: key[:23] + "****",
    "middle": lambda key: key[6:18],
    "tail": lambda key: "..." + key[-10:],
}


def pieces_of(key: str, size: int = 8) -> set[str]:
    return {key[i : i + size] for i in range(len(key) - size + 1)}


@pytest.mark.parametrize("quote", sorted(QUOTES))
def test_no_piece_of_a_key_quoted_by_the_upstream_reaches_a_client_or_the_database(
    tab, vendor, settings, quote
):
    for name, key in QUOTED_KEYS.items():
        setattr(settings, name, key)
    quoted = " and ".join(QUOTES[quote](key) for key in QUOTED_KEYS.values())
    vendor.play({"status": 400, "message": f"Invalid 'api_key' value: {quoted}. See the docs."})
    mid, cid = send(tab, vendor)
    shown = tab.get(f"/api/messages/{mid}/stream").text
    assert tab.wait_finished(mid, cid)["status"] == "error"
    shown += tab.get(f"/api/conversations/{cid}").text
    stored = Message.objects.get(pk=mid)
    assert stored.error_code == "bad_request" and "Invalid 'api_key' value:" in stored.error
    seen = shown + stored.error
    assert {piece for key in QUOTED_KEYS.values() for piece in pieces_of(key) if piece in seen} == set()


KEY = "sk-test-SECRETKEY0123456789"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bad {KEY}.", "bad [key]."),
        (f"{KEY}", "[key]"),
        (f"masked {KEY[:20]}**** here", "masked [key] here"),  # the mask goes with it
        (f"tail ****{KEY[-8:]}", "tail [key]"),
        (f"middle {KEY[5:13]}!", "middle [key]!"),  # exactly 8 characters in a row
        (f"seven {KEY[5:12]}!", f"seven {KEY[5:12]}!"),  # 7 are left: they say nothing
        (f"{KEY[:10]}{KEY[-10:]}", "[key]"),  # two runs that touch: one
        (f"{KEY[:10]} {KEY[-10:]}", "[key] [key]"),
        ("sk-test-", "[key]"),  # the vendor's prefix is 8 characters here: it goes too
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_redact_takes_out_every_run_of_eight_characters_of_a_key(text, expected):
    assert redact(text, [KEY]) == expected


def test_redact_takes_out_a_short_key_whole_and_every_key_it_is_given():
    assert redact("a abc123 b", ["abc123"]) == "a [key] b"
    other = "ant-QUIETKEY98765"
    assert redact(f"{KEY[3:15]} and {other[2:12]}", [KEY, other]) == "[key] and [key]"
    assert redact("anything", []) == "anything"
