"""Tool approval through the AI SDK's protocol (CHAT_TOOLS_APPROVAL, chat/approvals.py): the
package's own Chat asks, answers with addToolApprovalResponse, and gets the rest of the reply."""

import json

import pytest

from chat.models import Message
from tests.test_ui_chat import _chunks, _user, run_node


def _merged(chunks: list[dict]) -> list[dict]:
    """The chunks with each run of deltas of one part joined: a live stream sends a delta per
    token or per merge window, as the machine's pace has it; a replay sends what is stored in
    one. The package shows both the same."""
    out: list[dict] = []
    for chunk in chunks:
        last = out[-1] if out else None
        if (
            chunk["type"].endswith("-delta")
            and last
            and (last["type"], last["id"]) == (chunk["type"], chunk["id"])
        ):
            out[-1] = {**last, "delta": last["delta"] + chunk["delta"]}
        else:
            out.append(chunk)
    return out


@pytest.mark.parametrize("approved", [True, False])
def test_the_packages_chat_asks_answers_and_gets_the_rest_of_the_reply(tab, approval, approved):
    base = str(tab.http.base_url).rstrip("/")
    asked, done = run_node(tab, "approve.mjs", base, "approve-1", "What day is it?", json.dumps(approved))
    waiting = next(p for p in asked["message"]["parts"] if p.get("state") == "approval-requested")
    assert waiting["type"] == "tool-current_time" and waiting["approval"] == {"id": "call_demo_1"}
    assert asked["message"]["metadata"]["status"] == "approval"
    user, reply = done["messages"]
    assert reply["id"] == asked["message"]["id"] and done["status"] == "ready"
    stored = Message.objects.get(pk=reply["id"])
    assert stored.status == "complete"
    types = [part["type"] for part in reply["parts"]]
    assert types == ["step-start", "reasoning", "tool-current_time", "step-start", "text"]
    tool, text = reply["parts"][2], reply["parts"][4]
    assert text["text"] == stored.content and reply["metadata"]["status"] == "complete"
    if approved:
        assert tool["state"] == "output-available" and tool["output"] == stored.steps[1]["result"]
        assert stored.content.startswith("The server's clock says")
    else:
        assert tool["state"] == "output-error" and tool["errorText"] == stored.steps[1]["error"]
    # The same parts after a reload (without the approval, which the history does not keep).
    history = tab.get("/api/ui/chat/approve-1").json()["messages"]
    assert [p["type"] for p in history[1]["parts"]] == types
    assert history[1]["parts"][4] == text


def test_a_reload_while_the_reply_waits_shows_the_request_again(tab, approval):
    sent = _chunks(tab.post("/api/ui/chat", json={"id": "approve-2", "messages": [_user("What day?")]}))
    assert [c["type"] for c in sent[-3:]] == ["tool-approval-request", "finish-step", "finish"]
    assert sent[-1]["finishReason"] == "tool-calls"
    resumed = _chunks(tab.get("/api/ui/chat/approve-2/stream"))
    assert _merged(resumed) == _merged(sent)
    reply_id = sent[0]["messageId"]
    assert Message.objects.get(pk=reply_id).status == "streaming"
    # Answered by the transport's body alone: the rest of the same reply, and nothing again.
    answered = {
        "type": "tool-current_time",
        "toolCallId": "call_demo_1",
        "state": "approval-responded",
        "input": {},
        "approval": {"id": "call_demo_1", "approved": True},
    }
    body = {
        "id": "approve-2",
        "trigger": "submit-message",
        "messageId": reply_id,
        "messages": [_user("What day?"), {"id": reply_id, "role": "assistant", "parts": [answered]}],
    }
    rest = _chunks(tab.post("/api/ui/chat", json=body))
    types = [c["type"] for c in rest]
    assert types[:2] == ["start", "tool-output-available"] and types[-1] == "finish"
    assert "tool-input-available" not in types and "reasoning-delta" not in types
    again = tab.post("/api/ui/chat", json=body)  # decided already: the contract's 409
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_an_answer_for_someone_elses_reply_is_404(tab, new_tab, approval):
    sent = _chunks(tab.post("/api/ui/chat", json={"id": "approve-3", "messages": [_user("What day?")]}))
    reply_id = sent[0]["messageId"]
    part = {
        "toolCallId": "call_demo_1",
        "state": "approval-responded",
        "approval": {"id": "x", "approved": True},
    }
    body = {"id": "approve-3", "messages": [{"id": reply_id, "role": "assistant", "parts": [part]}]}
    response = new_tab().post("/api/ui/chat", json=body)
    assert response.status_code == 404
    assert Message.objects.get(pk=reply_id).status == "streaming"
