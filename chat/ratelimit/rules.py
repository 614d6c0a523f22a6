"""The limits in force, read from the settings (CHAT_LIMIT_*, CHAT_QUOTA_TOKENS*) when used.

An owner is a signed-in user or a visitor (a token in the session), and a client that keeps no
cookie is a new visitor on every request: whatever is limited per owner is counted per client
address as well. An address is worth ADDRESS_SHARE visitors unless set otherwise (an office
behind one NAT address has many honest visitors), and a request from a client without a
session (no user signed in, no visitor yet: the visitor is being made by this very request) is
admitted only while its address has used less than one visitor's share. Browsers get their
visitor when the page loads, so only clients that keep no cookie meet that bound, and they
cannot be told apart: together they get what one visitor gets.
"""

from dataclasses import dataclass
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItem, parse

from chat import conf

OFF = {"", "0", "none", "off"}
# What an address gets by default, in visitors: CHAT_LIMIT_MESSAGES_IP's default (120/minute
# against 30) says four, and the address limits derived from the owner's say the same.
ADDRESS_SHARE = 4


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
    replies_ip: int  # generating at once, per client IP
    tokens: RateLimitItem | None  # output tokens per owner per window
    tokens_ip: RateLimitItem | None  # output tokens per client IP per window
    streams_ip: int  # open at once, per client IP

    @property
    def any(self) -> bool:
        return bool(
            self.messages
            or self.messages_ip
            or self.replies
            or self.replies_ip
            or self.tokens
            or self.tokens_ip
            or self.streams_ip
        )

    def replies_ip_for(self, *, newcomer: bool) -> int:
        """The address's replies at once a request is held to: a client without a session
        gets what one visitor gets, within the address's."""
        if newcomer and self.replies and self.replies_ip:
            return min(self.replies, self.replies_ip)
        return self.replies_ip

    def tokens_ip_for(self, *, newcomer: bool) -> int:
        """The address's token use under which a request is admitted (counted in the address's
        window; 0 without an address quota). A client without a session gets one visitor's
        quota; pro rata when the address's window is shorter, so that it never spends faster
        than a visitor may."""
        if self.tokens_ip is None:
            return 0
        if not newcomer or self.tokens is None:
            return self.tokens_ip.amount
        share = self.tokens.amount
        if self.tokens_ip.get_expiry() < self.tokens.get_expiry():
            share = max(1, share * self.tokens_ip.get_expiry() // self.tokens.get_expiry())
        return min(share, self.tokens_ip.amount)


def scaled(item: RateLimitItem | None, times: int) -> RateLimitItem | None:
    """`item` with `times` its amount over the same window (400/hour -> 1600/hour)."""
    if item is None:
        return None
    return type(item)(item.amount * times, multiples=item.multiples, namespace=item.namespace)


NAMES = (
    "CHAT_LIMIT_MESSAGES",
    "CHAT_LIMIT_MESSAGES_IP",
    "CHAT_LIMIT_REPLIES",
    "CHAT_LIMIT_REPLIES_IP",
    "CHAT_QUOTA_TOKENS",
    "CHAT_QUOTA_TOKENS_IP",
    "CHAT_LIMIT_STREAMS_IP",
)


def rules() -> Rules:
    """The limits as the settings have them now (read on every request that is checked)."""
    return rules_from(*(conf.get(name) for name in NAMES))


@lru_cache(maxsize=16)
def rules_from(
    messages: str | int | None,
    messages_ip: str | int | None,
    replies: str | int | None,
    replies_ip: str | int | None,
    tokens: str | int | None,
    tokens_ip: str | int | None,
    streams_ip: str | int | None,
) -> Rules:
    """The settings' values (in NAMES' order) read as limits; an address limit unset (None) is
    derived from the owner's, and off when that is off."""
    owner_replies = parse_count("CHAT_LIMIT_REPLIES", replies)
    owner_tokens = parse_rate("CHAT_QUOTA_TOKENS", tokens)
    return Rules(
        messages=parse_rate("CHAT_LIMIT_MESSAGES", messages),
        messages_ip=parse_rate("CHAT_LIMIT_MESSAGES_IP", messages_ip),
        replies=owner_replies,
        replies_ip=(
            owner_replies * ADDRESS_SHARE
            if replies_ip is None
            else parse_count("CHAT_LIMIT_REPLIES_IP", replies_ip)
        ),
        tokens=owner_tokens,
        tokens_ip=(
            scaled(owner_tokens, ADDRESS_SHARE)
            if tokens_ip is None
            else parse_rate("CHAT_QUOTA_TOKENS_IP", tokens_ip)
        ),
        streams_ip=parse_count("CHAT_LIMIT_STREAMS_IP", streams_ip),
    )


def describe(item: RateLimitItem) -> str:
    """`30 per minute`, `200,000 per day`, `5 per 10 seconds`."""
    unit = item.GRANULARITY.name
    per = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount:,} per {per}"


def attachment_rules() -> tuple[RateLimitItem | None, RateLimitItem | None]:
    """Uploads per owner (CHAT_LIMIT_ATTACHMENTS), and per client address ADDRESS_SHARE times
    as many (a client that keeps no cookie is a new visitor on every upload)."""
    item = parse_rate("CHAT_LIMIT_ATTACHMENTS", conf.get("CHAT_LIMIT_ATTACHMENTS"))
    return item, scaled(item, ADDRESS_SHARE)
