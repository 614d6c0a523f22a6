"""The AI SDK's chat protocol against the real server: the real `ai` package (tests/node, run by
Node 22 from tests/ui/*.mjs) sends, streams, shows reasoning and tools, and resumes after a
reload; and what the endpoints refuse (chat/ui_views.py)."""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from chat.models import Conversation, Message
from tests.conftest import REQUIRE_SERVICES
from tests.fakes import gate, script

HERE = Path(__file__).parent
NODE = HERE / "node" / "node_modules" / ".bin" / "node"
SDK = HERE / "node" / "node_modules" / "ai" / "package.json"
TIMEOUT = 30


def need_node() -> None:
    if not (NODE.exists() and SDK.exists()):
        message = (
            "tests/node is not installed (`make node`): the AI SDK tests need its ai package and Node 22"
        )
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def node_env(tab) -> dict[str, str]:
    cookie = "; ".join(f"{name}={value}" for name, value in tab.http.cookies.items())
    return {**os.environ, "CHAT_COOKIE": cookie, "CHAT_CSRF": tab.http.cookies.get("csrftoken", "")}


def run_node(tab, script_name: str, *args: str) -> list[dict]:
    """A script's JSON lines, once it has ended (it fails the test if the script failed)."""
    need_node()
    done = subprocess.run(
        [str(NODE), str(HERE / "ui" / script_name), *args],
        env=node_env(tab),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def text_of(message: dict) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def run_staged(tab, script_name: str, args: list[str], open_gate: str) -> list[dict]:
    """A script that hangs up mid-reply and resumes: the reply's gate opens once it has resumed
    (its "resumed" line), so the reply is still being written when it reconnects."""
    need_node()
    process = subprocess.Popen(
        [str(NODE), str(HERE / "ui" / script_name), *args],
        env={**node_env(tab), "CHAT_UI_MODEL": "script:fake"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict] = []
    try:
        for line in process.stdout:
            lines.append(json.loads(line))
            if lines[-1].get("stage") == "resumed":
                gate(open_gate).set()
        assert process.wait(TIMEOUT) == 0, process.stderr.read()
    finally:
        gate(open_gate).set()
        process.kill()
        process.communicate()
    return lines


@pytest.fixture(params=["memory", "redis"])
def event_log(request, settings) -> str:
    """The reply's live events from this process's memory, then from Redis Streams."""
    if request.param == "redis":
        request.getfixturevalue("redis_settings")
    return request.param


@pytest.fixture
def steps(settings):
    settings.CHAT_DEMO_STEPS = True
    return settings


def test_the_package_sends_and_shows_reasoning_tool_and_text_as_stored(tab, steps, event_log):
    (out,) = run_node(tab, "send.mjs", str(tab.http.base_url).rstrip("/"), "chat-1", "What day is it?")
    message, chunks = out["message"], out["chunks"]
    stored = Message.objects.get(pk=message["id"])
    assert stored.status == "complete" and stored.conversation.title == "What day is it?"
    types = [part["type"] for part in message["parts"]]
    assert types == ["step-start", "reasoning", "tool-current_time", "step-start", "text"]
    reasoning, tool, text = message["parts"][1], message["parts"][2], message["parts"][4]
    assert reasoning["text"] == stored.reasoning and reasoning["state"] == "done"
    assert tool["state"] == "output-available" and tool["toolCallId"] == "call_demo_1"
    assert tool["input"] == {} and tool["output"] == stored.steps[1]["result"]
    assert text["text"] == stored.content and text["state"] == "done"
    assert message["metadata"]["status"] == "complete" and message["metadata"]["conversationId"]
    assert chunks[0] == "start" and chunks[-2:] == ["finish-step", "finish"]
    # The same message, read back as a page would after a reload.
    history = tab.get("/api/ui/chat/chat-1").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["parts"] == [{"type": "text", "text": "What day is it?"}]
    assert history[1]["parts"] == message["parts"]


def test_one_client_id_is_one_conversation_per_owner(tab, new_tab):
    base = str(tab.http.base_url).rstrip("/")
    first = run_node(tab, "send.mjs", base, "same-id", "Hello")[0]["message"]
    second = run_node(tab, "send.mjs", base, "same-id", "Again")[0]["message"]
    other_tab = new_tab()
    other = run_node(other_tab, "send.mjs", base, "same-id", "Mine")[0]["message"]
    ours = Message.objects.get(pk=first["id"]).conversation_id
    assert Message.objects.get(pk=second["id"]).conversation_id == ours
    assert Message.objects.get(pk=other["id"]).conversation_id != ours
    assert [m["role"] for m in tab.get("/api/ui/chat/same-id").json()["messages"]] == [
        "user",
        "assistant",
    ] * 2
    assert len(other_tab.get("/api/ui/chat/same-id").json()["messages"]) == 2


def test_a_reload_mid_reply_resumes_to_exactly_the_stored_text(tab, server, event_log):
    steps = script({"say": "Hello, "}, {"say": "half"}, {"gate": "ui-reload"}, {"say": " and the rest."})
    base = str(tab.http.base_url).rstrip("/")
    aborted, resumed, done = run_staged(tab, "resume.mjs", [base, "reload-1", steps], "ui-reload")
    first = resumed["first"]  # the whole message again, from its start
    assert first["type"] == "start" and first["messageId"] == aborted["messageId"]
    stored = tab.wait_finished(aborted["messageId"], first["messageMetadata"]["conversationId"])
    assert stored["content"] == "Hello, half and the rest."
    assert done["message"]["id"] == aborted["messageId"]
    assert text_of(done["message"]) == stored["content"]
    assert done["message"]["metadata"]["status"] == "complete"


def test_nothing_streaming_is_204_and_the_package_reads_it_as_no_stream(tab):
    base = str(tab.http.base_url).rstrip("/")
    assert run_node(tab, "resume.mjs", base, "never-used") == [{"stream": None}]
    run_node(tab, "send.mjs", base, "finished", "Hi")
    assert tab.get("/api/ui/chat/finished/stream").status_code == 204
    assert run_node(tab, "resume.mjs", base, "finished") == [{"stream": None}]


def test_someone_elses_conversation_is_404(tab, new_tab):
    cid = tab.conversation()["id"]
    other = new_tab()
    body = {"id": cid, "trigger": "submit-message", "messages": [_user("Hi")]}
    response = other.post("/api/ui/chat", json=body)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert other.get(f"/api/ui/chat/{cid}/stream").status_code == 404
    assert other.get(f"/api/ui/chat/{cid}").status_code == 404
    assert other.get(f"/api/ui/chat/{uuid.uuid4()}").status_code == 404
    assert not Message.objects.filter(conversation_id=cid).exists()


def _user(text: str, *parts: dict) -> dict:
    return {"id": "u", "role": "user", "parts": [{"type": "text", "text": text}, *parts]}


@pytest.mark.parametrize(
    "body",
    [
        {"trigger": "submit-message", "messages": [_user("Hi")]},
        {"id": "has space", "messages": [_user("Hi")]},
        {"id": "x" * 101, "messages": [_user("Hi")]},
        {"id": 5, "messages": [_user("Hi")]},
        {"id": "c", "trigger": "resume", "messages": [_user("Hi")]},
        {"id": "c", "messages": []},
        {"id": "c", "messages": "Hi"},
        {"id": "c", "messages": [{"id": "a", "role": "assistant", "parts": []}]},
        {"id": "c", "messages": [{"id": "u", "role": "user", "parts": "Hi"}]},
        {"id": "c", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": 3}]}]},
        {"id": "c", "messages": [{"id": "u", "role": "user", "parts": []}]},
        {
            "id": "c",
            "messages": [
                _user("Hi", {"type": "file", "url": "data:text/plain;base64,SGk=", "mediaType": "text/plain"})
            ],
        },
        {
            "id": "c",
            "messages": [
                _user(
                    "Hi", {"type": "file", "url": "https://elsewhere.example/f.png", "mediaType": "image/png"}
                )
            ],
        },
        {
            "id": "c",
            "messages": [
                _user(
                    "Hi",
                    {
                        "type": "file",
                        "url": "/api/attachments/" + str(uuid.uuid4()),
                        "mediaType": "image/png",
                    },
                )
            ],
        },
        {"id": "c", "messages": [_user("Hi")], "model": "no-such-model"},
        {"id": "c", "trigger": "regenerate-message", "messageId": str(uuid.uuid4())},
    ],
)
def test_bad_bodies_are_400_and_store_nothing(tab, body):
    before = (Conversation.objects.count(), Message.objects.count())
    response = tab.post("/api/ui/chat", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid" and response.json()["error"]
    assert (Conversation.objects.count(), Message.objects.count()) == before


def test_not_json_is_400(tab):
    response = tab.http.post(
        "/api/ui/chat", content=b"{", headers={**tab.csrf, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_csrf_and_cross_site_rules_are_the_apis(tab):
    body = {"id": "csrf-1", "trigger": "submit-message", "messages": [_user("Hi")]}
    response = tab.http.post("/api/ui/chat", json=body)  # cookies, no token
    assert response.status_code == 403 and response.json()["code"] == "csrf"
    response = tab.post("/api/ui/chat", json=body, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and response.json()["code"] == "csrf"
    assert "another site" in response.json()["error"]
    assert not Conversation.objects.exists()


def _chunks(response) -> list[dict]:
    lines = [line for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_regenerate_answers_again_beside_the_old_reply(tab):
    body = {"id": "regen-1", "trigger": "submit-message", "messages": [_user("Hi")]}
    first = tab.post("/api/ui/chat", json=body)
    assert first.status_code == 200 and first.headers["x-vercel-ai-ui-message-stream"] == "v1"
    old = _chunks(first)[0]["messageId"]
    body = {"id": "regen-1", "trigger": "regenerate-message", "messageId": old, "messages": []}
    again = _chunks(tab.post("/api/ui/chat", json=body))
    new = again[0]["messageId"]
    assert new != old and again[-1]["finishReason"] == "stop"
    reply = Message.objects.get(pk=new)
    assert reply.parent_id == Message.objects.get(pk=old).parent_id
    history = tab.get("/api/ui/chat/regen-1").json()["messages"]
    assert [m["id"] for m in history][-1] == new


def _model_body(chat_id: str, *steps: dict) -> dict:
    return {"id": chat_id, "messages": [_user(script(*steps))], "model": "script:fake"}


def test_a_failed_reply_ends_with_the_error_chunk_then_finish(tab):
    response = tab.post(
        "/api/ui/chat", json=_model_body("fail-1", {"say": "Hi"}, {"fail": "The model is down."})
    )
    chunks = _chunks(response)
    assert chunks[-2] == {"type": "error", "errorText": "The model is down."}
    assert chunks[-1]["type"] == "finish" and chunks[-1]["finishReason"] == "error"
    assert chunks[-1]["messageMetadata"]["status"] == "error"


def test_a_stopped_reply_ends_with_finish_other_and_keeps_its_text(tab):
    body = _model_body("stop-1", {"say": "Half"}, {"gate": "ui-stop"}, {"say": " never"})
    received: list[dict] = []
    with tab.http.stream("POST", "/api/ui/chat", json=body, headers=tab.csrf) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            received.append(json.loads(line.removeprefix("data: ")))
            if received[-1]["type"] == "text-delta":
                stopped = tab.post(f"/api/messages/{received[0]['messageId']}/stop")
                assert stopped.json()["status"] == "stopped"
    assert "".join(c["delta"] for c in received if c["type"] == "text-delta") == "Half"
    assert received[-1]["finishReason"] == "other" and received[-1]["messageMetadata"]["status"] == "stopped"
    assert [c["type"] for c in received[-3:]] == ["text-end", "finish-step", "finish"]


def test_send_message_with_a_message_id_is_a_new_version_of_it(tab):
    first = _chunks(tab.post("/api/ui/chat", json={"id": "edit-1", "messages": [_user("Hi")]}))
    question = tab.get("/api/ui/chat/edit-1").json()["messages"][0]
    body = {
        "id": "edit-1",
        "messageId": question["id"],
        "messages": [{**_user("Hello"), "id": question["id"]}],
    }
    again = _chunks(tab.post("/api/ui/chat", json=body))
    assert again[-1]["finishReason"] == "stop" and again[0]["messageId"] != first[0]["messageId"]
    history = tab.get("/api/ui/chat/edit-1").json()["messages"]
    assert [m["parts"][0]["text"] for m in history if m["role"] == "user"] == ["Hello"]
    edited = Message.objects.get(pk=history[0]["id"])
    assert edited.parent_id is None and Message.objects.filter(role="user", parent__isnull=True).count() == 2
    unknown = {"id": "edit-1", "messageId": "client-made-id", "messages": [_user("Hey")]}
    response = tab.post("/api/ui/chat", json=unknown)
    assert response.status_code == 400 and "messageId" in response.json()["error"]


def test_the_apis_limits_apply_and_a_refused_send_stores_nothing(tab, settings):
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    settings.CHAT_LIMIT_MESSAGES = "1/day"
    assert tab.post("/api/ui/chat", json={"id": "limit-1", "messages": [_user("Hi")]}).status_code == 200
    before = (Conversation.objects.count(), Message.objects.count())
    response = tab.post("/api/ui/chat", json={"id": "limit-2", "messages": [_user("Again")]})
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert (Conversation.objects.count(), Message.objects.count()) == before


def test_a_file_part_of_an_upload_here_is_sent_with_the_message(tab):
    upload = tab.post("/api/attachments", files={"file": ("notes.txt", b"hello from a file", "text/plain")})
    assert upload.status_code == 201, upload.text
    file = upload.json()
    part = {
        "type": "file",
        "mediaType": "text/plain",
        "filename": "notes.txt",
        "url": str(tab.http.base_url).rstrip("/") + file["url"],
    }
    reply = _chunks(tab.post("/api/ui/chat", json={"id": "file-1", "messages": [_user("Read it", part)]}))
    text = "".join(c["delta"] for c in reply if c["type"] == "text-delta")
    assert text.startswith("I received 1 file:") and "`notes.txt`" in text
    question = tab.get("/api/ui/chat/file-1").json()["messages"][0]
    assert question["parts"] == [
        {"type": "text", "text": "Read it"},
        {"type": "file", "mediaType": "text/plain", "filename": "notes.txt", "url": file["url"]},
    ]


def test_a_quiet_reply_sends_heartbeat_comments_the_package_skips(tab, settings):
    settings.CHAT_HEARTBEAT_INTERVAL = 0.05
    body = _model_body("ping-1", {"say": "Wait"}, {"gate": "ui-ping"}, {"say": "ed."})
    lines: list[str] = []
    with tab.http.stream("POST", "/api/ui/chat", json=body, headers=tab.csrf) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line == ": ping":
                gate("ui-ping").set()
    assert ": ping" in lines and [line for line in lines if line][-1] == "data: [DONE]"
    deltas = [json.loads(x[6:])["delta"] for x in lines if x.startswith("data: {") and '"text-delta"' in x]
    assert "".join(deltas) == "Waited."


def test_two_first_messages_at_once_with_one_new_id_land_in_one_conversation(tab):
    from concurrent.futures import ThreadPoolExecutor

    def send(text: str) -> int:
        return tab.post("/api/ui/chat", json={"id": "race-1", "messages": [_user(text)]}).status_code

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(send, ["One", "Two"])) == [200, 200]
    assert Conversation.objects.count() == 1
    assert sorted(Message.objects.filter(role="user").values_list("content", flat=True)) == ["One", "Two"]


def test_mounted_under_a_prefix_the_package_follows_it(tab, settings):
    settings.ROOT_URLCONF = "tests.urls_mounted"
    base = str(tab.http.base_url).rstrip("/") + "/assistant"
    message = run_node(tab, "send.mjs", base, "mounted-1", "Hi")[0]["message"]
    assert text_of(message) == Message.objects.get(pk=message["id"]).content
    assert run_node(tab, "resume.mjs", base, "mounted-1") == [{"stream": None}]
    upload = tab.post("/assistant/api/attachments", files={"file": ("a.txt", b"hello", "text/plain")}).json()
    part = {"type": "file", "mediaType": "text/plain", "url": upload["url"]}
    response = tab.post("/assistant/api/ui/chat", json={"id": "mounted-1", "messages": [_user("File", part)]})
    assert response.status_code == 200, response.text
    history = tab.get("/assistant/api/ui/chat/mounted-1").json()["messages"]
    assert history[-2]["parts"][1]["url"] == upload["url"]


def test_a_page_with_the_packages_chat_reloads_mid_reply_and_resumes(tab, event_log):
    steps = script({"say": "Hello, "}, {"say": "half"}, {"gate": "ui-chat-reload"}, {"say": " and the rest."})
    aborted, resumed, done = run_staged(
        tab, "reload.mjs", [str(tab.http.base_url).rstrip("/"), "reload-2", steps], "ui-chat-reload"
    )
    loaded = resumed["loaded"]  # what the page loaded: the question and the reply so far
    assert [m["role"] for m in loaded] == ["user", "assistant"] and loaded[1]["id"] == aborted["messageId"]
    # Its text so far as the last checkpoint saved it (a prefix): the resume replays it whole.
    assert loaded[1]["metadata"]["status"] == "streaming" and "Hello, half".startswith(text_of(loaded[1]))
    stored = Message.objects.get(pk=aborted["messageId"])
    assert stored.content == "Hello, half and the rest." and stored.status == "complete"
    user, reply = done["messages"]  # the partial reply replaced, not repeated
    assert user["parts"] == [{"type": "text", "text": steps}] and done["status"] == "ready"
    assert reply["id"] == str(stored.pk) and text_of(reply) == stored.content
    assert [p["type"] for p in reply["parts"]] == ["step-start", "text"]
