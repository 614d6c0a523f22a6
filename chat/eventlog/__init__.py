"""The event log of each reply: what the generator appends and every stream follows."""

from functools import lru_cache

from django.utils.module_loading import import_string

from chat import conf
from chat.eventlog.base import (
    End,
    Event,
    EventLog,
    ReasoningText,
    Status,
    Step,
    Subscription,
    Text,
    ToolCallStep,
    ToolResultStep,
)


@lru_cache(maxsize=4)
def _load(path: str) -> EventLog:
    return import_string(path)()


def get_event_log() -> EventLog:
    return _load(conf.get("CHAT_EVENT_LOG"))


__all__ = [
    "End",
    "Event",
    "EventLog",
    "ReasoningText",
    "Status",
    "Step",
    "Subscription",
    "Text",
    "ToolCallStep",
    "ToolResultStep",
    "get_event_log",
]
