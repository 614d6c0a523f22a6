"""Upstream failures, stops and disconnects, end to end: page client -> app -> real SDK -> fake vendor.

Each test runs against both vendors' wire formats.
"""

import time

import pytest

from chat.models import Message
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
