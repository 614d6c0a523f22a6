"""The event log of each reply: what the generator appends and every stream follows."""

from functools import lru_cache

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

MEMORY = "chat.eventlog.memory.MemoryEventLog"
REDIS = "chat.eventlog.redis.RedisEventLog"


@lru_cache(maxsize=4)
def _load(path: str) -> EventLog:
    return import_string(path)()


def backend_path() -> str:
    """CHAT_EVENT_LOG when set; else Redis Streams with REDIS_URL, this process's memory without."""
    return conf.get_str("CHAT_EVENT_LOG") or (REDIS if conf.get("REDIS_URL") else MEMORY)


def get_event_log() -> EventLog:
    return _load(backend_path())


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
