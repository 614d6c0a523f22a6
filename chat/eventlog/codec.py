"""Events as a kind and a JSON payload: how a log shared by processes stores them (Redis).

Generic on purpose: a new kind of event (a dataclass) is registered here and goes through
Redis as it is; the writer merges only text. A Text's offset travels in the entry's id, and
its payload is the text itself, not JSON: text is the event of every delta, and JSON cost
both processes a few microseconds each time.
"""

import json
from dataclasses import asdict, fields

from chat.eventlog.base import End, Event, ReasoningText, Status, Text, ToolCallStep, ToolResultStep

KINDS: dict[str, type] = {}
_KIND_OF: dict[type, str] = {}


def register(kind: str, cls: type) -> None:
    """Make a dataclass event travel through the shared log under `kind`."""
    KINDS[kind] = cls
    _KIND_OF[cls] = kind


register("text", Text)
register("status", Status)
register("end", End)
register("reasoning", ReasoningText)  # issue 12's steps carry their own place (offset, side)
register("tool_call", ToolCallStep)
register("tool_result", ToolResultStep)


def encode(event: Event) -> tuple[str, str]:
    if type(event) is Text:  # the common case, once per delta
        return "text", event.text
    return _KIND_OF[type(event)], json.dumps(asdict(event), separators=(",", ":"), ensure_ascii=False)


def decode(kind: str, data: str | bytes, offset: int) -> Event | None:
    """The event, or None for a kind this version does not know (written by a newer one)."""
    if kind == "text":
        return Text(offset, data.decode() if isinstance(data, bytes) else data)
    cls = KINDS.get(kind)
    if cls is None:
        return None
    payload = json.loads(data)
    known = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in payload.items() if key in known})
