"""Reading a reply's stream as a client that keeps every event (issue 12's resume tests)."""

import httpx

from tests.sse_client import SSE, events

CONTENT = ("message", "reasoning", "tool_call", "tool_result")


def follow(
    http: httpx.Client, message_id: str, last_event_id: str | None = None, stop_after: int | None = None
):
    """The events of a reply's stream, until its end or `stop_after` content events (then hang up)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    received: list[SSE] = []
    with http.stream("GET", f"/api/messages/{message_id}/stream", headers=headers) as response:
        assert response.status_code == 200, response.read()
        for event in events(response.iter_lines()):
            received.append(event)
            if event.event in ("done", "error"):
                break
            if stop_after is not None and sum(e.event in CONTENT for e in received) >= stop_after:
                break
    return received


def content(received: list[SSE]) -> list[tuple[str, object]]:
    """What a client keeps: text and reasoning joined per kind run, tool events as they are."""
    out: list[tuple[str, object]] = []
    for event in received:
        if event.event not in CONTENT:
            continue
        data = event.json
        if event.event in ("message", "reasoning") and out and out[-1][0] == event.event:
            out[-1] = (event.event, out[-1][1] + data["text"])
        elif event.event in ("message", "reasoning"):
            out.append((event.event, data["text"]))
        else:
            data = dict(data)
            data.pop("duration_ms", None)
            out.append((event.event, data))
    return out


def joined(parts: list[list[tuple[str, object]]]) -> list[tuple[str, object]]:
    """Several connections' content as one, text runs joined across the cuts."""
    out: list[tuple[str, object]] = []
    for part in parts:
        for kind, data in part:
            if kind in ("message", "reasoning") and out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + data)
            else:
                out.append((kind, data))
    return out


def last_id(received: list[SSE]) -> str | None:
    ids = [e.id for e in received if e.id is not None]
    return ids[-1] if ids else None
