"""The limits in force, read from the settings (CHAT_LIMIT_*, CHAT_QUOTA_TOKENS) when used."""

from dataclasses import dataclass
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItem, parse

from chat import conf

OFF = {"", "0", "none", "off"}


@lru_cache(maxsize=64)
def parse_rate(name: str, value: str | int | None) -> RateLimitItem | None:
    """`N/second|minute|hour|day` (anything the `limits` library reads); `0` or empty: off."""
    text = str(value if value is not None else "").strip().lower()
    if text in OFF:
        return None
    try:
        item = parse(text)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}: {value!r} is not a rate; write it as N/second, N/minute, N/hour or N/day (0 for none)."
        ) from None
    return item if item.amount > 0 else None


@lru_cache(maxsize=64)
def parse_count(name: str, value: str | int | None) -> int:
    """A number of things at once; `0` or empty: no limit."""
    text = str(value if value is not None else "").strip().lower()
    if text in OFF:
        return 0
    try:
        count = int(text)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: {value!r} is not a whole number (0 for no limit).") from None
    if count < 0:
        raise ImproperlyConfigured(f"{name}: {value!r} must be 0 (no limit) or more.")
    return count


@dataclass(frozen=True)
class Rules:
    messages: RateLimitItem | None  # per owner
    messages_ip: RateLimitItem | None
    replies: int  # generating at once, per owner
    tokens: RateLimitItem | None  # output tokens per owner per window
    streams_ip: int  # open at once, per client IP

    @property
    def any(self) -> bool:
        return bool(self.messages or self.messages_ip or self.replies or self.tokens or self.streams_ip)


def rules() -> Rules:
    return Rules(
        messages=parse_rate("CHAT_LIMIT_MESSAGES", conf.get("CHAT_LIMIT_MESSAGES")),
        messages_ip=parse_rate("CHAT_LIMIT_MESSAGES_IP", conf.get("CHAT_LIMIT_MESSAGES_IP")),
        replies=parse_count("CHAT_LIMIT_REPLIES", conf.get("CHAT_LIMIT_REPLIES")),
        tokens=parse_rate("CHAT_QUOTA_TOKENS", conf.get("CHAT_QUOTA_TOKENS")),
        streams_ip=parse_count("CHAT_LIMIT_STREAMS_IP", conf.get("CHAT_LIMIT_STREAMS_IP")),
    )


def describe(item: RateLimitItem) -> str:
    """`30 per minute`, `200,000 per day`, `5 per 10 seconds`."""
    unit = item.GRANULARITY.name
    per = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount:,} per {per}"
