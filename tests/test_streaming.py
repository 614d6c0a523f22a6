"""The SSE stream against a real uvicorn server: live delivery, resuming, stop, heartbeats."""

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from chat.models import Message
from chat.providers.demo import demo_tokens
from tests.fakes import CLOSED, gate, script
from tests.sse_client import Parser, events, last_id, text_of


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


# --- the stream as Django's own handler sends it ------------------------------------------------


def test_djangos_own_request_signal_receivers_stay_connected_while_the_app_runs(server):
    """The app's lifespan (started by the test server) leaves the host's signals as they are."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, reset_queries

    for signal, receiver in (
        (request_started, reset_queries),
        (request_started, close_old_connections),
        (request_finished, close_old_connections),
    ):
        assert signal.disconnect(receiver), f"{receiver.__name__} was not connected"
        signal.connect(receiver)


def test_a_projects_own_request_finished_receiver_hears_every_request_end_a_streams_included(tab):
    from django.core.signals import request_finished

    ended = threading.Semaphore(0)

    def receiver(sender, **kwargs):
        ended.release()

    request_finished.connect(receiver, weak=False)
    try:
        assert tab.get("/api/models").status_code == 200
        sent = tab.send(script({"say": "Hello"}), model="script:fake")  # its stream: one more
        assert text_of(tab.stream(sent["assistant_message"]["id"])) == "Hello"
        # Three requests (the models, the send, the stream); the signal is sent once each
        # response is out, so the client may have read it first.
        assert all(ended.acquire(timeout=10) for _ in range(3))
    finally:
        request_finished.disconnect(receiver)


def test_a_client_that_hangs_up_ends_its_request_while_the_reply_goes_on(tab, server):
    sent = tab.send(
        script({"say": "one"}, {"gate": "hung up"}, {"say": " two"}, {"finish": "stop"}), model="script:fake"
    )
    mid = sent["assistant_message"]["id"]
    tasks = server.server.server_state.tasks  # uvicorn's running request tasks
    assert text_of(tab.stream(mid, limit=1)) == "one"  # then hang up
    deadline = time.monotonic() + 5
    while tasks and time.monotonic() < deadline:  # the stream's request ends at once, not at
        time.sleep(0.01)  # its next heartbeat or the reply's end
    assert not tasks
    gate("hung up").set()
    done = tab.wait_finished(mid, sent["assistant_message"]["conversation_id"])
    assert (done["status"], done["content"]) == ("complete", "one two")


def test_a_paced_reply_streams_every_text_once_in_order_and_resumes_from_any_id(tab):
    words = [f" word{i}" for i in range(12)]
    paced = [x for word in words for x in ({"say": word}, {"sleep": 0.03})]  # past the merge window
    sent = tab.send(script(*paced), model="script:fake")
    mid = sent["assistant_message"]["id"]
    received = tab.stream(mid)
    texts = [e for e in received if e.event == "message"]
    assert "".join(e.json["text"] for e in texts) == "".join(words) == Message.objects.get(pk=mid).content
    # Each id is the text's length once it is added; each event is whole tokens (a busy
    # machine may merge two within the window).
    ends = {len("".join(words[: i + 1])) for i in range(len(words))}
    assert all(int(e.id) in ends for e in texts)
    assert [int(e.id) for e in texts] == sorted({int(e.id) for e in texts})
    assert [e.event for e in received[:3]] == ["retry", "start", "status"]
    assert received[-1].event == "done"
    middle = int(texts[len(texts) // 2].id)
    assert text_of(tab.stream(mid, last_event_id=middle)) == "".join(words)[middle:]


def test_no_heartbeat_while_texts_flow(tab, settings):
    """The heartbeat fills silence only: texts a tenth of the interval apart need none."""
    settings.CHAT_HEARTBEAT_INTERVAL = 0.5
    paced = [x for i in range(20) for x in ({"say": f"{i} "}, {"sleep": 0.05})]
    sent = tab.send(script(*paced), model="script:fake")
    received = tab.stream(sent["assistant_message"]["id"])
    first_text = next(i for i, e in enumerate(received) if e.event == "message")
    assert [e for e in received[first_text:] if e.event == "comment"] == []
    assert text_of(received) == "".join(f"{i} " for i in range(20))


def _raw_stream(base_url: str, path: str, cookies: dict) -> socket.socket:
    """A client with a tiny receive window that sends its request and then reads nothing."""
    url = urlsplit(base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    lines = [f"GET {path} HTTP/1.1", f"Host: {url.netloc}", f"Cookie: {cookie}", "Accept: text/event-stream"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _read_events(sock: socket.socket, timeout: float = 30) -> list:
    """The whole chunked SSE body, parsed, once the client reads again."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        more = sock.recv(1 << 16)
        assert more, "the server closed the connection early"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    payload = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        payload, body = payload + rest[:n], rest[n + 2 :]
    parser, received = Parser(), []
    for line in payload.decode().split("\n"):
        if (event := parser.feed(line)) is not None:
            received.append(event)
    return received


def test_a_client_that_stops_reading_gets_every_text_once_in_order(tab):
    """Flow control: the server's writes to a client that reads nothing wait, and nothing is
    lost or repeated. 9 MB, 30 ms apart: more than the kernel's socket buffers take (they grow
    to 4 MB) and uvicorn's 64 KiB."""
    letters = [chr(ord("a") + i % 26) for i in range(150)]
    paced = [x for letter in letters for x in ({"say": letter, "times": 60_000}, {"sleep": 0.02})]
    sent = tab.send(script(*paced), model="script:fake")
    mid = sent["assistant_message"]["id"]
    sock = _raw_stream(str(tab.http.base_url), f"/api/messages/{mid}/stream", dict(tab.http.cookies))
    try:
        deadline = time.monotonic() + 30
        while Message.objects.get(pk=mid).status == Message.Status.STREAMING:
            assert time.monotonic() < deadline, "the reply did not end"
            time.sleep(0.1)
        received = _read_events(sock)
    finally:
        sock.close()
    texts = [e for e in received if e.event == "message"]
    expected = "".join(letter * 60_000 for letter in letters)
    assert text_of(received) == expected == Message.objects.get(pk=mid).content
    ids = [int(e.id) for e in texts]
    assert ids == sorted(set(ids)) and ids[-1] == len(expected)
    assert last_id(received) == len(expected)
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
