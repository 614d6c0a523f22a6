"""The event log of each reply: what the generator appends and every stream follows."""

from django.utils.module_loading import import_string

from chat import conf
from chat.eventlog.base import (
    End,
    Event,
    EventLog,
    LogUnavailable,
    ReasoningText,
    Status,
    Step,
    Subscription,
    Text,
    ToolCallStep,
    ToolResultStep,
)
from chat.runtime import runtime

MEMORY = "chat.eventlog.memory.MemoryEventLog"
REDIS = "chat.eventlog.redis.RedisEventLog"


def backend_path() -> str:
    """CHAT_EVENT_LOG when set; else Redis Streams with REDIS_URL, this process's memory without."""
    return conf.get_str("CHAT_EVENT_LOG") or (REDIS if conf.get("REDIS_URL") else MEMORY)


def get_event_log() -> EventLog:
    """The runtime's event log of this backend, made on first use, closed when it stops."""
    path = backend_path()
    return runtime.part(("chat-event-log", path), lambda: import_string(path)(), stop=EventLog.close)


__all__ = [
    "End",
    "Event",
    "EventLog",
    "LogUnavailable",
    "ReasoningText",
    "Status",
    "Step",
    "Subscription",
    "Text",
    "ToolCallStep",
    "ToolResultStep",
    "backend_path",
    "get_event_log",
]
