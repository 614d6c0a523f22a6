"""The SSE stream against a real uvicorn server: live delivery, resuming, stop, heartbeats."""

import time

import httpx
import pytest

from chat.models import Message
from chat.providers.demo import demo_tokens
from tests.fakes import CLOSED, gate, script
from tests.sse_client import events, last_id, text_of


def test_events_arrive_as_they_are_produced(tab):
    # The model says "Hello", then waits for a gate that only the test opens. Reading "Hello"
    # before opening it proves the event was delivered, not buffered until the end.
    sent = tab.send(script({"say": "Hello"}, {"gate": "g1"}, {"say": " world"}), model="script:fake")
    mid = sent["assistant_message"]["id"]
    seen = []
    with tab.http.stream("GET", f"/api/messages/{mid}/stream") as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        for event in events(response.iter_lines()):
            seen.append(event)
            if event.event == "message" and event.json["text"] == "Hello":
                assert not gate("g1").is_set()
                gate("g1").set()
            if event.event in ("done", "error"):
                break
    # issue 12: `writing` says the answer's text begins.
    assert [e.event for e in seen] == ["retry", "start", "status", "status", "message", "message", "done"]
    retry, start, status = seen[0], seen[1], seen[2]
    assert seen[3].json == {"state": "writing"}
    assert retry.retry == 2000
    assert start.json == {
        "message_id": mid,
        "conversation_id": sent["assistant_message"]["conversation_id"],
        "model": "script:fake",
    }
    assert status.json == {"state": "thinking"}
    assert [(e.id, e.json["text"]) for e in seen[4:6]] == [("5", "Hello"), ("11", " world")]
    assert seen[6].json == {"message_id": mid, "status": "complete", "finish_reason": None, "usage": None}


def test_post_with_accept_event_stream_streams_the_reply_itself(tab):
    conversation = tab.conversation()
    with tab.http.stream(
        "POST",
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "Tell me about streams"},
        headers={**tab.csrf, "Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        received = list(events(response.iter_lines()))
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    assert received[-1].json["usage"]["output_tokens"] == len(demo_tokens("Tell me about streams"))
    stored = Message.objects.get(pk=received[1].json["message_id"])
    assert text_of(received) == stored.content == "".join(demo_tokens("Tell me about streams"))


def test_client_that_drops_at_every_point_and_resumes_ends_with_the_stored_text(tab, settings):
    settings.CHAT_DEMO_RATE = 400
    settings.CHAT_DEMO_TOKENS = 120
    sent = tab.send("resume me")
    mid = sent["assistant_message"]["id"]
    text, offset, reconnects = "", None, 0
    while True:
        # Hang up after 1, 2, 3, ... text events: drops land all over the reply.
        received = tab.stream(mid, last_event_id=offset, limit=reconnects % 4 + 1)
        reconnects += 1
        text += text_of(received)
        offset = last_id(received, offset or 0)
        assert offset == len(text)
        if received[-1].event == "done":
            break
    assert reconnects > 5
    assert text == Message.objects.get(pk=mid).content == "".join(demo_tokens("resume me", 120))


def test_resuming_a_finished_reply_replays_exactly_the_rest(tab):
    sent = tab.send("finished already")
    mid, cid = sent["assistant_message"]["id"], sent["assistant_message"]["conversation_id"]
    content = tab.wait_finished(mid, cid)["content"]
    for offset in (0, 1, 17, len(content) - 1, len(content)):
        received = tab.stream(mid, last_event_id=offset)
        assert text_of(received) == content[offset:]
        assert [e.event for e in received][:2] == ["retry", "start"]
        assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    via_query = tab.http.get(f"/api/messages/{mid}/stream?last_event_id=10")
    assert text_of(list(events(iter(via_query.text.splitlines())))) == content[10:]


# "1.5" is a step id since issue 12 (`<text offset>.<steps offset>`); these are not.
@pytest.mark.parametrize("value", ["-1", "abc", "1.5.2", "1.", ".5", "1,5", "1e3", "²", "9" * 20])
def test_bad_last_event_id_answers_400(tab, value):
    sent = tab.send("x")
    mid = sent["assistant_message"]["id"]
    responses = [tab.get(f"/api/messages/{mid}/stream", params={"last_event_id": value})]
    if value.isascii():  # a header carries ASCII only
        responses.append(tab.get(f"/api/messages/{mid}/stream", headers={"Last-Event-ID": value}))
    for response in responses:
        assert response.status_code == 400
        assert response.json()["code"] == "invalid"


def test_last_event_id_past_the_end_of_a_finished_reply_answers_400(tab):
    sent = tab.send(script({"say": "abc"}), model="script:fake")
    mid = sent["assistant_message"]["id"]
    tab.wait_finished(mid, sent["assistant_message"]["conversation_id"])
    response = tab.get(f"/api/messages/{mid}/stream", headers={"Last-Event-ID": "4"})
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_reply_goes_on_and_is_saved_when_every_client_is_gone(tab):
    sent = tab.send(
        script({"say": "one"}, {"gate": "gone"}, {"say": " two"}, {"finish": "stop"}), model="script:fake"
    )
    mid = sent["assistant_message"]["id"]
    received = tab.stream(mid, limit=1)  # then hang up
    assert text_of(received) == "one"
    time.sleep(0.05)
    gate("gone").set()
    done = tab.wait_finished(mid, sent["assistant_message"]["conversation_id"])
    assert (done["status"], done["content"], done["finish_reason"]) == ("complete", "one two", "stop")


def test_stop_keeps_the_partial_text_and_ends_the_stream(tab, new_tab):
    steps = script({"say": "partial"}, {"gate": "never"}, {"say": "never said"})
    sent = tab.send(steps, model="script:fake")
    mid = sent["assistant_message"]["id"]
    watcher = new_tab()
    # The watcher is another client without the owner's session: it may not follow.
    assert watcher.get(f"/api/messages/{mid}/stream").status_code == 404
    with tab.http.stream("GET", f"/api/messages/{mid}/stream") as response:
        received = []
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event == "message":
                stopped = tab.post(f"/api/messages/{mid}/stop")
                assert stopped.status_code == 200
                assert stopped.json()["status"] == "stopped"
                assert stopped.json()["content"] == "partial"
            if event.event in ("done", "error"):
                break
    assert received[-1].event == "done" and received[-1].json["status"] == "stopped"
    assert text_of(received) == "partial"
    assert steps in CLOSED  # the model's stream was closed, not left running
    stored = Message.objects.get(pk=mid)
    assert (stored.status, stored.content) == ("stopped", "partial")
    # Stopping again is harmless and answers the stored message.
    assert tab.post(f"/api/messages/{mid}/stop").json()["status"] == "stopped"


def test_two_subscribers_see_the_same_reply(tab, settings):
    settings.CHAT_DEMO_RATE = 300
    sent = tab.send("shared")
    mid = sent["assistant_message"]["id"]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: tab.stream(mid), range(2))
    assert text_of(a) == text_of(b) == Message.objects.get(pk=mid).content
    assert a[-1].json == b[-1].json


def test_heartbeat_comment_arrives_on_silence(tab, settings):
    settings.CHAT_HEARTBEAT_INTERVAL = 0.05
    sent = tab.send(script({"say": "a"}, {"gate": "quiet"}, {"say": "b"}), model="script:fake")
    mid = sent["assistant_message"]["id"]
    received = []
    with tab.http.stream("GET", f"/api/messages/{mid}/stream") as response:
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event == "comment":
                gate("quiet").set()
            if event.event in ("done", "error"):
                break
    pings = [e for e in received if e.event == "comment"]
    assert pings and pings[0].comment == "ping"
    assert text_of(received) == "ab"


def test_a_failing_model_ends_with_an_error_event_and_keeps_the_partial_text(tab):
    sent = tab.send(
        script({"say": "so far"}, {"fail": "The model is overloaded; try again.", "code": "rate_limited"}),
        model="script:fake",
    )
    mid = sent["assistant_message"]["id"]
    received = tab.stream(mid)
    assert received[-1].event == "error"
    assert received[-1].json == {"error": "The model is overloaded; try again.", "code": "rate_limited"}
    stored = tab.wait_finished(mid, sent["assistant_message"]["conversation_id"])
    assert (stored["status"], stored["content"], stored["error"]) == (
        "error",
        "so far",
        "The model is overloaded; try again.",
    )
    # Replayed the same way later.
    assert tab.stream(mid)[-1].json["code"] == "rate_limited"


def test_an_unexpected_failure_is_an_error_reply_not_a_hang(tab):
    sent = tab.send(script({"say": "x"}, {"crash": True}), model="script:fake")
    received = tab.stream(sent["assistant_message"]["id"])
    assert received[-1].event == "error" and received[-1].json["code"] == "internal_error"


def test_history_and_system_prompt_reach_the_model(tab):
    from tests.fakes import PROMPTS

    conversation = tab.conversation(system_prompt="You are terse.", model="script:fake")
    first = tab.send(script({"say": "first answer"}), conversation["id"])
    tab.wait_finished(first["assistant_message"]["id"], conversation["id"])
    second = tab.send(script({"say": "second"}), conversation["id"])
    # The reply runs detached from the send: the model is asked after the 201, so wait.
    tab.wait_finished(second["assistant_message"]["id"], conversation["id"])
    prompt = PROMPTS[-1]
    assert prompt.system == "You are terse."
    assert [(t.role, t.content) for t in prompt.turns] == [
        ("user", script({"say": "first answer"})),
        ("assistant", "first answer"),
        ("user", script({"say": "second"})),
    ]


def test_curl_style_client_without_cookies_streams_a_new_conversation(server, settings):
    settings.CHAT_DEMO_RATE = 0
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream(
            "POST",
            "/api/conversations",
            content=b'{"content": "Hello"}',
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        received = list(events(response.iter_lines()))
    assert received[-1].event == "done"
    assert text_of(received) == "".join(demo_tokens("Hello"))


def test_a_lone_token_is_never_held_back_but_a_busy_stream_is_merged(tab, settings):
    # Tokens 50 ms apart: each is its own event, sent at once.
    sent = tab.send(
        script({"say": "a"}, {"sleep": 0.05}, {"say": "b"}, {"sleep": 0.05}, {"say": "c"}),
        model="script:fake",
    )
    received = tab.stream(sent["assistant_message"]["id"])
    assert [e.json["text"] for e in received if e.event == "message"] == ["a", "b", "c"]
    # 2,000 tokens flat out: merged into far fewer events, the text exactly the same.
    settings.CHAT_DEMO_RATE, settings.CHAT_DEMO_TOKENS = 0, 2000
    sent = tab.send("busy")
    received = tab.stream(sent["assistant_message"]["id"])
    texts = [e for e in received if e.event == "message"]
    assert len(texts) < 2000 / 5
    assert (
        text_of(received)
        == "".join(demo_tokens("busy", 2000))
        == Message.objects.get(pk=sent["assistant_message"]["id"]).content
    )


def test_deleting_a_conversation_stops_its_running_reply(tab):
    steps = script({"say": "x"}, {"gate": "forever"})
    sent = tab.send(steps, model="script:fake")
    cid = sent["assistant_message"]["conversation_id"]
    # Running: the model has been asked and has answered (the reply starts after the 201).
    assert text_of(tab.stream(sent["assistant_message"]["id"], limit=1)) == "x"
    assert tab.delete(f"/api/conversations/{cid}").status_code == 204
    assert steps in CLOSED
    assert not Message.objects.filter(conversation_id=cid).exists()
