"""The UI message stream encoder, byte for byte (chat/uistream.py), and a stored reply's parts."""

import pytest

from chat.eventlog.base import End, ReasoningText, Status, Text, ToolCallStep, ToolResultStep
from chat.uistream import DONE, UIEncoder, chunk_bytes, encode_all, finish_reason, reply_parts

START = b'data: {"type":"start","messageId":"m1","messageMetadata":{"model":"demo"}}\n\n'


def _finish(reason: str, status: str = "complete", finish: str | None = "stop", usage=None) -> bytes:
    usage_json = "null" if usage is None else usage
    finish_json = "null" if finish is None else f'"{finish}"'
    return (
        f'data: {{"type":"finish","finishReason":"{reason}","messageMetadata":'
        f'{{"status":"{status}","finishReason":{finish_json},"usage":{usage_json}}}}}\n\n'
    ).encode()


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ({"type": "start-step"}, b'data: {"type":"start-step"}\n\n'),
        # A line break or a separator inside the JSON stays escaped: one data line, always.
        (
            {"type": "text-delta", "id": "text-1", "delta": "a\nb\r\nc\u2028d"},
            'data: {"type":"text-delta","id":"text-1","delta":"a\\nb\\r\\nc\u2028d"}\n\n'.encode(),
        ),
        (
            {"type": "text-delta", "id": "t", "delta": "é✓"},
            'data: {"type":"text-delta","id":"t","delta":"é✓"}\n\n'.encode(),
        ),
    ],
)
def test_a_chunk_is_one_data_line_of_compact_json(chunk, expected):
    assert chunk_bytes(chunk) == expected


def test_text_only_reply():
    stream = encode_all(
        [Status("thinking"), Text(5, "Hello"), Text(11, " world"), End("complete", "stop")],
        "m1",
        {"model": "demo"},
    )
    assert stream == (
        START
        + b'data: {"type":"start-step"}\n\n'
        + b'data: {"type":"text-start","id":"text-1"}\n\n'
        + b'data: {"type":"text-delta","id":"text-1","delta":"Hello"}\n\n'
        + b'data: {"type":"text-delta","id":"text-1","delta":" world"}\n\n'
        + b'data: {"type":"text-end","id":"text-1"}\n\n'
        + b'data: {"type":"finish-step"}\n\n'
        + _finish("stop")
        + DONE
    )


def test_reasoning_a_tool_then_text_is_two_steps():
    events = [
        ReasoningText(0, 5, "Think"),
        ToolCallStep(0, 6, "call_1", "clock", {"tz": "UTC"}),
        ToolResultStep(0, 7, "call_1", "clock", {"utc": "now"}, None, 3),
        Text(2, "It"),
        End("complete", "stop", {"input_tokens": 1, "output_tokens": 2}),
    ]
    usage = '{"input_tokens":1,"output_tokens":2}'
    assert encode_all(events, "m1", {"model": "demo"}) == (
        START
        + b'data: {"type":"start-step"}\n\n'
        + b'data: {"type":"reasoning-start","id":"reasoning-1"}\n\n'
        + b'data: {"type":"reasoning-delta","id":"reasoning-1","delta":"Think"}\n\n'
        + b'data: {"type":"reasoning-end","id":"reasoning-1"}\n\n'
        + b'data: {"type":"tool-input-available","toolCallId":"call_1","toolName":"clock",'
        + b'"input":{"tz":"UTC"},"providerExecuted":true}\n\n'
        + b'data: {"type":"tool-output-available","toolCallId":"call_1","output":{"utc":"now"}}\n\n'
        + b'data: {"type":"finish-step"}\n\n'
        + b'data: {"type":"start-step"}\n\n'
        + b'data: {"type":"text-start","id":"text-2"}\n\n'
        + b'data: {"type":"text-delta","id":"text-2","delta":"It"}\n\n'
        + b'data: {"type":"text-end","id":"text-2"}\n\n'
        + b'data: {"type":"finish-step"}\n\n'
        + _finish("stop", usage=usage)
        + DONE
    )


def test_a_failed_tool_is_an_output_error():
    encoder = UIEncoder()
    encoder.chunks(ToolCallStep(0, 1, "c", "clock", {}))
    chunks = encoder.chunks(ToolResultStep(0, 2, "c", "clock", None, "It broke.", 1))
    assert chunks == [{"type": "tool-output-error", "toolCallId": "c", "errorText": "It broke."}]


def test_an_error_end_sends_the_error_chunk_then_finish():
    end = End("error", None, None, "The model is overloaded.", "upstream_error")
    assert encode_all([Text(2, "Hi"), end], "m1", {"model": "demo"}) == (
        START
        + b'data: {"type":"start-step"}\n\n'
        + b'data: {"type":"text-start","id":"text-1"}\n\n'
        + b'data: {"type":"text-delta","id":"text-1","delta":"Hi"}\n\n'
        + b'data: {"type":"text-end","id":"text-1"}\n\n'
        + b'data: {"type":"finish-step"}\n\n'
        + b'data: {"type":"error","errorText":"The model is overloaded."}\n\n'
        + _finish("error", status="error", finish=None)
        + DONE
    )


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (End("complete", "stop"), "stop"),
        (End("complete", "length"), "length"),
        (End("complete", "content_filter"), "content-filter"),
        (End("complete", "tool_calls"), "tool-calls"),
        (End("complete", None), "other"),
        (End("complete", "end_turn"), "other"),
        (End("stopped", "stop"), "other"),
        (End("interrupted", None), "interrupted"),
        (End("error", None), "error"),
    ],
)
def test_finish_reasons_in_the_packages_words(end, reason):
    assert finish_reason(end) == reason


def test_an_empty_reply_has_no_step():
    assert encode_all([End("stopped", None)], "m1", {"model": "demo"}) == (
        START + _finish("other", status="stopped", finish=None) + DONE
    )


def test_stored_parts_are_the_streams_parts():
    events = [
        ReasoningText(0, 2, "Hm"),
        ToolCallStep(0, 3, "c", "clock", {}),
        ToolResultStep(0, 4, "c", "clock", None, "Down.", 1),
        Text(3, "Yes"),
        ReasoningText(3, 6, "and"),
        Text(6, "!!!"),
    ]
    assert reply_parts(events) == [
        {"type": "step-start"},
        {"type": "reasoning", "id": "reasoning-1", "text": "Hm", "state": "done"},
        {
            "type": "tool-clock",
            "toolCallId": "c",
            "state": "output-error",
            "input": {},
            "providerExecuted": True,
            "errorText": "Down.",
        },
        {"type": "step-start"},
        {"type": "text", "text": "Yes", "state": "done"},
        {"type": "reasoning", "id": "reasoning-3", "text": "and", "state": "done"},
        {"type": "text", "text": "!!!", "state": "done"},
    ]
    encoder = UIEncoder()
    opened = [c["id"] for e in events for c in encoder.chunks(e) if c["type"] == "reasoning-start"]
    assert opened == ["reasoning-1", "reasoning-3"]


def test_an_approval_request_ends_the_response_and_a_decided_one_is_not_asked_again():
    waiting = Status("approval", {"tool_call_id": "c", "name": "clock", "arguments": {}})
    encoder = UIEncoder()
    encoder.chunks(ToolCallStep(0, 1, "c", "clock", {}))
    assert encoder.chunks(waiting) == [
        {"type": "tool-approval-request", "approvalId": "c", "toolCallId": "c"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls", "messageMetadata": {"status": "approval"}},
    ]
    assert encoder.paused
    later = UIEncoder(decided=frozenset({"c"}))
    later.chunks(ToolCallStep(0, 1, "c", "clock", {}))
    assert later.chunks(waiting) == [] and not later.paused
    assert later.chunks(Status("tool", {"name": "clock"})) == []
