"""Tool calls that wait for the person (CHAT_TOOLS_APPROVAL, issue 31), through the real server.

The demo model calls its own tool, `current_time`, when CHAT_DEMO_STEPS is on; the fake OpenAI
server shows what the model is sent back after a refusal.
"""

import threading
import time

import httpx
import pytest
from django.urls import reverse

from chat.models import Message, ToolApproval
from tests.conftest import Tab
from tests.sse_client import SSE, events


def _send(tab: Tab, text: str = "What day is it?", **extra) -> tuple[str, str]:
    reply = tab.send(text, **extra)["assistant_message"]
    return reply["id"], reply["conversation_id"]


def _read(http: httpx.Client, mid: str, until, last_event_id: str | None = None) -> list[SSE]:
    """A stream's events up to the first for which `until(event)` holds (or its end)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    received: list[SSE] = []
    with http.stream("GET", f"/api/messages/{mid}/stream", headers=headers) as response:
        assert response.status_code == 200, response.read()
        for event in events(response.iter_lines()):
            received.append(event)
            if until(event) or event.event in ("done", "error"):
                break
    return received


def _is_approval(event: SSE) -> bool:
    return event.event == "status" and event.json["state"] == "approval"


def _approve(tab: Tab, mid: str, body: dict) -> httpx.Response:
    return tab.post(f"/api/messages/{mid}/approve", json=body)


def _decide_on_approval(tab: Tab, mid: str, approved: bool, seen: list[SSE]):
    """An on-event callback that decides, from another thread, once the stream asks."""

    def on_event(event: SSE) -> None:
        seen.append(event)
        if _is_approval(event):
            body = {"tool_call_id": event.json["tool_call_id"], "approved": approved}
            threading.Thread(target=lambda: seen.append(_approve(tab, mid, body))).start()

    return on_event


def test_the_call_waits_for_approval_then_runs_and_the_reply_completes(tab, approval):
    mid, cid = _send(tab)
    seen: list = []
    received = tab.stream(mid, on_event=_decide_on_approval(tab, mid, True, seen))
    asked = next(e for e in received if _is_approval(e))
    assert asked.json == {
        "state": "approval",
        "tool_call_id": "call_demo_1",
        "name": "current_time",
        "arguments": {},
    }
    kinds = [e.event for e in received]
    assert kinds.index("tool_call") < received.index(asked) < kinds.index("tool_result")
    statuses = [e.json for e in received if e.event == "status"]
    after = statuses[statuses.index(asked.json) + 1]
    assert after == {"state": "tool", "name": "current_time"}  # the plain status that follows
    result = next(e.json for e in received if e.event == "tool_result")
    assert result["error"] is None and set(result["result"]) == {"utc", "weekday"}
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    answer = next(r for r in seen if isinstance(r, httpx.Response))
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "approved" and answer.json()["tool_call_id"] == "call_demo_1"
    message = tab.wait_finished(mid, cid)
    assert message["content"].startswith("The server's clock says it is ")
    assert message["steps"][-1]["approval"] == "approved"
    assert ToolApproval.objects.get(message_id=mid).state == "approved"


def test_a_refusal_reaches_the_model_as_the_tool_result(tab, openai_vendor, settings):
    settings.CHAT_MODEL = "openai:gpt-test"
    settings.CHAT_TOOLS = "tests.test_tools_vendors.fruit_price"
    settings.CHAT_TOOLS_APPROVAL = ["fruit_price"]
    openai_vendor.play(
        {"call": "fruit_price", "id": "call_9", "args": ['{"name": "pear"}']},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"echo": "tool"}, {"finish": "stop"})
    mid, cid = _send(tab, "price of a pear?", model="openai:gpt-test")
    seen: list = []
    received = tab.stream(mid, on_event=_decide_on_approval(tab, mid, False, seen))
    asked = next(e for e in received if _is_approval(e))
    assert asked.json["arguments"] == {"name": "pear"} and asked.json["name"] == "fruit_price"
    result = next(e.json for e in received if e.event == "tool_result")
    assert result["result"] is None and result["error"] == "The person refused to run this tool."
    assert received[-1].event == "done"
    message = tab.wait_finished(mid, cid)
    assert message["content"] == "The person refused to run this tool."  # echoed by the model
    sent_back = [m for m in openai_vendor.completions()[-1].body["messages"] if m["role"] == "tool"]
    assert sent_back == [
        {"role": "tool", "tool_call_id": "call_9", "content": "The person refused to run this tool."}
    ]
    assert message["steps"][-1]["approval"] == "denied"


def test_no_decision_within_the_timeout_ends_the_wait_as_refused(tab, approval):
    approval.CHAT_TOOLS_APPROVAL_TIMEOUT = 0.3
    mid, cid = _send(tab)
    received = tab.stream(mid)
    assert any(_is_approval(e) for e in received)
    result = next(e.json for e in received if e.event == "tool_result")
    assert result["error"] == "No one approved this call within 0.3 seconds; it was not run."
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    message = tab.wait_finished(mid, cid)
    assert message["content"].startswith("The `current_time` tool failed (No one approved")
    assert message["steps"][-1]["approval"] == "expired"
    late = _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": True})
    assert late.status_code == 409 and late.json()["code"] == "conflict"
    assert ToolApproval.objects.get(message_id=mid).state == "expired"


def test_a_stream_joining_while_it_waits_is_asked_again_whatever_its_offset(tab, approval):
    mid, cid = _send(tab)
    first = _read(tab.http, mid, _is_approval)
    assert _is_approval(first[-1])
    step_id = next(e.id for e in reversed(first) if e.event == "tool_call")
    for last in (step_id, "0", None):  # after the call, before it, from the start
        again = _read(tab.http, mid, _is_approval, last)
        assert _is_approval(again[-1]) and again[-1].json == first[-1].json
        if last == step_id:  # nothing but the request: the call itself came before the place
            assert [e.event for e in again] == ["retry", "start", "status"]
    rest: list = []
    received = tab.stream(mid, on_event=_decide_on_approval(tab, mid, True, rest))
    assert received[-1].event == "done"
    assert tab.wait_finished(mid, cid)["status"] == "complete"


def test_a_second_tab_of_the_same_person_decides(tab, approval, server):
    mid, cid = _send(tab)
    asked = _read(tab.http, mid, _is_approval)[-1]
    other = Tab(server.url)
    try:
        other.http.cookies = tab.http.cookies  # the same browser's session, another tab
        answer = _approve(other, mid, {"tool_call_id": asked.json["tool_call_id"], "approved": True})
        assert answer.status_code == 200, answer.text
        assert tab.stream(mid)[-1].event == "done"
        assert tab.wait_finished(mid, cid)["steps"][-1]["approval"] == "approved"
    finally:
        other.close()


def test_someone_elses_reply_is_not_found_and_stays_waiting(tab, new_tab, approval):
    mid, _ = _send(tab)
    _read(tab.http, mid, _is_approval)
    stranger = new_tab()
    answer = _approve(stranger, mid, {"tool_call_id": "call_demo_1", "approved": True})
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert ToolApproval.objects.get(message_id=mid).state == "waiting"
    assert _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": False}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"tool_call_id": "call_other", "approved": True}, 409, "conflict"),
        ({"tool_call_id": "call_demo_1", "approved": 1}, 400, "invalid"),
        ({"tool_call_id": "call_demo_1", "approved": "yes"}, 400, "invalid"),
        ({"tool_call_id": "call_demo_1"}, 400, "invalid"),
        ({"tool_call_id": 7, "approved": True}, 400, "invalid"),
        ({"approved": True}, 400, "invalid"),
        ([1], 400, "invalid"),
    ],
)
def test_a_bad_decision_is_refused_and_changes_nothing(tab, approval, body, status, code):
    mid, cid = _send(tab)
    _read(tab.http, mid, _is_approval)
    answer = _approve(tab, mid, body)
    assert answer.status_code == status and answer.json()["code"] == code, answer.text
    assert answer.json()["error"]
    assert ToolApproval.objects.get(message_id=mid).state == "waiting"
    assert Message.objects.get(pk=mid).status == "streaming"
    assert _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": True}).status_code == 200
    assert tab.wait_finished(mid, cid)["status"] == "complete"


def test_a_decision_on_a_reply_that_no_longer_waits_is_a_conflict(tab, approval):
    mid, cid = _send(tab)
    _read(tab.http, mid, _is_approval)
    assert _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": True}).status_code == 200
    again = _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": False})
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert "already approved" in again.json()["error"]
    tab.wait_finished(mid, cid)
    assert ToolApproval.objects.get(message_id=mid).state == "approved"


def test_a_stop_while_it_waits_ends_the_wait_and_gives_the_step_an_outcome(tab, approval):
    mid, cid = _send(tab)
    _read(tab.http, mid, _is_approval)
    stopped = tab.post(f"/api/messages/{mid}/stop").json()
    assert stopped["status"] == "stopped"
    step = tab.wait_finished(mid, cid)["steps"][-1]
    assert step["error"] == "Stopped while this tool was running." and step["approval"] == "expired"
    assert ToolApproval.objects.get(message_id=mid).state == "expired"
    late = _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": True})
    assert late.status_code == 409


def test_a_waiting_reply_is_not_taken_for_stale(tab, approval):
    """Its task is alive: the checkpointer touches it, the sweeper leaves it, however long it waits."""
    approval.CHAT_CHECKPOINT_INTERVAL = 0.05
    approval.CHAT_STALE_INTERVALS = 2  # stale after 0.1 s of silence
    mid, cid = _send(tab)
    _read(tab.http, mid, _is_approval)
    waited_until = time.monotonic() + 1.0  # ten stale windows
    while time.monotonic() < waited_until:
        assert Message.objects.get(pk=mid).status == "streaming"
        time.sleep(0.05)
    assert _approve(tab, mid, {"tool_call_id": "call_demo_1", "approved": True}).status_code == 200
    assert tab.stream(mid)[-1].event == "done"
    assert tab.wait_finished(mid, cid)["status"] == "complete"


def test_tools_not_named_run_at_once(tab, approval):
    approval.CHAT_TOOLS_APPROVAL = "some_other_tool"
    mid, cid = _send(tab)
    received = tab.stream(mid)
    assert not any(_is_approval(e) for e in received)
    assert received[-1].event == "done"
    assert "approval" not in tab.wait_finished(mid, cid)["steps"][-1]
    assert not ToolApproval.objects.filter(message_id=mid).exists()


def test_the_admin_transcript_shows_each_calls_approval(tab, approval, client, django_user_model):
    approval.CHAT_TOOLS_APPROVAL_TIMEOUT = 0.2
    mid, cid = _send(tab)
    tab.stream(mid)
    tab.wait_finished(mid, cid)
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(staff)
    page = client.get(reverse("admin:chat_conversation_change", args=[cid])).content.decode()
    assert "approval: expired" in page


def test_an_id_that_is_not_a_reply_is_not_found(tab, approval):
    sent = tab.send("What day is it?")
    mid = sent["assistant_message"]["id"]
    _read(tab.http, mid, _is_approval)
    body = {"tool_call_id": "call_demo_1", "approved": True}
    for other in (sent["user_message"]["id"], "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        answer = _approve(tab, other, body)
        assert answer.status_code == 404 and answer.json()["code"] == "not_found", other
    assert tab.get(f"/api/messages/{mid}/approve").status_code == 405
    assert ToolApproval.objects.get(message_id=mid).state == "waiting"
    assert _approve(tab, mid, body).status_code == 200


def test_two_calls_in_one_round_are_asked_one_after_the_other(tab, openai_vendor, settings):
    settings.CHAT_MODEL = "openai:gpt-test"
    settings.CHAT_TOOLS = "tests.test_tools_vendors.fruit_price"
    settings.CHAT_TOOLS_APPROVAL = "*"
    openai_vendor.play(
        {"call": "fruit_price", "id": "call_a", "args": ['{"name": "apple"}']},
        {"call": "fruit_price", "id": "call_b", "args": ['{"name": "pear"}']},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"say": "Done."}, {"finish": "stop"})
    mid, cid = _send(tab, "apples and pears?", model="openai:gpt-test")
    decisions = {"call_a": True, "call_b": False}
    answers: list = []

    def on_event(event: SSE) -> None:
        if _is_approval(event):
            call_id = event.json["tool_call_id"]
            body = {"tool_call_id": call_id, "approved": decisions[call_id]}
            threading.Thread(target=lambda: answers.append(_approve(tab, mid, body))).start()

    received = tab.stream(mid, on_event=on_event)
    asked = [e.json["tool_call_id"] for e in received if _is_approval(e)]
    assert asked == ["call_a", "call_b"]
    results = {e.json["id"]: e.json for e in received if e.event == "tool_result"}
    assert results["call_a"]["result"] == {"fruit": "apple", "total": 3}
    assert results["call_b"]["error"] == "The person refused to run this tool."
    message = tab.wait_finished(mid, cid)
    assert [s.get("approval") for s in message["steps"]] == ["approved", "denied"]
    sent_back = [
        m["content"] for m in openai_vendor.completions()[-1].body["messages"] if m["role"] == "tool"
    ]
    assert sent_back == ['{"fruit": "apple", "total": 3}', "The person refused to run this tool."]
    assert sorted(a.json()["state"] for a in answers) == ["approved", "denied"]
